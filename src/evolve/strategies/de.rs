//! Differential evolution with the model as the variation operator, after EvoPrompt-DE (Guo et
//! al., ICLR 2024): for each member, the model mutates the parts in which two other members
//! differ, combines them with the best prompt so far and crosses the result over with the
//! member; the trial replaces the member when it scores at least as well.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::strategy::{filled_population, Setup, Strategy};
use crate::evolve::candidate::{sort_best_first, Candidate, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::search::Search;

/// Differential evolution (`--strategy de`).
pub(crate) struct DifferentialEvolution;

impl Strategy for DifferentialEvolution {
    fn start(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        if !setup.operators.has_arity(3) {
            return Err(EvolveError::Operators(
                "de needs a three-parent operator: enable evo-de (e.g. --operators evo-de=1)"
                    .into(),
            ));
        }
        if search.ops.generator.is_none() {
            return Err(EvolveError::Operators(
                "de rewrites prompts with the model, but no generator was given".into(),
            ));
        }
        filled_population(search, setup, initial_prompts, rng)
    }

    /// One trial per member: the member, then two other members drawn at random.
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        let operators = setup.operators;
        let n = population.len();
        let mut trials = Vec::new();
        for i in 0..n {
            let child = search.breed(generation, rng, |rng| {
                let others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
                let draw = |rng: &mut ChaCha8Rng| {
                    if others.is_empty() {
                        i
                    } else {
                        others[rng.gen_range(0..others.len())]
                    }
                };
                let a = draw(rng);
                let mut b = draw(rng);
                if others.len() >= 2 {
                    while b == a {
                        b = draw(rng);
                    }
                }
                let op = operators.choose_arity(3, rng)?;
                Some((
                    op,
                    vec![
                        &population[i].candidate,
                        &population[a].candidate,
                        &population[b].candidate,
                    ],
                ))
            })?;
            trials.extend(child);
        }
        Ok(trials)
    }

    /// A trial competes with its first parent, the member it was made for.
    fn tell(
        &mut self,
        _search: &mut Search<'_, '_>,
        _setup: &Setup<'_>,
        mut population: Vec<Scored>,
        trials: Vec<Scored>,
    ) -> Vec<Scored> {
        for s in trials {
            if let Some(k) = population
                .iter()
                .position(|p| p.candidate.id == s.candidate.parents[0])
            {
                if s.full && s.score >= population[k].score {
                    population[k] = s;
                }
            }
        }
        sort_best_first(&mut population);
        population
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::evolve::driver::run_search;
    use crate::evolve::strategies::SearchConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn trials_replace_members_they_match_or_beat() {
        let cfg = SearchConfig {
            strategy: "de".into(),
            population: 4,
            elite: 1,
            generations: 3,
            ..SearchConfig::default()
        };
        let mut gen = Counting::default();
        let mut ctx = context();
        ctx.generator = Some(&mut gen);
        let mut ev = ToyEvaluator::default();
        let outcome = run_search(
            &cfg,
            &prompts(),
            ctx,
            &mut ev,
            &mut ChaCha8Rng::seed_from_u64(1),
        )
        .expect("runs");
        check_lineage(&ev);
        let kids: Vec<_> = ev.received.iter().filter(|c| c.generation > 0).collect();
        assert!(!kids.is_empty());
        assert!(kids
            .iter()
            .all(|c| c.operator == "evo-de" && c.parents.len() == 3));
        // The trial's first parent is the member it competes with; the others differ from it.
        assert!(kids
            .iter()
            .all(|c| c.parents[1] != c.parents[0] && c.parents[2] != c.parents[0]));
        assert!(gen.asked.iter().all(|m| m[1].content.contains("Prompt 3:")));
        assert_reaches_the_toy_optimum(&outcome);
        // Members only ever get better or stay.
        for w in ev.generations.windows(2) {
            assert!(w[1].1.iter().sum::<f64>() >= w[0].1.iter().sum::<f64>() - 1e-12);
        }
    }

    #[test]
    fn de_without_a_generator_is_a_clear_error() {
        let cfg = SearchConfig {
            strategy: "de".into(),
            ..SearchConfig::default()
        };
        let mut ev = ToyEvaluator::default();
        let err = run_search(
            &cfg,
            &prompts(),
            context(),
            &mut ev,
            &mut ChaCha8Rng::seed_from_u64(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no generator"), "{err}");
    }
}
