//! Variation operators, one file per family: edits of one prompt (GrIPS), crossovers of two,
//! gene operators (persona, output constraint, few-shot demonstrations), and operators that ask
//! the local model to rewrite prompts (EvoPrompt GA/DE, Promptbreeder).
//!
//! Every operator has a stable name used in configs (`--operators name=weight`), logs and reports.

/// Implements [`Operator`] for a one-parent operator that needs no model: `$body` is a
/// `fn(&Genome, &OperatorContext, &mut ChaCha8Rng) -> Option<Genome>` applied to the first parent.
macro_rules! single_parent {
    ($ty:ty, $name:literal, $family:expr, $body:expr) => {
        impl Operator for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn family(&self) -> Family {
                $family
            }

            fn arity(&self) -> usize {
                1
            }

            fn apply(
                &self,
                parents: &[&Genome],
                ctx: &mut OperatorContext<'_>,
                rng: &mut ChaCha8Rng,
            ) -> Result<Option<Genome>, EvolveError> {
                let f: fn(&Genome, &OperatorContext<'_>, &mut ChaCha8Rng) -> Option<Genome> = $body;
                Ok(parents.first().and_then(|p| f(p, ctx, rng)))
            }
        }
    };
}

mod crossover;
mod edit;
mod genes;
mod model;
mod promptbreeder;

pub use crossover::{OnePointCrossover, SentenceCrossover, UniformCrossover};
pub use edit::{Delete, Insert, Paraphrase, Swap};
pub use genes::{ConstraintGene, DemoAdd, DemoDrop, DemoOrder, DemoSet, DemoSwap, PersonaGene};
pub(crate) use model::{ask_for_prompt, with_genes_of};
pub use model::{clean_reply, extract_tagged, EvoDe, EvoGa, MAX_PROMPT_CHARS};
pub use promptbreeder::{
    FirstOrder, Hypermutation, Lamarckian, LineageBased, Unit, ZeroOrder, MUTATION_PROMPTS,
    THINKING_STYLES,
};

use rand_chacha::ChaCha8Rng;

use super::error::EvolveError;
use super::genome::Genome;
use super::pool::PhrasePool;
use super::train::{self, TrainPool};
use crate::chat::TextGenerator;

/// The family an operator belongs to (for ablations and reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// One-prompt edits of wording: delete, swap, insert a phrase, paraphrase.
    Edit,
    /// Two-prompt recombination: one-point, uniform, sentence-level.
    Crossover,
    /// Genes beyond wording: persona, output constraint, demonstrations.
    Gene,
    /// Meta-prompted rewrites by the model: EvoPrompt GA/DE, Promptbreeder.
    Model,
}

/// What an operator may use besides its parents. Operators never see scores or dev/test data.
pub struct OperatorContext<'a> {
    /// Phrases, personas and constraints to add.
    pub pool: PhrasePool,
    /// The train examples demonstrations come from (a genome's demos are ids into it) and the
    /// input-output pairs instruction induction shows; read-only.
    pub train: &'a TrainPool,
    /// The task's one-line description, for zero-order generation.
    pub task_description: String,
    /// The model that writes text for model-driven operators (None: they do not apply).
    pub generator: Option<&'a mut dyn TextGenerator>,
    /// The best prompts found so far, best first (EvoPrompt-DE's "Prompt 3", lineage-based
    /// mutation).
    pub best: Vec<Genome>,
    /// Replies the model gave (for reports and the rejected-replies warning).
    pub model_replies: u64,
    /// Replies the model gave that were rejected by cleaning (for reports).
    pub rejected_replies: u64,
}

impl Default for OperatorContext<'_> {
    /// No pool, no train example, no generator.
    fn default() -> Self {
        Self {
            pool: PhrasePool::default(),
            train: &train::EMPTY,
            task_description: String::new(),
            generator: None,
            best: Vec::new(),
            model_replies: 0,
            rejected_replies: 0,
        }
    }
}

impl<'a> OperatorContext<'a> {
    #[cfg(test)]
    /// A context with only a phrase pool (enough for edit, crossover and persona/constraint).
    pub(crate) fn with_pool(pool: PhrasePool) -> Self {
        Self {
            pool,
            ..Self::default()
        }
    }

    /// Asks the generator; Ok(None) when there is no generator.
    pub fn chat(
        &mut self,
        messages: &[crate::chat::ChatMessage],
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<String>, EvolveError> {
        match self.generator.as_deref_mut() {
            Some(g) => {
                let reply = g.chat(messages, rng).map_err(EvolveError::evaluation)?;
                self.model_replies += 1;
                Ok(Some(reply))
            }
            None => Ok(None),
        }
    }
}

/// A way to make a new genome from parents.
pub trait Operator {
    /// Stable name used in configs, lineage and reports.
    fn name(&self) -> &'static str;
    /// The family it belongs to.
    fn family(&self) -> Family;
    /// Number of parents it takes.
    fn arity(&self) -> usize;
    /// Whether it asks the model for text (slow; needs a generator).
    fn needs_model(&self) -> bool {
        self.family() == Family::Model
    }
    /// A new genome, or Ok(None) when the operator cannot apply (too few phrases, nothing to
    /// add, a model reply rejected by cleaning) or would not change the genome.
    fn apply(
        &self,
        parents: &[&Genome],
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Genome>, EvolveError>;
    /// A mutant of a Promptbreeder unit, or Ok(None) as for [`Operator::apply`].
    /// Promptbreeder's operators read the unit's mutation-prompt (hypermutation, with
    /// `thinking_style`, gives the mutant a new one); any other operator mutates the prompt
    /// and keeps the mutation-prompt.
    fn apply_unit(
        &self,
        unit: &Unit,
        _thinking_style: &str,
        ctx: &mut OperatorContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Unit>, EvolveError> {
        Ok(self.apply(&[&unit.genome], ctx, rng)?.map(|genome| Unit {
            genome,
            mutation_prompt: unit.mutation_prompt.clone(),
        }))
    }
}

/// An operator with its selection weight.
pub struct WeightedOperator {
    /// The operator.
    pub operator: Box<dyn Operator>,
    /// Relative selection weight among operators of the same arity (finite, >= 0; 0 disables it).
    pub weight: f64,
}

impl WeightedOperator {
    /// Pairs an operator with a weight.
    pub fn new(operator: Box<dyn Operator>, weight: f64) -> WeightedOperator {
        WeightedOperator { operator, weight }
    }
}

impl std::fmt::Debug for WeightedOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightedOperator")
            .field("operator", &self.operator.name())
            .field("weight", &self.weight)
            .finish()
    }
}

/// One registered operator: its name (configs, `--operators`, lineage, reports) and how to make
/// it.
struct Entry {
    name: &'static str,
    make: fn() -> Box<dyn Operator>,
}

/// The one registry of operators, in the order `--help` and error messages list them (each
/// operator's `name()` must be its entry's name; a test checks it).
const REGISTRY: [Entry; 21] = [
    Entry {
        name: "delete",
        make: || Box::new(Delete),
    },
    Entry {
        name: "swap",
        make: || Box::new(Swap),
    },
    Entry {
        name: "insert",
        make: || Box::new(Insert),
    },
    Entry {
        name: "paraphrase",
        make: || Box::new(Paraphrase),
    },
    Entry {
        name: "one-point",
        make: || Box::new(OnePointCrossover),
    },
    Entry {
        name: "uniform",
        make: || Box::new(UniformCrossover),
    },
    Entry {
        name: "sentence",
        make: || Box::new(SentenceCrossover),
    },
    Entry {
        name: "persona",
        make: || Box::new(PersonaGene),
    },
    Entry {
        name: "constraint",
        make: || Box::new(ConstraintGene),
    },
    Entry {
        name: "demo-add",
        make: || Box::new(DemoAdd),
    },
    Entry {
        name: "demo-drop",
        make: || Box::new(DemoDrop),
    },
    Entry {
        name: "demo-swap",
        make: || Box::new(DemoSwap),
    },
    Entry {
        name: "demo-set",
        make: || Box::new(DemoSet),
    },
    Entry {
        name: "demo-order",
        make: || Box::new(DemoOrder),
    },
    Entry {
        name: "evo-ga",
        make: || Box::new(EvoGa),
    },
    Entry {
        name: "evo-de",
        make: || Box::new(EvoDe),
    },
    Entry {
        name: "pb-first-order",
        make: || Box::new(FirstOrder),
    },
    Entry {
        name: "pb-zero-order",
        make: || Box::new(ZeroOrder),
    },
    Entry {
        name: "pb-hypermutation",
        make: || Box::new(Hypermutation),
    },
    Entry {
        name: "pb-lineage",
        make: || Box::new(LineageBased),
    },
    Entry {
        name: "pb-lamarckian",
        make: || Box::new(Lamarckian),
    },
];

/// Aliases kept for configs written before the operator library grew: (alias, operator).
/// Accepted, not advertised.
const ALIASES: [(&str, &str); 2] = [("crossover", "one-point"), ("add", "insert")];

/// The operators' names, in registry order (what `--help` and error messages list).
pub const OPERATORS: [&str; REGISTRY.len()] = {
    let mut names = [""; REGISTRY.len()];
    let mut i = 0;
    while i < REGISTRY.len() {
        names[i] = REGISTRY[i].name;
        i += 1;
    }
    names
};

/// Every operator name accepted by [`operator_by_name`]: [`OPERATORS`], then the aliases.
pub const OPERATOR_NAMES: [&str; REGISTRY.len() + ALIASES.len()] = {
    let mut names = [""; REGISTRY.len() + ALIASES.len()];
    let mut i = 0;
    while i < REGISTRY.len() {
        names[i] = REGISTRY[i].name;
        i += 1;
    }
    let mut j = 0;
    while j < ALIASES.len() {
        names[i + j] = ALIASES[j].0;
        j += 1;
    }
    names
};

/// The operator with this name, or None for an unknown name (see [`OPERATOR_NAMES`]).
pub fn operator_by_name(name: &str) -> Option<Box<dyn Operator>> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, canonical)| canonical);
    REGISTRY.iter().find(|e| e.name == name).map(|e| (e.make)())
}

/// Builds weighted operators from `(name, weight)` defaults overridden by `overrides`; an unknown
/// name in either is an error naming the valid ones.
pub(crate) fn weighted_operators(
    defaults: &[(&str, f64)],
    overrides: &std::collections::BTreeMap<String, f64>,
) -> Result<Vec<WeightedOperator>, EvolveError> {
    let unknown = |name: &str| {
        EvolveError::Operators(format!(
            "unknown operator `{name}`; use one of {}",
            OPERATORS.join(", ")
        ))
    };
    let mut list: Vec<(String, f64)> = defaults.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    for (name, &w) in overrides {
        let canonical = operator_by_name(name).ok_or_else(|| unknown(name))?.name();
        match list.iter_mut().find(|(n, _)| n == canonical) {
            Some(entry) => entry.1 = w,
            None => list.push((canonical.to_string(), w)),
        }
    }
    list.into_iter()
        .map(|(name, w)| {
            if !(w.is_finite() && w >= 0.0) {
                return Err(EvolveError::Operators(format!(
                    "operator `{name}` has weight {w}; weights must be finite numbers >= 0 (0 disables it)"
                )));
            }
            let op = operator_by_name(&name).ok_or_else(|| unknown(&name))?;
            Ok(WeightedOperator::new(op, w))
        })
        .collect()
}

/// Applies `op` with only a phrase pool, for tests of operators that need nothing else.
#[cfg(test)]
pub(crate) fn run_op(
    op: &dyn Operator,
    parents: &[&Genome],
    pool: &PhrasePool,
    rng: &mut ChaCha8Rng,
) -> Option<Genome> {
    let mut ctx = OperatorContext::with_pool(pool.clone());
    op.apply(parents, &mut ctx, rng).expect("no model involved")
}

/// A genome with these phrases and no other genes (tests).
#[cfg(test)]
pub(crate) fn genome(phrases: &[&str]) -> Genome {
    Genome {
        phrases: phrases.iter().map(|s| s.to_string()).collect(),
        ..Genome::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves_and_names_round_trip() {
        for name in OPERATOR_NAMES {
            let op = operator_by_name(name).unwrap_or_else(|| panic!("{name}"));
            if OPERATORS.contains(&name) {
                assert_eq!(op.name(), name);
            }
        }
        assert_eq!(operator_by_name("crossover").unwrap().name(), "one-point");
        assert_eq!(operator_by_name("add").unwrap().name(), "insert");
        assert!(operator_by_name("mutate").is_none());
    }

    #[test]
    fn the_readme_names_every_registered_operator() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let table = readme
            .split("| family | operators |")
            .nth(1)
            .expect("README.md has the operator table");
        let table = table.split("\n\n").next().unwrap_or_default();
        for name in OPERATORS {
            assert!(
                table.contains(&format!("`{name}`")),
                "README.md's operator table lacks `{name}`"
            );
        }
    }

    #[test]
    fn overrides_replace_defaults_and_unknown_names_fail() {
        let mut o = std::collections::BTreeMap::new();
        o.insert("swap".to_string(), 0.0);
        o.insert("crossover".to_string(), 2.0);
        let ops = weighted_operators(&[("delete", 1.0), ("swap", 1.0)], &o).unwrap();
        let got: Vec<(&str, f64)> = ops.iter().map(|w| (w.operator.name(), w.weight)).collect();
        assert_eq!(got, [("delete", 1.0), ("swap", 0.0), ("one-point", 2.0)]);
        o.insert("mutate".to_string(), 1.0);
        let err = weighted_operators(&[], &o).unwrap_err().to_string();
        assert!(err.contains("unknown operator `mutate`"), "{err}");
        // Every operator is advertised, the newest included; aliases are not.
        assert!(
            err.contains("demo-order") && err.contains("pb-lamarckian"),
            "{err}"
        );
        assert!(!err.contains("crossover,"), "{err}");
        let mut bad = std::collections::BTreeMap::new();
        bad.insert("swap".to_string(), -1.0);
        assert!(weighted_operators(&[], &bad).is_err());
    }
}
