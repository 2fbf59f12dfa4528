//! The one registry of strategies: each strategy's name, how to make it, its default operator
//! weights and what it needs. `--strategy`, configs, benchmarks and `--help` read it; adding a
//! strategy is one file in this folder plus one entry here.

use super::strategy::Strategy;
use super::{adaptive, de, ga, gepa, hillclimb, opro, promptbreeder, random, staged};

#[cfg(test)]
/// Names of the moves strategies make themselves (they need scores, so they are not
/// [`super::Operator`]s); logged as a candidate's operator like an operator's name.
pub(crate) const STRATEGY_MOVES: [&str; 4] = [
    super::error_driven::DEMO_ERROR,
    gepa::REFLECT,
    gepa::MERGE,
    opro::OPRO,
];

/// Default operator weights of the genetic strategies (ga, random).
const GA: &[(&str, f64)] = &[
    ("delete", 1.0),
    ("swap", 1.0),
    ("insert", 1.0),
    ("one-point", 1.0),
    ("uniform", 1.0),
    ("sentence", 1.0),
    ("persona", 0.5),
    ("constraint", 0.5),
    ("demo-add", 0.5),
    ("demo-drop", 0.5),
    ("demo-swap", 0.5),
    ("paraphrase", 0.0),
    ("evo-ga", 0.0),
];
const HILLCLIMB: &[(&str, f64)] = &[
    ("delete", 1.0),
    ("swap", 1.0),
    ("insert", 1.0),
    ("paraphrase", 1.0),
    ("persona", 0.5),
    ("constraint", 0.5),
    ("demo-add", 0.5),
    ("demo-drop", 0.5),
    ("demo-swap", 0.5),
];
// fewshot's (and the default's first stage): this model is far more sensitive to which
// demonstrations it sees than to wording (README, issue 12's measurements), so most children
// change the demonstrations.
// No two-parent operator: phrase crossovers of unrelated instructions broke the wording
// (e.g. "Given a statement," alone) more often than they helped.
const FEWSHOT: &[(&str, f64)] = &[
    ("demo-set", 2.0),
    ("demo-swap", 2.0),
    ("demo-add", 1.0),
    ("demo-drop", 1.0),
    ("demo-order", 0.5),
    ("delete", 0.5),
    ("swap", 0.5),
    ("insert", 0.5),
    ("persona", 0.25),
    ("constraint", 0.25),
];
// GEPA's merge combines two front members; its reflective mutation is its own move.
const GEPA: &[(&str, f64)] = &[("uniform", 1.0), ("sentence", 1.0)];
// Every family's operators; weights count within a family only (the bandit shares the
// children between families): fewshot's demonstration weights, ga's edit and crossover ones.
const ADAPTIVE: &[(&str, f64)] = &[
    ("demo-set", 2.0),
    ("demo-swap", 2.0),
    ("demo-add", 1.0),
    ("demo-drop", 1.0),
    ("demo-order", 0.5),
    ("delete", 1.0),
    ("swap", 1.0),
    ("insert", 1.0),
    ("paraphrase", 0.5),
    ("persona", 0.5),
    ("constraint", 0.5),
    ("one-point", 1.0),
    ("uniform", 1.0),
    ("sentence", 1.0),
];
const DE: &[(&str, f64)] = &[("evo-de", 1.0)];
const PROMPTBREEDER: &[(&str, f64)] = &[
    ("pb-first-order", 1.0),
    ("pb-zero-order", 1.0),
    ("pb-hypermutation", 1.0),
    ("pb-lineage", 1.0),
    ("pb-lamarckian", 1.0),
];

/// One strategy's entry in the registry: its name, a one-line summary (`--help`), how to make it, its default operator
/// weights, whether it asks the model for text whatever its operators, and whether it keeps
/// `--elite` parents (so that setting must be checked against `--population`).
struct Entry {
    name: &'static str,
    summary: &'static str,
    make: fn() -> Box<dyn Strategy>,
    weights: &'static [(&'static str, f64)],
    model: ModelUse,
    uses_elite: bool,
}

/// Whether a strategy asks the model for text whatever its operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ModelUse {
    /// Never (only an enabled model-driven operator would).
    Never,
    /// Always: a model that cannot chat (and no `--mutator-model`) is a usage error.
    Required,
    /// When the model can chat; without one the strategy makes only the moves that need no
    /// model (the default's reflection stage is skipped, with a warning).
    WhenItChats,
}

/// The one registry of strategies, the default first (`--strategy`, configs, benchmarks and
/// `--help` all read it).
const REGISTRY: [Entry; 11] = [
    // The default (issue 24's benchmark, experiments/results/2026-12-03-default): the only
    // strategy whose answers beat random search's on all four classification tasks. Its
    // weights are fewshot's; with a model that cannot chat it is fewshot for the whole budget.
    Entry {
        name: "fewshot-gepa",
        summary: "the default: fewshot's demonstration search and gepa's reflective rewrites of the instruction, half the budget each, in the order a one-generation probe measures on the task (reflection first only when its rewrites beat the demonstrations by a paired test)",
        make: || Box::new(staged::Staged::demonstrations_first()),
        weights: FEWSHOT,
        uses_elite: true,
        model: ModelUse::WhenItChats,
    },
    Entry {
        name: "fewshot",
        summary: "a GA over the few-shot demonstrations (which train examples, how many, their order, label balance, and train examples the parent gets wrong) and the instruction; needs no chat model to write text",
        make: || Box::new(ga::GeneticAlgorithm::FEWSHOT),
        weights: FEWSHOT,
        uses_elite: true,
        model: ModelUse::Never,
    },
    Entry {
        name: "ga",
        summary: "genetic algorithm over the wording",
        make: || Box::new(ga::GeneticAlgorithm::PLAIN),
        weights: GA,
        uses_elite: true,
        model: ModelUse::Never,
    },
    Entry {
        name: "de",
        summary: "EvoPrompt's differential evolution (the model rewrites)",
        make: || Box::new(de::DifferentialEvolution),
        weights: DE,
        uses_elite: false,
        model: ModelUse::Never,
    },
    Entry {
        name: "hillclimb",
        summary: "GrIPS-like greedy edits with patience",
        make: || Box::<hillclimb::HillClimb>::default(),
        weights: HILLCLIMB,
        uses_elite: false,
        model: ModelUse::Never,
    },
    Entry {
        name: "promptbreeder",
        summary: "co-evolving prompts and mutation-prompts",
        make: || Box::<promptbreeder::Promptbreeder>::default(),
        weights: PROMPTBREEDER,
        uses_elite: false,
        model: ModelUse::Never,
    },
    Entry {
        name: "gepa",
        summary: "Pareto-front parents, reflective mutation from failing train examples, merges",
        make: || Box::new(gepa::Gepa),
        weights: GEPA,
        uses_elite: false,
        model: ModelUse::Required,
    },
    // OPRO writes every child with the model from the score trajectory; it uses no operator.
    Entry {
        name: "opro",
        summary: "the model proposes from the score trajectory",
        make: || Box::new(opro::Opro),
        weights: &[],
        uses_elite: false,
        model: ModelUse::Required,
    },
    // Reflection asks the model; without one (library use) that family is dropped.
    Entry {
        name: "adaptive",
        summary: "demonstration moves, reflection, edits and crossovers, each generation's children shared between them by a bandit on which of them win on this task (the report's \"Move families\" table)",
        make: || Box::<adaptive::Adaptive>::default(),
        weights: ADAPTIVE,
        uses_elite: true,
        model: ModelUse::Required,
    },
    // gepa's stage asks the model; its weights are fewshot's (no two-parent operator, so the
    // first stage makes no merges).
    Entry {
        name: "staged",
        summary: "gepa's reflective rewrites of the instruction for the first half of the budget, then fewshot's demonstration search around the instructions found",
        make: || Box::new(staged::Staged::reflection_first()),
        weights: FEWSHOT,
        uses_elite: true,
        model: ModelUse::Required,
    },
    Entry {
        name: "random",
        summary: "the same operators, no selection (the baseline)",
        make: || Box::new(random::RandomSearch),
        weights: GA,
        uses_elite: false,
        model: ModelUse::Never,
    },
];

/// Names accepted by `--strategy`, the default first.
pub const STRATEGY_NAMES: [&str; REGISTRY.len()] = {
    let mut names = [""; REGISTRY.len()];
    let mut i = 0;
    while i < REGISTRY.len() {
        names[i] = REGISTRY[i].name;
        i += 1;
    }
    names
};

fn entry(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.name == name)
}

/// A strategy's one-line summary, as `--help` shows it (None for an unknown name).
pub fn strategy_summary(name: &str) -> Option<&'static str> {
    entry(name).map(|e| e.summary)
}

/// Operator weights a strategy uses unless the config overrides them (none for an unknown
/// name).
pub(crate) fn default_weights(strategy: &str) -> &'static [(&'static str, f64)] {
    entry(strategy).map_or(&[], |e| e.weights)
}

/// The strategy with this name (see [`STRATEGY_NAMES`]).
pub(crate) fn strategy_by_name(name: &str) -> Option<Box<dyn Strategy>> {
    entry(name).map(|e| (e.make)())
}

/// Whether a strategy asks the model for text whatever its operators (gepa, adaptive and the
/// staged strategies reflect, opro writes every child), and whether it can do without.
pub(crate) fn strategy_model_use(name: &str) -> ModelUse {
    entry(name).map_or(ModelUse::Never, |e| e.model)
}

/// Whether a strategy keeps `--elite` parents each generation (the GA loop's).
pub(crate) fn strategy_uses_elite(name: &str) -> bool {
    entry(name).is_some_and(|e| e.uses_elite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_and_the_module_docs_name_every_registered_strategy() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let docs = std::fs::read_to_string(root.join("src/evolve/strategies/mod.rs")).unwrap();
        for name in STRATEGY_NAMES {
            assert!(
                readme.contains(&format!("| `{name}` ")),
                "README.md's strategy table lacks `{name}`"
            );
            assert!(
                docs.contains(&format!("`{name}`")),
                "the strategies module doc lacks `{name}`"
            );
        }
    }
}
