//! What every operator is: the [`Operator`] trait, its [`Family`], the [`OperatorContext`] it
//! may read (phrase pool, train pool, generator, best prompts so far), the Promptbreeder
//! [`Unit`] and an operator with its selection weight.

use rand_chacha::ChaCha8Rng;

use crate::chat::TextGenerator;
use crate::evolve::error::EvolveError;
use crate::evolve::genome::Genome;
use crate::evolve::pool::PhrasePool;
use crate::evolve::train::{self, TrainPool};

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

/// A Promptbreeder unit: a task prompt and the mutation-prompt that mutates it. Promptbreeder's
/// operators take a unit and give back the mutant's (hypermutation with a new mutation-prompt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// The task prompt.
    pub genome: Genome,
    /// The instruction that tells the model how to mutate it.
    pub mutation_prompt: String,
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
