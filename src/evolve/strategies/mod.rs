//! Search strategies, selected by `--strategy`: `fewshot` (the default: a GA over the
//! demonstrations and the instruction, with error-driven demonstrations), `ga` (genetic
//! algorithm), `de` (EvoPrompt's differential evolution), `hillclimb` (GrIPS-like greedy edits
//! with patience), `promptbreeder` (co-evolving prompts and mutation-prompts), `gepa` (Pareto
//! front, reflective mutation, merge), `opro` (the model optimises from the score trajectory),
//! `adaptive` (demonstration moves, reflection, edits and crossovers, the children shared
//! between them by a bandit on what wins on this task) and `random` (the same operators without
//! selection: the baseline every benchmark compares against).

mod adaptive;
mod config;
mod de;
mod error_driven;
mod ga;
mod gepa;
mod hillclimb;
mod opro;
mod promptbreeder;
mod random;

pub use adaptive::{MoveFamily, FLOOR as FAMILY_FLOOR};
pub use config::{Replacement, SearchConfig, SelectionKind, DEFAULT_FINALISTS, DEFAULT_SCREEN};

#[cfg(test)]
/// Names of the moves strategies make themselves (they need scores, so they are not
/// [`super::Operator`]s); logged as a candidate's operator like an operator's name.
pub(crate) const STRATEGY_MOVES: [&str; 4] = [
    error_driven::DEMO_ERROR,
    gepa::REFLECT,
    gepa::MERGE,
    opro::OPRO,
];

use rand_chacha::ChaCha8Rng;

use super::choice::{choose_on_validation, Criterion};
use super::error::EvolveError;
use super::operators::{weighted_operators, OperatorContext};
use super::search::{Evaluator, OperatorSet, Scored, Search, SearchOutcome};
use super::selection;
use crate::task::Fitness;

/// A way to search: proposes candidates and decides which survive, through a [`Search`].
pub(crate) trait Strategy {
    /// Runs until the search stops; returns the last population.
    fn run(
        &self,
        search: &mut Search<'_, '_>,
        cfg: &SearchConfig,
        operators: &OperatorSet,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError>;
}

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
// The default: this model is far more sensitive to which demonstrations it sees than to
// wording (README, issue 12's measurements), so most children change the demonstrations.
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

/// One strategy's entry in the registry: its name, how to make it, its default operator
/// weights, whether it asks the model for text whatever its operators, and whether it keeps
/// `--elite` parents (so that setting must be checked against `--population`).
struct Entry {
    name: &'static str,
    make: fn() -> Box<dyn Strategy>,
    weights: &'static [(&'static str, f64)],
    needs_model: bool,
    uses_elite: bool,
}

/// The one registry of strategies, the default first (`--strategy`, configs, benchmarks and
/// `--help` all read it).
const REGISTRY: [Entry; 9] = [
    Entry {
        name: "fewshot",
        make: || Box::new(ga::GeneticAlgorithm::FEWSHOT),
        weights: FEWSHOT,
        uses_elite: true,
        needs_model: false,
    },
    Entry {
        name: "ga",
        make: || Box::new(ga::GeneticAlgorithm::PLAIN),
        weights: GA,
        uses_elite: true,
        needs_model: false,
    },
    Entry {
        name: "de",
        make: || Box::new(de::DifferentialEvolution),
        weights: DE,
        uses_elite: false,
        needs_model: false,
    },
    Entry {
        name: "hillclimb",
        make: || Box::new(hillclimb::HillClimb),
        weights: HILLCLIMB,
        uses_elite: false,
        needs_model: false,
    },
    Entry {
        name: "promptbreeder",
        make: || Box::new(promptbreeder::Promptbreeder),
        weights: PROMPTBREEDER,
        uses_elite: false,
        needs_model: false,
    },
    Entry {
        name: "gepa",
        make: || Box::new(gepa::Gepa),
        weights: GEPA,
        uses_elite: false,
        needs_model: true,
    },
    // OPRO writes every child with the model from the score trajectory; it uses no operator.
    Entry {
        name: "opro",
        make: || Box::new(opro::Opro),
        weights: &[],
        uses_elite: false,
        needs_model: true,
    },
    // Reflection asks the model; without one (library use) that family is dropped.
    Entry {
        name: "adaptive",
        make: || Box::new(adaptive::Adaptive),
        weights: ADAPTIVE,
        uses_elite: true,
        needs_model: true,
    },
    Entry {
        name: "random",
        make: || Box::new(random::RandomSearch),
        weights: GA,
        uses_elite: false,
        needs_model: false,
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

/// Operator weights a strategy uses unless the config overrides them (none for an unknown
/// name).
pub(crate) fn default_weights(strategy: &str) -> &'static [(&'static str, f64)] {
    entry(strategy).map_or(&[], |e| e.weights)
}

/// The strategy with this name (see [`STRATEGY_NAMES`]).
pub(crate) fn strategy_by_name(name: &str) -> Option<Box<dyn Strategy>> {
    entry(name).map(|e| (e.make)())
}

/// Runs the configured strategy from `initial_prompts` against `evaluator`, with `ops` for the
/// operators. The same seed (and model) gives the same search.
pub fn run_search(
    config: &SearchConfig,
    initial_prompts: &[String],
    ops: OperatorContext<'_>,
    evaluator: &mut dyn Evaluator,
    rng: &mut ChaCha8Rng,
) -> Result<SearchOutcome, EvolveError> {
    config.validate()?;
    let strategy = strategy_by_name(&config.strategy).ok_or_else(|| {
        EvolveError::Config(format!(
            "unknown strategy `{}`; use one of {}",
            config.strategy,
            STRATEGY_NAMES.join(", ")
        ))
    })?;
    let operators = operator_set(config)?;
    let mut search = Search::new(evaluator, ops, config.limits());
    let population = strategy.run(&mut search, config, &operators, initial_prompts, rng)?;
    let criterion = if config.fitness == Fitness::Balanced {
        Criterion::Fitness
    } else {
        Criterion::Metric
    };
    let choice = choose_on_validation(&mut search, config.finalists, criterion)?;
    let mut outcome = search.finish(population)?;
    if let Some((best, how)) = choice {
        outcome.best = best;
        outcome.final_choice = Some(how);
    }
    Ok(outcome)
}

/// Checks the operator names and weights of a config against its strategy's defaults (so a
/// typo fails before a run folder is made).
pub fn check_operators(config: &SearchConfig) -> Result<Vec<&'static str>, EvolveError> {
    let set = operator_set(config)?;
    Ok(set.names())
}

/// The config's operators over its strategy's defaults (empty for a strategy that uses none).
fn operator_set(config: &SearchConfig) -> Result<OperatorSet, EvolveError> {
    let ops = weighted_operators(default_weights(&config.strategy), &config.operators)?;
    if default_weights(&config.strategy).is_empty() && config.operators.is_empty() {
        return Ok(OperatorSet::empty());
    }
    OperatorSet::new(ops)
}

/// Whether a strategy asks the model for text whatever its operators (gepa and adaptive
/// reflect, opro writes every child).
pub(crate) fn strategy_needs_model(name: &str) -> bool {
    entry(name).is_some_and(|e| e.needs_model)
}

/// Whether a strategy keeps `--elite` parents each generation (the GA loop's).
pub(crate) fn strategy_uses_elite(name: &str) -> bool {
    entry(name).is_some_and(|e| e.uses_elite)
}

/// Draws a parent with the configured selection.
pub(crate) fn select<'a>(
    population: &'a [Scored],
    config: &SearchConfig,
    rng: &mut ChaCha8Rng,
) -> &'a Scored {
    match config.selection {
        SelectionKind::Tournament => {
            selection::tournament(population, |s| s.score, config.tournament_k, rng)
        }
        SelectionKind::Roulette => selection::roulette(population, |s| s.score, rng),
        SelectionKind::Rank => selection::rank(population, |s| s.score, rng),
    }
}

#[cfg(test)]
pub(crate) mod testing;

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
