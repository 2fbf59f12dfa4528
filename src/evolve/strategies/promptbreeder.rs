//! Promptbreeder (Fernando et al., 2023): units of (task prompt, mutation-prompt) evolve by
//! binary tournament. Each generation the population is paired at random; in each pair the
//! loser is replaced by a mutant of the winner, made by one of Promptbreeder's operators
//! (first-order, zero-order, hypermutation, lineage-based, Lamarckian), and inherits the
//! winner's mutation-prompt (or the improved one hypermutation wrote).

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::strategy::{filled_population, Setup, Strategy};
use crate::evolve::candidate::{sort_best_first, Candidate, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::operators::{MUTATION_PROMPTS, THINKING_STYLES};
use crate::evolve::search::Search;

/// Promptbreeder (`--strategy promptbreeder`). The units keep their places (the pairing
/// draws indices); the population reported is them best first.
#[derive(Default)]
pub struct Promptbreeder {
    units: Vec<Scored>,
    mutation_prompts: Vec<String>,
    /// This generation's children: the unit each replaces and the mutation-prompt it inherits.
    pending: Vec<(u64, usize, String)>,
}

impl Promptbreeder {
    fn sorted_units(&self) -> Vec<Scored> {
        let mut sorted = self.units.clone();
        sort_best_first(&mut sorted);
        sorted
    }
}

impl Strategy for Promptbreeder {
    fn start(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        if !setup.operators.has_arity(1) {
            return Err(EvolveError::Operators(
                "promptbreeder needs one-parent operators: enable pb-first-order, pb-zero-order, pb-hypermutation, pb-lineage or pb-lamarckian".into(),
            ));
        }
        self.units = filled_population(search, setup, initial_prompts, rng)?;
        self.mutation_prompts = self
            .units
            .iter()
            .map(|_| MUTATION_PROMPTS[rng.gen_range(0..MUTATION_PROMPTS.len())].to_string())
            .collect();
        Ok(self.sorted_units())
    }

    /// Pairs the units at random; in each pair, a mutant of the winner for the loser's place.
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        _population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        let units = &self.units;
        let mut order: Vec<usize> = (0..units.len()).collect();
        order.shuffle(rng);
        self.pending.clear();
        let mut children = Vec::new();
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
                &self.mutation_prompts[winner],
                style,
                rng,
                |rng| setup.operators.choose_arity(1, rng),
            )?;
            if let Some((child, mutation_prompt)) = mutant {
                self.pending.push((child.id, loser, mutation_prompt));
                children.push(child);
            }
        }
        Ok(children)
    }

    /// Each fully scored mutant takes its loser's place and inherits the mutation-prompt.
    fn tell(
        &mut self,
        _search: &mut Search<'_, '_>,
        _setup: &Setup<'_>,
        _population: Vec<Scored>,
        children: Vec<Scored>,
    ) -> Vec<Scored> {
        for s in children {
            if let Some((_, loser, mutation_prompt)) =
                self.pending.iter().find(|(id, _, _)| *id == s.candidate.id)
            {
                self.units[*loser] = s;
                self.mutation_prompts[*loser] = mutation_prompt.clone();
            }
        }
        self.sorted_units()
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
