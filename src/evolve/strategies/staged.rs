//! The staged strategies: one kind of move for the first part of the budget, the other after.
//!
//! `staged`: gepa's search for the instruction first, then fewshot's search for the
//! demonstrations around the instructions it found. `fewshot-gepa`: the reverse, fewshot's
//! demonstration search first, then gepa's reflective rewrites of the instruction (a
//! reflection keeps its parent's demonstrations).
//!
//! Issue 24's benchmark found the two kinds of moves strong on different tasks: reflective
//! rewrites of the instruction (gepa) where the instruction must say what the labels mean (trec,
//! agnews), demonstrations (fewshot) where it need not (sst2, subj), and demonstrations found
//! by fewshot generalising to test better than their dev gain says, so that a bandit credited
//! on dev starves them (experiments/results/2026-12-03-default). These strategies give each
//! kind its own stage instead: until [`FIRST_STAGE_SHARE`] of the budget is spent, children are
//! the first stage's; from then on the second's. gepa's stage makes reflections from
//! Pareto-front parents (and merges when there are two-parent operators) and reports the best
//! `--population` candidates so far as its population; fewshot's GA adds, swaps and picks
//! demonstrations (a quarter error-driven) and edits the wording. Reflection first lets
//! rewrites that win on 100 dev examples by chance fill the population before demonstrations
//! are tried (sst2 in the benchmark's pilots: experiments/results/2026-12-03-default/pilots);
//! demonstrations first does not.
//! The stage is decided from the budget spent when a generation starts, so a resumed run,
//! which replays its log, switches at the same generation. `fewshot-gepa` is the default; with
//! a model that cannot chat (and no `--mutator-model`) it stays in its demonstration stage, so
//! it is fewshot for the whole budget.

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

/// A staged strategy (`--strategy staged` or `fewshot-gepa`).
pub(crate) struct Staged {
    /// The instruction stage.
    instructions: Gepa,
    /// The demonstration stage (fewshot's GA).
    demonstrations: GeneticAlgorithm,
    /// Whether the demonstration stage comes first (`fewshot-gepa`).
    demonstrations_first: bool,
    /// Whether the second stage has started.
    second: bool,
}

impl Staged {
    /// `staged`: reflection first, then demonstrations.
    pub(crate) fn reflection_first() -> Self {
        Self {
            instructions: Gepa,
            demonstrations: GeneticAlgorithm::FEWSHOT,
            demonstrations_first: false,
            second: false,
        }
    }

    /// `fewshot-gepa`: demonstrations first, then reflection.
    pub(crate) fn demonstrations_first() -> Self {
        Self {
            demonstrations_first: true,
            ..Self::reflection_first()
        }
    }

    /// Whether the current stage is fewshot's (the demonstrations').
    fn in_demonstration_stage(&self) -> bool {
        self.second != self.demonstrations_first
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
    /// The first stage's start: gepa's (the initial prompts, scored) or fewshot's (its initial
    /// population).
    fn start(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        self.second = false;
        if self.in_demonstration_stage() {
            self.demonstrations
                .start(search, setup, initial_prompts, rng)
        } else {
            self.instructions.start(search, setup, initial_prompts, rng)
        }
    }

    /// The first stage's children until its share is spent, the second's after (from the
    /// population the first reports).
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        // The second stage reflects in `fewshot-gepa`; without a model to write the
        // reflections (one that cannot chat), its demonstration stage runs the whole budget.
        let second_reflects = self.demonstrations_first;
        let can_reflect = search.ops.generator.is_some();
        if !self.second
            && first_stage_done(search, setup, generation)
            && (can_reflect || !second_reflects)
        {
            self.second = true;
        }
        if self.in_demonstration_stage() {
            self.demonstrations
                .ask(search, setup, generation, population, rng)
        } else {
            self.instructions
                .ask(search, setup, generation, population, rng)
        }
    }

    /// gepa's population (the best so far) in its stage, the GA's survivors in fewshot's.
    fn tell(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        population: Vec<Scored>,
        children: Vec<Scored>,
    ) -> Vec<Scored> {
        if self.in_demonstration_stage() {
            self.demonstrations
                .tell(search, setup, population, children)
        } else {
            best_so_far(search, setup.cfg.population)
        }
    }

    fn drops_children_when_stopped(&self) -> bool {
        !self.in_demonstration_stage()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::evolve::candidate::INITIAL_OPERATOR;
    use crate::evolve::strategies::{MoveFamily, SearchConfig};

    /// Runs `strategy` on the toy task and checks that every child of the `first` family
    /// comes before every child of the `second` (no second-stage move before the switch, no
    /// first-stage move after it), that both stages made children, and lineage, the toy
    /// optimum and seeding.
    fn assert_stages_in_order(strategy: &str, first: MoveFamily, second: MoveFamily) {
        let cfg = SearchConfig {
            strategy: strategy.into(),
            max_evals: Some(2000),
            ..SearchConfig::default()
        };
        let (outcome, ev, _) = run_with_generator(&cfg, 5);
        check_lineage(&ev);
        let families: Vec<Option<MoveFamily>> = ev
            .received
            .iter()
            .filter(|c| c.operator != INITIAL_OPERATOR)
            .map(|c| MoveFamily::of_operator(&c.operator))
            .collect();
        let last_first = families.iter().rposition(|f| *f == Some(first));
        let first_second = families.iter().position(|f| *f == Some(second));
        let (Some(last_first), Some(first_second)) = (last_first, first_second) else {
            panic!("both stages of {strategy} should make children: {families:?}");
        };
        assert!(last_first < first_second, "{strategy}: {families:?}");
        assert_reaches_the_toy_optimum(&outcome);
        assert_eq!(trace_with_generator(&cfg, 5), trace_with_generator(&cfg, 5));
    }

    #[test]
    fn staged_reflects_first_then_adds_demonstrations_and_is_seeded() {
        assert_stages_in_order("staged", MoveFamily::Reflect, MoveFamily::Demos);
    }

    #[test]
    fn fewshot_gepa_adds_demonstrations_first_then_reflects_and_is_seeded() {
        assert_stages_in_order("fewshot-gepa", MoveFamily::Demos, MoveFamily::Reflect);
    }

    #[test]
    fn fewshot_gepa_without_a_model_to_write_is_fewshot_for_the_whole_budget() {
        let config = |strategy: &str| SearchConfig {
            strategy: strategy.into(),
            max_evals: Some(1000),
            ..SearchConfig::default()
        };
        let (outcome, ev) = run(&config("fewshot-gepa"), 5);
        assert!(ev
            .received
            .iter()
            .any(|c| MoveFamily::of_operator(&c.operator) == Some(MoveFamily::Demos)));
        // Well past the half of the budget where it would start reflecting.
        assert!(ev.charged() > 800, "charged {}", ev.charged());
        assert_reaches_the_toy_optimum(&outcome);
        assert_eq!(
            trace(&config("fewshot-gepa"), 5),
            trace(&config("fewshot"), 5)
        );
    }
}
