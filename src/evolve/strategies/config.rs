//! Everything that configures one search: the strategy, its operators, selection and budget.
//! Serialised into a run's `config.json` and merged from benchmark files, so every field has a
//! default and unknown fields are errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::evolve::search::SearchLimits;
use crate::task::Fitness;

/// How parents are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SelectionKind {
    /// Best of k drawn at random (`tournament_k`).
    Tournament,
    /// Probability proportional to fitness (fitness-proportionate, "roulette wheel").
    Roulette,
    /// Probability proportional to rank (best = population size, worst = 1).
    Rank,
}

/// Which members survive into the next generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Replacement {
    /// (mu+lambda): parents and children compete; the best `population` survive.
    Plus,
    /// (mu,lambda): only the children survive, plus the `elite` best parents.
    Comma,
}

/// The settings of one search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Strategy name: one of [`super::STRATEGY_NAMES`].
    pub strategy: String,
    /// Population size (ga, de, random, promptbreeder) or neighbours per step (hillclimb).
    pub population: usize,
    /// Generations after the initial one (an upper bound when a budget is also set).
    pub generations: usize,
    /// Tournament size for tournament selection.
    pub tournament_k: usize,
    /// Best members kept unchanged each generation.
    pub elite: usize,
    /// Probability that a GA child comes from a two-parent operator rather than a one-parent one.
    pub crossover_rate: f64,
    /// Parent selection.
    pub selection: SelectionKind,
    /// Survivor selection.
    pub replacement: Replacement,
    /// Operator weights by name (missing names use the strategy's default weight; 0 disables).
    pub operators: BTreeMap<String, f64>,
    /// Score new candidates on a quarter, then half, of dev first, and stop those that cannot
    /// reach the top `racing_top` (successive halving).
    pub racing: bool,
    /// How many of the best full-dev scores racing compares with.
    pub racing_top: usize,
    /// Paired screening: a child is first scored on this many dev examples its best parent was
    /// scored on, and on the rest of dev only when it is not worse there (0: off).
    pub screen: usize,
    /// Per-example fitness the search maximises (reports keep accuracy as the headline).
    pub fitness: Fitness,
    /// Candidates (best on dev) re-scored on validation with the best initial prompt for the
    /// final choice.
    pub finalists: usize,
    /// Stop before an evaluation would exceed this many example forward passes (counted the same
    /// for every strategy: one per dev example a candidate is scored on, cached or not).
    pub max_evals: Option<u64>,
    /// Stop after this many seconds of search (makes the run depend on machine speed).
    pub max_seconds: Option<f64>,
    /// Stop after this many generations without a better best dev score.
    pub patience: Option<usize>,
    /// Sampling temperature of model-driven operators.
    pub temperature: f64,
    /// Nucleus (top-p) sampling threshold of model-driven operators.
    pub top_p: f64,
    /// Longest reply (tokens) a model-driven operator may generate.
    pub max_new_tokens: usize,
    /// Prompt length as a second objective, as CAPO does: each example's fitness loses
    /// `length_penalty` x (prompt tokens / the longest initial prompt's tokens). 0: off. The
    /// headline metric and the final choice's test stay unpenalised.
    #[serde(skip_serializing_if = "is_zero")]
    pub length_penalty: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Generations of a default run: with the default strategy and 100 dev examples, about 60
/// children on top of the task's initial prompts, within minutes on a 2-core CPU.
pub(crate) const DEFAULT_GENERATIONS: usize = 10;

/// Largest population accepted: far beyond any useful search, small enough that a typo (or a
/// crafted config.json) cannot make one generation run for days.
pub(crate) const MAX_POPULATION: usize = 10_000;

/// Dev examples a child is screened on by default: a tenth of the default dev set, so a child
/// worse than its parent costs 10 evaluations instead of 100.
pub const DEFAULT_SCREEN: usize = 10;

/// Candidates re-scored on validation by default: enough to escape the single luckiest dev
/// score, few enough that validation costs at most 6 full evaluations.
pub const DEFAULT_FINALISTS: usize = 5;

impl SearchConfig {
    /// The settings the shared search state obeys.
    pub fn limits(&self) -> SearchLimits {
        SearchLimits {
            generations: self.generations,
            max_evals: self.max_evals,
            max_seconds: self.max_seconds,
            patience: self.patience,
            racing: self.racing,
            racing_top: self.racing_top,
            screen: self.screen,
        }
    }
}
