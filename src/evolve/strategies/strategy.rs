//! What every strategy is: the [`Strategy`] trait (ask/tell: a strategy proposes children and
//! chooses survivors; the driver in `evolve/driver.rs` owns the loop, stopping, patience,
//! checkpoints and the final choice), and parent selection as the config asks.

use rand_chacha::ChaCha8Rng;

use super::config::{SearchConfig, SelectionKind};
use crate::evolve::candidate::{Candidate, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::operators::OperatorSet;
use crate::evolve::search::Search;
use crate::evolve::selection;

/// What a strategy reads on every step: the search's settings and its operators.
pub(crate) struct Setup<'a> {
    /// The search's settings.
    pub cfg: &'a SearchConfig,
    /// The enabled operators, weighted.
    pub operators: &'a OperatorSet,
}

/// A way to search, driven by `run_search`: [`Strategy::start`] scores the first population;
/// then, each generation, [`Strategy::ask`] proposes children, the driver scores them and
/// [`Strategy::tell`] gives the next population. A strategy keeps whatever else it needs
/// (hill climbing's current prompt, Promptbreeder's mutation-prompts) in itself; the registry
/// makes a fresh one for every search.
pub(crate) trait Strategy {
    /// Checks what the strategy needs (an operator arity, the model, a train pool) and returns
    /// the first population, scored. By default: the initial prompts and children of them made
    /// by the operators up to `--population`.
    fn start(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        filled_population(search, setup, initial_prompts, rng)
    }

    /// Proposes the children of `generation` from `population` (the one last reported). None
    /// that could be made ends the search as exhausted.
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError>;

    /// The next population (reported at the end of the generation) from the current one and
    /// the children that were scored on the full dev set.
    fn tell(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        population: Vec<Scored>,
        children: Vec<Scored>,
    ) -> Vec<Scored>;

    /// Whether children proposed while the search stopped (a probe of the train pool ran out
    /// of budget) are dropped and the generation is not reported again. GEPA's loop does this;
    /// the others score what they can and report the generation once more.
    fn drops_children_when_stopped(&self) -> bool {
        false
    }

    /// Generations without a better best candidate before the search stops, when
    /// `--patience` is not set (None: no limit).
    fn default_patience(&self) -> Option<usize> {
        None
    }

    /// The last population, from the one last reported.
    fn finish(&mut self, population: Vec<Scored>) -> Vec<Scored> {
        population
    }
}

/// The first population most strategies start from: the initial prompts, then children of
/// them made by the operators until there are `--population`, all scored.
pub(crate) fn filled_population(
    search: &mut Search<'_, '_>,
    setup: &Setup<'_>,
    initial_prompts: &[String],
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Scored>, EvolveError> {
    search.initial_population(
        initial_prompts,
        setup.cfg.population,
        Some(setup.operators),
        rng,
    )
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
