//! Random search: the GA's operators applied to parents drawn uniformly from everything scored so
//! far, with no selection by fitness. The baseline every benchmark compares against.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::strategy::{Setup, Strategy};
use crate::evolve::candidate::{sort_best_first, Candidate, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::search::Search;

/// Random search (`--strategy random`).
pub(crate) struct RandomSearch;

impl Strategy for RandomSearch {
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        _population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        let (cfg, operators) = (setup.cfg, setup.operators);
        let archive: Vec<Scored> = search.archive().to_vec();
        let mut children = Vec::new();
        for _ in 0..cfg.population {
            let child = search.breed(generation, rng, |rng| {
                let crossover = rng.gen_bool(cfg.crossover_rate);
                let op = operators.choose(crossover, rng);
                let parents = (0..op.arity())
                    .map(|_| &archive[rng.gen_range(0..archive.len())].candidate)
                    .collect();
                Some((op, parents))
            })?;
            children.extend(child);
        }
        Ok(children)
    }

    /// No selection: the new population is just the new children.
    fn tell(
        &mut self,
        _search: &mut Search<'_, '_>,
        _setup: &Setup<'_>,
        _population: Vec<Scored>,
        mut children: Vec<Scored>,
    ) -> Vec<Scored> {
        sort_best_first(&mut children);
        children
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::evolve::strategies::SearchConfig;

    #[test]
    fn parents_come_from_anything_scored_and_the_run_is_reproducible() {
        let cfg = SearchConfig {
            strategy: "random".into(),
            ..SearchConfig::default()
        };
        assert_eq!(trace(&cfg, 5), trace(&cfg, 5));
        let (outcome, ev) = run(&cfg, 5);
        check_lineage(&ev);
        assert_eq!(ev.generations.len(), cfg.generations + 1);
        // The population is replaced each generation (no elitism), so it holds only new ids.
        for w in ev.populations.windows(2) {
            assert!(w[1].iter().all(|id| !w[0].contains(id)));
        }
        assert_reaches_the_toy_optimum(&outcome);
    }
}
