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
pub(crate) mod operator;
mod promptbreeder;
mod registry;
mod set;

pub use crossover::{OnePointCrossover, SentenceCrossover, UniformCrossover};
pub use edit::{Delete, Insert, Paraphrase, Swap};
pub use genes::{ConstraintGene, DemoAdd, DemoDrop, DemoOrder, DemoSet, DemoSwap, PersonaGene};
pub(crate) use model::{ask_for_prompt, with_genes_of};
pub use model::{clean_reply, extract_tagged, EvoDe, EvoGa, MAX_PROMPT_CHARS};
pub use operator::{Family, Operator, OperatorContext, Unit, WeightedOperator};
pub use promptbreeder::{
    FirstOrder, Hypermutation, Lamarckian, LineageBased, ZeroOrder, MUTATION_PROMPTS,
    THINKING_STYLES,
};
pub(crate) use registry::weighted_operators;
pub use registry::{operator_by_name, OPERATORS, OPERATOR_NAMES};
pub(crate) use set::OperatorSet;
