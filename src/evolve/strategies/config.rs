//! Everything that configures one search: the strategy, its operators, selection and budget.
//! Serialised into a run's `config.json` and merged from benchmark files, so every field has a
//! default and unknown fields are errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{strategy_uses_elite, STRATEGY_NAMES};
use crate::evolve::error::EvolveError;
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
    /// Strategy name: one of [`STRATEGY_NAMES`].
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

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            strategy: STRATEGY_NAMES[0].into(),
            population: 8,
            generations: DEFAULT_GENERATIONS,
            tournament_k: 2,
            elite: 2,
            crossover_rate: 0.5,
            selection: SelectionKind::Tournament,
            replacement: Replacement::Plus,
            operators: BTreeMap::new(),
            racing: false,
            racing_top: 2,
            screen: DEFAULT_SCREEN,
            fitness: Fitness::default(),
            finalists: DEFAULT_FINALISTS,
            max_evals: None,
            max_seconds: None,
            patience: None,
            temperature: 0.8,
            top_p: 0.95,
            max_new_tokens: 64,
            length_penalty: 0.0,
        }
    }
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

    /// Checks every setting; the error names the setting and the allowed range.
    pub fn validate(&self) -> Result<(), EvolveError> {
        let fail = |msg: String| Err(EvolveError::Config(msg));
        if !STRATEGY_NAMES.contains(&self.strategy.as_str()) {
            return fail(format!(
                "unknown strategy `{}`; use one of {}",
                self.strategy,
                STRATEGY_NAMES.join(", ")
            ));
        }
        if !(self.length_penalty.is_finite() && self.length_penalty >= 0.0) {
            return fail(format!(
                "--length-penalty must be a number >= 0 (got {}); 0 turns it off, 0.1 costs a prompt as long as the longest initial one 0.1 of fitness",
                self.length_penalty
            ));
        }
        if self.population < 2 {
            return fail(format!(
                "--population must be at least 2 (got {})",
                self.population
            ));
        }
        if self.population > MAX_POPULATION {
            return fail(format!(
                "--population must be at most {MAX_POPULATION} (got {}); each generation scores that many prompts",
                self.population
            ));
        }
        if self.tournament_k > self.population {
            return fail(format!(
                "--tournament-k must be at most --population (got {} with population {}); a larger tournament only draws the same members again",
                self.tournament_k, self.population
            ));
        }
        if strategy_uses_elite(&self.strategy) && self.elite >= self.population {
            return fail(format!(
                "--elite must be less than --population (got elite {} with population {}); lower --elite or raise --population",
                self.elite, self.population
            ));
        }
        if self.racing_top < 1 {
            return fail("--racing-top must be at least 1 (got 0)".to_string());
        }
        if self.tournament_k < 1 {
            return fail("--tournament-k must be at least 1 (got 0)".to_string());
        }
        if !(0.0..=1.0).contains(&self.crossover_rate) {
            return fail(format!(
                "--crossover-rate must be between 0 and 1 (got {})",
                self.crossover_rate
            ));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return fail(format!(
                "--temperature must be a finite number >= 0 (got {})",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return fail(format!("--top-p must be in (0, 1] (got {})", self.top_p));
        }
        if self.max_new_tokens == 0 {
            return fail("--max-new-tokens must be at least 1".to_string());
        }
        if self.max_evals == Some(0) {
            return fail("--max-evals must be at least 1".to_string());
        }
        if let Some(s) = self.max_seconds {
            if !(s > 0.0 && s.is_finite()) {
                return fail(format!("--max-seconds must be a positive number (got {s})"));
            }
        }
        if self.patience == Some(0) {
            return fail("--patience must be at least 1 generation".to_string());
        }
        for (name, w) in &self.operators {
            if !(w.is_finite() && *w >= 0.0) {
                return fail(format!(
                    "operator `{name}` has weight {w}; weights must be finite numbers >= 0 (0 disables it)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_would_make_a_generation_endless_are_refused_with_the_flag() {
        let ok = SearchConfig::default();
        assert!(ok.validate().is_ok());
        for (cfg, flag) in [
            (
                SearchConfig {
                    population: 1 << 32,
                    ..ok.clone()
                },
                "--population must be at most",
            ),
            (
                SearchConfig {
                    tournament_k: 1 << 32,
                    ..ok.clone()
                },
                "--tournament-k must be at most --population",
            ),
        ] {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn elite_is_checked_against_the_population_only_where_it_is_used() {
        let small = |strategy: &str| SearchConfig {
            strategy: strategy.into(),
            population: 2,
            elite: 2,
            tournament_k: 2,
            ..SearchConfig::default()
        };
        for strategy in ["fewshot", "ga", "adaptive"] {
            let err = small(strategy).validate().unwrap_err().to_string();
            assert!(
                err.contains("--elite must be less than --population"),
                "{err}"
            );
        }
        for strategy in ["hillclimb", "random", "gepa", "opro", "de", "promptbreeder"] {
            assert!(small(strategy).validate().is_ok(), "{strategy}");
        }
    }
}
