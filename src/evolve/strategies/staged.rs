//! The staged strategy: gepa's search for the instruction first, then fewshot's search for the
//! demonstrations around the instructions it found.
//!
//! Issue 24's benchmark found the two kinds of moves strong on different tasks: reflective
//! rewrites of the instruction (gepa) where the instruction must say what the labels mean (trec,
//! agnews), demonstrations (fewshot) where it need not (sst2, subj), and demonstrations found
//! by fewshot generalising to test better than their dev gain says, so that a bandit credited
//! on dev starves them (experiments/results/2026-12-03-default). This strategy gives each kind
//! its own stage instead: until [`FIRST_STAGE_SHARE`] of the budget is spent, children are
//! gepa's (reflection from Pareto-front parents, merges when there are two-parent operators);
//! from then on the best `--population` candidates so far are fewshot's population, and its
//! GA adds, swaps and picks demonstrations (a quarter error-driven) and edits the wording.
//! The stage is decided from the budget spent when a generation starts, so a resumed run,
//! which replays its log, switches at the same generation.

use rand_chacha::ChaCha8Rng;

use super::ga::GeneticAlgorithm;
use super::gepa::{best_so_far, Gepa};
use super::strategy::{Setup, Strategy};
use crate::evolve::candidate::{Candidate, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::search::Search;

/// Share of the budget (`--max-evals`, else `--generations`) the instruction stage spends
/// before the demonstration stage starts: about the evaluations gepa needed to reach 95% of its
/// final dev score on trec and agnews in the benchmark of 2026-12-03 (900-1,900 of 3,000).
pub const FIRST_STAGE_SHARE: f64 = 0.5;

/// The staged strategy (`--strategy staged`).
pub(crate) struct Staged {
    /// The instruction stage.
    instructions: Gepa,
    /// The demonstration stage (fewshot's GA).
    demonstrations: GeneticAlgorithm,
    /// Whether the demonstration stage has started.
    second: bool,
}

impl Default for Staged {
    fn default() -> Self {
        Self {
            instructions: Gepa,
            demonstrations: GeneticAlgorithm::FEWSHOT,
            second: false,
        }
    }
}

/// Whether the first stage has spent its share: of `--max-evals` when set, else of the
/// generations.
fn first_stage_done(search: &Search<'_, '_>, setup: &Setup<'_>, generation: usize) -> bool {
    match setup.cfg.max_evals {
        Some(budget) => search.evals_used() as f64 >= FIRST_STAGE_SHARE * budget as f64,
        None => generation as f64 > FIRST_STAGE_SHARE * setup.cfg.generations as f64,
    }
}

impl Strategy for Staged {
    /// gepa's start: the initial prompts, scored (it needs the model to reflect).
    fn start(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        self.second = false;
        self.instructions.start(search, setup, initial_prompts, rng)
    }

    /// gepa's children until the first stage's share is spent, fewshot's after, from the best
    /// `--population` so far (the population gepa reports).
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        if !self.second && first_stage_done(search, setup, generation) {
            self.second = true;
        }
        if self.second {
            self.demonstrations
                .ask(search, setup, generation, population, rng)
        } else {
            self.instructions
                .ask(search, setup, generation, population, rng)
        }
    }

    /// gepa's population (the best so far) in the first stage, the GA's survivors in the
    /// second.
    fn tell(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        population: Vec<Scored>,
        children: Vec<Scored>,
    ) -> Vec<Scored> {
        if self.second {
            self.demonstrations
                .tell(search, setup, population, children)
        } else {
            best_so_far(search, setup.cfg.population)
        }
    }

    fn drops_children_when_stopped(&self) -> bool {
        !self.second
    }
}

#[cfg(test)]
mod tests {
    use super::super::error_driven::DEMO_ERROR;
    use super::super::gepa::REFLECT;
    use super::super::testing::*;
    use crate::evolve::candidate::INITIAL_OPERATOR;
    use crate::evolve::strategies::SearchConfig;

    #[test]
    fn reflection_comes_first_then_demonstrations_and_the_run_is_seeded() {
        let cfg = SearchConfig {
            strategy: "staged".into(),
            max_evals: Some(2000),
            ..SearchConfig::default()
        };
        let (outcome, ev, _) = run_with_generator(&cfg, 5);
        check_lineage(&ev);
        let ops: Vec<&str> = ev
            .received
            .iter()
            .map(|c| c.operator.as_str())
            .filter(|op| *op != INITIAL_OPERATOR)
            .collect();
        let last_reflection = ops.iter().rposition(|op| *op == REFLECT);
        let first_demo = ops
            .iter()
            .position(|op| op.starts_with("demo-") || *op == DEMO_ERROR);
        let (Some(last_reflection), Some(first_demo)) = (last_reflection, first_demo) else {
            panic!("both stages should make children: {ops:?}");
        };
        // No demonstration move before the switch, no reflection after it.
        assert!(last_reflection < first_demo, "{ops:?}");
        assert_reaches_the_toy_optimum(&outcome);
        assert_eq!(trace_with_generator(&cfg, 5), trace_with_generator(&cfg, 5));
    }
}
