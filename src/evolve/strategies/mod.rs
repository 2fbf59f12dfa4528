//! Search strategies, selected by `--strategy`: `ga` (genetic algorithm), `de` (EvoPrompt's
//! differential evolution), `hillclimb` (GrIPS-like greedy edits with patience), `promptbreeder`
//! (co-evolving prompts and mutation-prompts, binary tournament) and `random` (the same operators
//! without selection: the baseline every benchmark compares against).

mod config;
mod de;
mod ga;
mod hillclimb;
mod promptbreeder;
mod random;

pub use config::{Replacement, SearchConfig, SelectionKind, STRATEGY_NAMES};

use rand_chacha::ChaCha8Rng;

use super::error::EvolveError;
use super::operators::{weighted_operators, OperatorContext};
use super::search::{Evaluator, OperatorSet, Scored, Search, SearchOutcome};
use super::selection;

/// A way to search: proposes candidates and decides which survive, through a [`Search`].
pub trait Strategy {
    /// Its name in configs and reports.
    fn name(&self) -> &'static str;
    /// Runs until the search stops; returns the last population.
    fn run(
        &self,
        search: &mut Search<'_, '_>,
        operators: &OperatorSet,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError>;
}

/// Operator weights a strategy uses unless the config overrides them.
pub fn default_weights(strategy: &str) -> &'static [(&'static str, f64)] {
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
    const DE: &[(&str, f64)] = &[("evo-de", 1.0)];
    const PROMPTBREEDER: &[(&str, f64)] = &[
        ("pb-first-order", 1.0),
        ("pb-zero-order", 1.0),
        ("pb-hypermutation", 1.0),
        ("pb-lineage", 1.0),
        ("pb-lamarckian", 1.0),
    ];
    match strategy {
        "hillclimb" => HILLCLIMB,
        "de" => DE,
        "promptbreeder" => PROMPTBREEDER,
        _ => GA,
    }
}

/// The strategy with this name (see [`STRATEGY_NAMES`]).
pub fn strategy_by_name(name: &str) -> Option<Box<dyn Strategy>> {
    Some(match name {
        "ga" => Box::new(ga::GeneticAlgorithm),
        "de" => Box::new(de::DifferentialEvolution),
        "hillclimb" => Box::new(hillclimb::HillClimb),
        "promptbreeder" => Box::new(promptbreeder::Promptbreeder),
        "random" => Box::new(random::RandomSearch),
        _ => return None,
    })
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
    let operators = OperatorSet::new(weighted_operators(
        default_weights(&config.strategy),
        &config.operators,
    )?)?;
    let mut search = Search::new(evaluator, ops, config.clone());
    let population = strategy.run(&mut search, &operators, initial_prompts, rng)?;
    search.finish(population)
}

/// Checks the operator names and weights of a config against its strategy's defaults (so a
/// typo fails before a run folder is made).
pub fn check_operators(config: &SearchConfig) -> Result<Vec<&'static str>, EvolveError> {
    let set = OperatorSet::new(weighted_operators(
        default_weights(&config.strategy),
        &config.operators,
    )?)?;
    Ok(set.names())
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
