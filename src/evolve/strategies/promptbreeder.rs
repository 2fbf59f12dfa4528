//! Promptbreeder (Fernando et al., 2023): units of (task prompt, mutation-prompt) evolve by
//! binary tournament. Each generation the population is paired at random; in each pair the
//! loser is replaced by a mutant of the winner, made by one of Promptbreeder's operators
//! (first-order, zero-order, hypermutation, lineage-based, Lamarckian), and inherits the
//! winner's mutation-prompt (or the improved one hypermutation wrote).

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::config::SearchConfig;
use super::strategy::Strategy;
use crate::evolve::budget::StopReason;
use crate::evolve::candidate::{sort_best_first, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::operators::OperatorSet;
use crate::evolve::operators::{MUTATION_PROMPTS, THINKING_STYLES};
use crate::evolve::search::Search;

/// Promptbreeder (`--strategy promptbreeder`).
pub struct Promptbreeder;

impl Strategy for Promptbreeder {
    fn run(
        &self,
        search: &mut Search<'_, '_>,
        cfg: &SearchConfig,
        operators: &OperatorSet,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        if !operators.has_arity(1) {
            return Err(EvolveError::Operators(
                "promptbreeder needs one-parent operators: enable pb-first-order, pb-zero-order, pb-hypermutation, pb-lineage or pb-lamarckian".into(),
            ));
        }
        let mut units =
            search.initial_population(initial_prompts, cfg.population, Some(operators), rng)?;
        let mut mutation_prompts: Vec<String> = units
            .iter()
            .map(|_| MUTATION_PROMPTS[rng.gen_range(0..MUTATION_PROMPTS.len())].to_string())
            .collect();
        let mut generation = 0;
        loop {
            let mut sorted = units.clone();
            sort_best_first(&mut sorted);
            if !search.end_generation(generation, &sorted)? {
                break;
            }
            generation += 1;
            let mut order: Vec<usize> = (0..units.len()).collect();
            order.shuffle(rng);
            let mut losers = Vec::new();
            let mut children = Vec::new();
            let mut inherited = Vec::new();
            for pair in order.chunks(2) {
                let [i, j] = pair else { continue };
                let (winner, loser) = if units[*i].score >= units[*j].score {
                    (*i, *j)
                } else {
                    (*j, *i)
                };
                let style = THINKING_STYLES[rng.gen_range(0..THINKING_STYLES.len())];
                let mutant = search.breed_unit(
                    generation,
                    &units[winner].candidate,
                    &mutation_prompts[winner],
                    style,
                    rng,
                    |rng| operators.choose_arity(1, rng),
                )?;
                if let Some((child, mutation_prompt)) = mutant {
                    losers.push(loser);
                    children.push(child);
                    inherited.push(mutation_prompt);
                }
            }
            if children.is_empty() {
                search.stop(StopReason::Exhausted);
                continue;
            }
            let child_ids: Vec<u64> = children.iter().map(|c| c.id).collect();
            for s in search.score(children, rng)? {
                if let Some(m) = child_ids.iter().position(|&id| id == s.candidate.id) {
                    units[losers[m]] = s;
                    mutation_prompts[losers[m]] = inherited[m].clone();
                }
            }
        }
        sort_best_first(&mut units);
        Ok(units)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::evolve::driver::run_search;
    use crate::evolve::strategies::SearchConfig;
    use crate::evolve::train::TrainPool;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn losers_are_replaced_by_mutants_of_winners() {
        let cfg = SearchConfig {
            strategy: "promptbreeder".into(),
            population: 6,
            generations: 3,
            ..SearchConfig::default()
        };
        let train = TrainPool::from_triples(&[("a careful film", "positive", "")]);
        let run_once = |seed| {
            let mut gen = Counting::default();
            let mut ctx = context();
            ctx.generator = Some(&mut gen);
            ctx.task_description = "Sentiment of movie reviews.".into();
            ctx.train = &train;
            let mut ev = ToyEvaluator::default();
            let outcome = run_search(
                &cfg,
                &prompts(),
                ctx,
                &mut ev,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
            .expect("runs");
            (outcome, ev, gen.asked.len())
        };
        let (outcome, ev, asked) = run_once(4);
        check_lineage(&ev);
        let kids: Vec<_> = ev.received.iter().filter(|c| c.generation > 0).collect();
        // Three pairs per generation, one mutant each.
        assert_eq!(kids.len(), 3 * cfg.generations);
        assert!(kids
            .iter()
            .all(|c| c.operator.starts_with("pb-") && c.parents.len() == 1));
        let ops: std::collections::BTreeSet<&str> =
            kids.iter().map(|c| c.operator.as_str()).collect();
        assert!(ops.len() >= 3, "{ops:?}");
        assert!(asked >= kids.len());
        // Population size is kept, and each generation's population is its units sorted.
        assert!(ev.populations.iter().all(|p| p.len() == 6));
        assert_reaches_the_toy_optimum(&outcome);
        let (again, ev2, _) = run_once(4);
        assert_eq!(again.best, outcome.best);
        assert_eq!(ev2.received, ev.received);
    }
}
