//! The driver of a search: makes the configured strategy and owns its loop (ask, score, tell;
//! stopping, patience and checkpoints through [`Search`]), then chooses the answer on
//! validation and assembles the outcome. Every strategy runs and ends the same way through
//! here.

use rand_chacha::ChaCha8Rng;

use super::budget::StopReason;
use super::candidate::{sort_best_first, Scored};
use super::choice::{choose_on_validation, Criterion};
use super::error::EvolveError;
use super::operators::OperatorContext;
use super::outcome::SearchOutcome;
use super::search::{Evaluator, Search};
use super::strategies::{
    operator_set, strategy_by_name, SearchConfig, Setup, Strategy, STRATEGY_NAMES,
};
use crate::task::Fitness;

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
    let mut strategy = strategy_by_name(&config.strategy).ok_or_else(|| {
        EvolveError::Config(format!(
            "unknown strategy `{}`; use one of {}",
            config.strategy,
            STRATEGY_NAMES.join(", ")
        ))
    })?;
    let operators = operator_set(config)?;
    let mut limits = config.limits();
    limits.patience = limits.patience.or(strategy.default_patience());
    let mut search = Search::new(evaluator, ops, limits);
    let setup = Setup {
        cfg: config,
        operators: &operators,
    };
    let population = drive(strategy.as_mut(), &mut search, &setup, initial_prompts, rng)?;
    let criterion = if config.fitness == Fitness::Balanced {
        Criterion::Fitness
    } else {
        Criterion::Metric
    };
    let choice = choose_on_validation(&mut search, config.finalists, criterion)?;
    let mut outcome = outcome(&search, population)?;
    if let Some((best, how)) = choice {
        outcome.best = best;
        outcome.final_choice = Some(how);
    }
    Ok(outcome)
}

/// The search loop every strategy shares: the first population, then generations of ask,
/// score and tell until the search stops (budget, time, generations, patience, or no new
/// child: exhausted). [`Search::end_generation`] reports each population (the checkpoint)
/// and decides whether to go on. Returns the last population.
fn drive(
    strategy: &mut dyn Strategy,
    search: &mut Search<'_, '_>,
    setup: &Setup<'_>,
    initial_prompts: &[String],
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Scored>, EvolveError> {
    let mut population = strategy.start(search, setup, initial_prompts, rng)?;
    let mut generation = 0;
    while search.end_generation(generation, &population)? {
        generation += 1;
        let children = strategy.ask(search, setup, generation, &population, rng)?;
        if search.stopped() && strategy.drops_children_when_stopped() {
            break;
        }
        if children.is_empty() {
            search.stop(StopReason::Exhausted);
            continue;
        }
        let scored = search.score(children, rng)?;
        population = strategy.tell(search, setup, population, scored);
    }
    Ok(strategy.finish(population))
}

/// The outcome, with `final_population` as the last population; the answer is the best on dev
/// until the final choice chooses on validation.
fn outcome(
    search: &Search<'_, '_>,
    mut final_population: Vec<Scored>,
) -> Result<SearchOutcome, EvolveError> {
    sort_best_first(&mut final_population);
    let best = search
        .best()
        .cloned()
        .ok_or(EvolveError::NoInitialPrompts)?;
    Ok(SearchOutcome {
        dev_best: best.clone(),
        best,
        initial: search.initial().to_vec(),
        final_population,
        candidates_proposed: search.candidates_proposed(),
        evals_used: search.evals_used(),
        generations: search.generations(),
        stop: search.stop_reason().unwrap_or(StopReason::Generations),
        model_replies: search.ops.model_replies,
        rejected_replies: search.ops.rejected_replies,
        screened_out: search.screened_out(),
        validation_evals: search.validation_evals(),
        final_choice: None,
    })
}
