//! What every strategy is: the [`Strategy`] trait, and parent selection as the config asks.

use rand_chacha::ChaCha8Rng;

use super::config::{SearchConfig, SelectionKind};
use crate::evolve::candidate::Scored;
use crate::evolve::error::EvolveError;
use crate::evolve::operators::OperatorSet;
use crate::evolve::search::Search;
use crate::evolve::selection;

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
