//! The genetic algorithm: parents by selection, children by weighted operators, survivors by
//! (mu+lambda) or (mu,lambda) replacement with elitism.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::config::{Replacement, SearchConfig};
use super::error_driven::error_driven_child;
use super::strategy::{select, Setup, Strategy};
use crate::evolve::candidate::{sort_best_first, Candidate, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::search::Search;

/// The genetic algorithm (`--strategy ga`), and with error-driven demonstrations the default
/// `fewshot` strategy.
pub(crate) struct GeneticAlgorithm {
    /// Share of children made by an error-driven move (a train example the parent gets wrong
    /// becomes a demonstration) instead of an operator.
    error_driven: f64,
}

impl GeneticAlgorithm {
    /// `--strategy ga`: operators only.
    pub(crate) const PLAIN: Self = Self { error_driven: 0.0 };
    /// `--strategy fewshot`: a quarter of the children are error-driven demonstrations; the
    /// rest come from demonstration-heavy operator weights.
    pub(crate) const FEWSHOT: Self = Self { error_driven: 0.25 };
}

impl Strategy for GeneticAlgorithm {
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        let (cfg, operators) = (setup.cfg, setup.operators);
        let lambda = cfg.population - cfg.elite;
        let mut children = Vec::new();
        for _ in 0..lambda {
            if self.error_driven > 0.0 && rng.gen_bool(self.error_driven) {
                let parent = select(population, cfg, rng).candidate.clone();
                if let Some(child) = error_driven_child(search, &parent, generation, rng)? {
                    children.push(child);
                    continue;
                }
            }
            let child = search.breed(generation, rng, |rng| {
                let crossover = rng.gen_bool(cfg.crossover_rate);
                let op = operators.choose(crossover, rng);
                let parents = (0..op.arity())
                    .map(|_| &select(population, cfg, rng).candidate)
                    .collect();
                Some((op, parents))
            })?;
            children.extend(child);
        }
        Ok(children)
    }

    fn tell(
        &mut self,
        _search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        population: Vec<Scored>,
        children: Vec<Scored>,
    ) -> Vec<Scored> {
        survivors(&population, children, setup.cfg)
    }
}

/// The next population from the current one (best first) and its scored children:
/// (mu+lambda) keeps the best of both; (mu,lambda) keeps the children and the `elite` best
/// parents (and the next best parents in slots no child filled). Best first, at most
/// `population` long.
pub(crate) fn survivors(
    population: &[Scored],
    scored: Vec<Scored>,
    cfg: &SearchConfig,
) -> Vec<Scored> {
    let mut next: Vec<Scored> = match cfg.replacement {
        Replacement::Plus => population.iter().cloned().chain(scored).collect(),
        Replacement::Comma => {
            let mut next: Vec<Scored> = population[..cfg.elite.min(population.len())].to_vec();
            let short = cfg.population.saturating_sub(next.len() + scored.len());
            next.extend(scored);
            // Slots no child filled keep the next best parents.
            next.extend(population.iter().skip(cfg.elite).take(short).cloned());
            next
        }
    };
    sort_best_first(&mut next);
    next.truncate(cfg.population);
    next
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::evolve::candidate::INITIAL_OPERATOR;
    use crate::evolve::strategies::{Replacement, SearchConfig, SelectionKind};

    #[test]
    fn same_seed_same_run_and_different_seed_differs() {
        let cfg = SearchConfig::default();
        assert_eq!(trace(&cfg, 42), trace(&cfg, 42));
        assert_ne!(trace(&cfg, 1), trace(&cfg, 2));
    }

    #[test]
    fn populations_are_sorted_and_the_best_never_drops() {
        for replacement in [Replacement::Plus, Replacement::Comma] {
            for selection in [
                SelectionKind::Tournament,
                SelectionKind::Roulette,
                SelectionKind::Rank,
            ] {
                let cfg = SearchConfig {
                    replacement,
                    selection,
                    ..SearchConfig::default()
                };
                let (outcome, ev) = run(&cfg, 7);
                let gens: Vec<usize> = ev.generations.iter().map(|(g, _)| *g).collect();
                assert_eq!(gens, (0..=cfg.generations).collect::<Vec<_>>());
                let mut previous = f64::NEG_INFINITY;
                for (g, scores) in &ev.generations {
                    assert_eq!(scores.len(), cfg.population, "generation {g}");
                    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
                    assert!(scores[0] >= previous);
                    previous = scores[0];
                }
                check_lineage(&ev);
                assert_reaches_the_toy_optimum(&outcome);
                assert_eq!(outcome.initial.len(), 4);
                assert!(outcome
                    .initial
                    .iter()
                    .all(|s| s.candidate.operator == INITIAL_OPERATOR));
            }
        }
    }

    #[test]
    fn comma_replacement_drops_parents_beyond_the_elite() {
        let cfg = SearchConfig {
            replacement: Replacement::Comma,
            elite: 1,
            generations: 1,
            ..SearchConfig::default()
        };
        let (_, ev) = run(&cfg, 3);
        let gen1_children = ev.received.iter().filter(|c| c.generation == 1).count();
        assert_eq!(gen1_children, cfg.population - 1);
    }

    #[test]
    fn fewshot_adds_train_examples_its_parents_get_wrong_and_reaches_the_optimum() {
        let cfg = SearchConfig {
            strategy: "fewshot".into(),
            ..SearchConfig::default()
        };
        let (outcome, ev) = run(&cfg, 11);
        check_lineage(&ev);
        let by_id = |id: u64| ev.received.iter().find(|c| c.id == id).unwrap();
        let errors: Vec<_> = ev
            .received
            .iter()
            .filter(|c| c.operator == "demo-error")
            .collect();
        assert!(!errors.is_empty(), "no error-driven child");
        for c in errors {
            // One parent; the child holds a train demonstration the parent did not.
            let parent = by_id(c.parents[0]);
            let added: Vec<_> = c
                .genome
                .demos
                .iter()
                .filter(|d| !parent.genome.demos.contains(d))
                .collect();
            assert_eq!(added.len(), 1, "{c:?}");
            let i = *added[0];
            assert!(i < train().len(), "{c:?}");
            // The toy gets train example i wrong when (i + prompt length) is a multiple of 3.
            assert!(
                (i + parent.prompt().len()).is_multiple_of(3),
                "the parent gets train example {i} right: {c:?}"
            );
        }
        assert_reaches_the_toy_optimum(&outcome);
    }
}
