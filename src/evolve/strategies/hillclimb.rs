//! Greedy hill climbing over edits, after GrIPS (Prasad et al., "GrIPS: Gradient-free,
//! Edit-based Instruction Search for Prompting Large Language Models", EACL 2023): from the best
//! initial prompt, score `population` one-parent edits per step, move to the best if it beats the
//! current prompt, and stop after `patience` steps without improvement (default 2).

use rand_chacha::ChaCha8Rng;

use super::strategy::{Setup, Strategy};
use crate::evolve::candidate::{sort_best_first, Candidate, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::search::Search;

/// Steps without improvement before hill climbing stops when `patience` is not set.
pub(crate) const DEFAULT_PATIENCE: usize = 2;

/// Hill climbing (`--strategy hillclimb`): the population reported each step is the step's
/// neighbours; the current prompt is kept here. Patience is the driver's (`--patience`, else
/// [`DEFAULT_PATIENCE`]): the current prompt only moves when the best one so far improves, so
/// a step without a better best is a step the climb did not move.
#[derive(Default)]
pub(crate) struct HillClimb {
    current: Option<Scored>,
}

impl Strategy for HillClimb {
    fn start(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        if !setup.operators.has_arity(1) {
            return Err(EvolveError::Operators(
                "hillclimb needs at least one one-parent operator (delete, swap, insert, paraphrase, persona, constraint, demo-*)".into(),
            ));
        }
        // GrIPS starts from the given instruction(s): no random fill of the first population.
        let population = search.initial_population(initial_prompts, usize::MAX, None, rng)?;
        self.current = Some(
            population
                .iter()
                .find(|s| s.full)
                .cloned()
                .unwrap_or_else(|| population[0].clone()),
        );
        Ok(population)
    }

    /// `--population` one-parent edits of the current prompt.
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        _neighbours: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        let Some(current) = &self.current else {
            return Ok(Vec::new());
        };
        let parent = &current.candidate;
        let mut children = Vec::new();
        for _ in 0..setup.cfg.population {
            let child = search.breed(generation, rng, |rng| {
                Some((setup.operators.choose_arity(1, rng)?, vec![parent]))
            })?;
            children.extend(child);
        }
        Ok(children)
    }

    /// Moves to the best neighbour when it beats the current prompt.
    fn tell(
        &mut self,
        _search: &mut Search<'_, '_>,
        _setup: &Setup<'_>,
        _neighbours: Vec<Scored>,
        mut children: Vec<Scored>,
    ) -> Vec<Scored> {
        sort_best_first(&mut children);
        if let (Some(best), Some(current)) =
            (children.iter().find(|s| s.full), self.current.as_mut())
        {
            if best.score > current.score {
                *current = best.clone();
            }
        }
        children
    }

    fn default_patience(&self) -> Option<usize> {
        Some(DEFAULT_PATIENCE)
    }

    /// The current prompt, then the last step's neighbours.
    fn finish(&mut self, neighbours: Vec<Scored>) -> Vec<Scored> {
        let Some(current) = self.current.take() else {
            return neighbours;
        };
        let current_id = current.candidate.id;
        let mut last = vec![current];
        last.extend(
            neighbours
                .into_iter()
                .filter(|s| s.candidate.id != current_id),
        );
        sort_best_first(&mut last);
        last
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::evolve::budget::StopReason;
    use crate::evolve::strategies::SearchConfig;

    #[test]
    fn climbs_from_the_best_initial_prompt_until_patience() {
        let cfg = SearchConfig {
            strategy: "hillclimb".into(),
            generations: 50,
            population: 4,
            ..SearchConfig::default()
        };
        let (outcome, ev) = run(&cfg, 9);
        check_lineage(&ev);
        // Replay: the current prompt starts as the best initial one and moves to the best child
        // of a step only when it is strictly better; every child edits the current prompt.
        let score = |c: &crate::evolve::candidate::Candidate| toy_score(&c.prompt());
        let gen0: Vec<_> = ev.received.iter().filter(|c| c.generation == 0).collect();
        let mut current = gen0
            .iter()
            .fold(gen0[0], |b, c| if score(c) > score(b) { c } else { b });
        let last_gen = ev.received.iter().map(|c| c.generation).max().unwrap();
        for g in 1..=last_gen {
            let children: Vec<_> = ev.received.iter().filter(|c| c.generation == g).collect();
            assert!(!children.is_empty());
            for c in &children {
                assert_eq!(c.parents, vec![current.id], "generation {g}");
            }
            let best = children
                .iter()
                .fold(children[0], |b, c| if score(c) > score(b) { c } else { b });
            if score(best) > score(current) {
                current = best;
            }
        }
        assert_eq!(outcome.stop, StopReason::Patience);
        assert_reaches_the_toy_optimum(&outcome);
    }
}
