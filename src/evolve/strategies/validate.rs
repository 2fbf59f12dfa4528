//! A config checked against the strategy registry: the default config (the registry's
//! default strategy), every setting's range, and the operators over the strategy's defaults.

use std::collections::BTreeMap;

use super::config::{
    Replacement, SearchConfig, SelectionKind, DEFAULT_FINALISTS, DEFAULT_GENERATIONS,
    DEFAULT_SCREEN, MAX_POPULATION,
};
use super::registry::{default_weights, strategy_uses_elite, STRATEGY_NAMES};
use crate::evolve::error::EvolveError;
use crate::evolve::operators::{weighted_operators, OperatorSet};
use crate::task::Fitness;

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

impl SearchConfig {
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

/// Checks the operator names and weights of a config against its strategy's defaults (so a
/// typo fails before a run folder is made).
pub fn check_operators(config: &SearchConfig) -> Result<Vec<&'static str>, EvolveError> {
    let set = operator_set(config)?;
    Ok(set.names())
}

/// The config's operators over its strategy's defaults (empty for a strategy that uses none).
pub(crate) fn operator_set(config: &SearchConfig) -> Result<OperatorSet, EvolveError> {
    let ops = weighted_operators(default_weights(&config.strategy), &config.operators)?;
    if default_weights(&config.strategy).is_empty() && config.operators.is_empty() {
        return Ok(OperatorSet::empty());
    }
    OperatorSet::new(ops)
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
