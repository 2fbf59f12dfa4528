//! The staged strategies: one kind of move for the first part of the budget, the other after.
//!
//! `staged`: gepa's search for the instruction first, then fewshot's search for the
//! demonstrations around the instructions it found. `fewshot-gepa`: the order is measured on
//! the task. After fewshot's first population (generation 0: the initial prompts and their
//! demonstration variants), one generation of gepa's reflective rewrites of the initial
//! prompts (the probe) is scored; when its best rewrite beats the best of generation 0 by a
//! paired sign test on dev at [`PROBE_ALPHA`], reflection runs first and demonstrations after
//! it (as in `staged`), else demonstrations first and reflection after them (a reflection keeps
//! its parent's demonstrations).
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
//! are tried (sst2 in the benchmark's pilots: experiments/results/2026-12-03-default/pilots),
//! which is why the probe needs a significant lead, not just a higher score. Without a probe,
//! demonstrations first left trec (where gepa's first rewrites gained 3-18 points on dev and
//! demonstrations 0-1) 7 points behind gepa; with it, the probe's rewrites also join the
//! demonstration stage's population, which is where trec's gain came from (see [`PROBE_ALPHA`]).
//! The stage is decided from the budget spent when a generation starts and the order from
//! the probe's logged scores, so a resumed run, which replays its log, makes the same choices.
//! `fewshot-gepa` is the default; with a model that cannot chat (and no `--mutator-model`) it
//! neither probes nor reflects, so it is fewshot for the whole budget. The report's "Stage
//! order" section gives the probe's figures.

use rand_chacha::ChaCha8Rng;

use super::ga::GeneticAlgorithm;
use super::gepa::{best_so_far, draw, pareto_front_of, reflect, Gepa, Reflection};
use super::strategy::{Setup, Strategy};
use crate::evolve::candidate::{Candidate, Scored};
use crate::evolve::choice::{paired_diffs, Criterion, PairedEvidence};
use crate::evolve::error::EvolveError;
use crate::evolve::results::Results;
use crate::evolve::search::Search;

/// Share of the budget (`--max-evals`, else `--generations`) the instruction stage spends
/// before the demonstration stage starts: about the evaluations gepa needed to reach 95% of its
/// final dev score on trec and agnews in the benchmark of 2026-12-03 (900-1,900 of 3,000).
pub const FIRST_STAGE_SHARE: f64 = 0.5;

/// One-sided level of the order probe's sign test: `fewshot-gepa` runs its reflection stage
/// first only when the probe's best reflection beats the best of its first population (the
/// initial prompts and their demonstration variants) at this level on dev. Chosen from the
/// benchmark of 2026-12-03 (gepa's first generation against fewshot's first population, same
/// task and seed): at 0.05 the lead passes on none of sst2's and subj's 10 runs, where
/// demonstrations first won on test, and on trec's two largest leads (+18 and +15 points),
/// where reflection first did. In the benchmark's rerun with the probe it passed on 2 of 5 sst2
/// runs, 4 of 5 agnews runs and no trec run: trec's gain over the runs without a probe (+12.1
/// points on test) came from the probe's rewrites joining the demonstration stage's population.
pub const PROBE_ALPHA: f64 = 0.05;

/// Which stage runs first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// Reflection, then demonstrations (`staged`; `fewshot-gepa` when its probe says so).
    ReflectionFirst,
    /// Demonstrations, then reflection (`fewshot-gepa` unless its probe says otherwise).
    DemonstrationsFirst,
}

/// Where `fewshot-gepa`'s order probe stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// No probe: `staged`, or the second stage started before it could run.
    Off,
    /// To run in the first generation that can reflect.
    Pending,
    /// Its reflections are being scored; `evals_before` is the budget used before them.
    Running { evals_before: u64 },
    /// It ran (one generation) and spent `evals` example evaluations.
    Ran { evals: u64 },
}

impl Probe {
    /// What the probe spent (example evaluations, generations): reflection's share, not the
    /// demonstration stage's, so that the demonstrations first get the same budget as without
    /// a probe.
    fn spent(self) -> (u64, usize) {
        match self {
            Probe::Ran { evals } => (evals, 1),
            _ => (0, 0),
        }
    }
}

/// A staged strategy (`--strategy staged` or `fewshot-gepa`).
pub(crate) struct Staged {
    /// The instruction stage.
    instructions: Gepa,
    /// The demonstration stage (fewshot's GA).
    demonstrations: GeneticAlgorithm,
    /// The stage order (for `fewshot-gepa`, decided by its probe).
    order: Order,
    /// The order probe (`fewshot-gepa`).
    probe: Probe,
    /// Whether the second stage has started.
    second: bool,
}

impl Staged {
    /// `staged`: reflection first, then demonstrations.
    pub(crate) fn reflection_first() -> Self {
        Self {
            instructions: Gepa,
            demonstrations: GeneticAlgorithm::FEWSHOT,
            order: Order::ReflectionFirst,
            probe: Probe::Off,
            second: false,
        }
    }

    /// `fewshot-gepa`: demonstrations first, then reflection, unless one generation of
    /// reflections from the initial prompts (the probe, after the demonstration stage's first
    /// population) beats everything before it by a paired sign test at [`PROBE_ALPHA`]: then
    /// reflection first, then demonstrations.
    pub(crate) fn demonstrations_first() -> Self {
        Self {
            order: Order::DemonstrationsFirst,
            probe: Probe::Pending,
            ..Self::reflection_first()
        }
    }

    /// Whether the current stage is fewshot's (the demonstrations').
    fn in_demonstration_stage(&self) -> bool {
        !matches!(self.probe, Probe::Running { .. })
            && self.second != (self.order == Order::DemonstrationsFirst)
    }
}

/// Whether the first stage has spent its share: of `--max-evals` when set, else of the
/// generations; `excluded` (evaluations, generations) is spent by a probe that does not count
/// against it.
fn first_stage_done(
    search: &Search<'_, '_>,
    setup: &Setup<'_>,
    generation: usize,
    excluded: (u64, usize),
) -> bool {
    match setup.cfg.max_evals {
        Some(budget) => {
            search.evals_used().saturating_sub(excluded.0) as f64
                >= FIRST_STAGE_SHARE * budget as f64
        }
        None => {
            generation.saturating_sub(excluded.1) as f64
                > FIRST_STAGE_SHARE * setup.cfg.generations as f64
        }
    }
}

/// The probe's children: `--population` reflections of parents drawn from the Pareto front of
/// the initial prompts alone, so that it measures rewrites of the user's instructions, as
/// gepa's first generation does, not of the demonstration variants.
fn probe_reflections(
    search: &mut Search<'_, '_>,
    setup: &Setup<'_>,
    generation: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Candidate>, EvolveError> {
    let initial: Vec<&Scored> = search.initial().iter().filter(|s| s.full).collect();
    let front = pareto_front_of(search, initial);
    let mut children = Vec::new();
    if front.is_empty() {
        return Ok(children);
    }
    for _ in 0..setup.cfg.population {
        let parent = draw(&front, rng).candidate.clone();
        match reflect(search, &parent, generation, rng)? {
            Reflection::NoProbe => break,
            Reflection::Child(child) => children.extend(child),
        }
    }
    Ok(children)
}

/// The order probe's verdict on the dev results of its best reflection (`challenger`) and of
/// the best of the population before it (`incumbent`): the paired evidence, and whether
/// reflection runs first (a positive lead at one-sided p < [`PROBE_ALPHA`]). The strategy
/// decides with it and the report (`run::analysis::stage_order`) explains with it.
pub(crate) fn probe_verdict(challenger: &Results, incumbent: &Results) -> (PairedEvidence, bool) {
    let diffs = paired_diffs(challenger, incumbent, Criterion::Fitness);
    let evidence = PairedEvidence::from_diffs(&diffs);
    let reflection_first = evidence.mean_diff > 0.0 && evidence.p_value < PROBE_ALPHA;
    (evidence, reflection_first)
}

/// The best of `(id, dev fitness)` pairs (the lowest id among equals).
pub(crate) fn best_of(xs: impl IntoIterator<Item = (u64, f64)>) -> Option<(u64, f64)> {
    xs.into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
}

/// Whether the probe's best fully scored reflection (among `children`) beats the best of
/// `before` (the population it was made after) by [`probe_verdict`].
fn probe_leads(search: &Search<'_, '_>, before: &[Scored], children: &[Scored]) -> bool {
    let best = |xs: &[Scored]| {
        best_of(
            xs.iter()
                .filter(|s| s.full)
                .map(|s| (s.candidate.id, s.score)),
        )
        .map(|(id, _)| id)
    };
    let (Some(challenger), Some(incumbent)) = (best(children), best(before)) else {
        return false;
    };
    match (
        search.dev_results(challenger),
        search.dev_results(incumbent),
    ) {
        (Some(c), Some(i)) => probe_verdict(c, i).1,
        _ => false,
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

    /// The probe's reflections when it is pending and there is a model to write them; else
    /// the first stage's children until its share is spent, the second's after (from the
    /// population the first reports).
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        // Without a model to write reflections (one that cannot chat), `fewshot-gepa` neither
        // probes nor reflects: its demonstration stage runs the whole budget.
        let can_reflect = search.ops.generator.is_some();
        if self.probe == Probe::Pending
            && can_reflect
            && !first_stage_done(search, setup, generation, (0, 0))
        {
            self.probe = Probe::Running {
                evals_before: search.evals_used(),
            };
            return probe_reflections(search, setup, generation, rng);
        }
        let second_reflects = self.order == Order::DemonstrationsFirst;
        let excluded = if second_reflects {
            self.probe.spent()
        } else {
            (0, 0)
        };
        if !self.second
            && first_stage_done(search, setup, generation, excluded)
            && (can_reflect || !second_reflects)
        {
            self.second = true;
            if self.probe == Probe::Pending {
                self.probe = Probe::Off;
            }
        }
        if self.in_demonstration_stage() {
            self.demonstrations
                .ask(search, setup, generation, population, rng)
        } else {
            self.instructions
                .ask(search, setup, generation, population, rng)
        }
    }

    /// After the probe: the order it decides, and the population of the stage that runs
    /// first. Else gepa's population (the best so far) in its stage, the GA's survivors in
    /// fewshot's.
    fn tell(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        population: Vec<Scored>,
        children: Vec<Scored>,
    ) -> Vec<Scored> {
        if let Probe::Running { evals_before } = self.probe {
            self.probe = Probe::Ran {
                evals: search.evals_used() - evals_before,
            };
            if probe_leads(search, &population, &children) {
                self.order = Order::ReflectionFirst;
                return best_so_far(search, setup.cfg.population);
            }
            // The reflections compete for the demonstration stage's population.
            return self
                .demonstrations
                .tell(search, setup, population, children);
        }
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
    use crate::evolve::Pool;

    /// Runs `strategy` on the toy task (with replies that mention "careful", which the toy
    /// rewards, unless `careless`) and checks that, from generation `from` on, every child of
    /// the `first` family comes before every child of the `second` (no second-stage move before
    /// the switch, no first-stage move after it), that both stages made children, and lineage,
    /// the toy optimum and seeding. Returns the families of all children, in order.
    fn assert_stages_in_order(
        strategy: &str,
        careless: bool,
        from: usize,
        first: MoveFamily,
        second: MoveFamily,
    ) -> (Vec<(usize, Option<MoveFamily>)>, ToyEvaluator) {
        let cfg = SearchConfig {
            strategy: strategy.into(),
            max_evals: Some(2000),
            ..SearchConfig::default()
        };
        let generator = || Counting {
            careless,
            ..Counting::default()
        };
        let (outcome, ev, _) = run_with(&cfg, 5, generator());
        check_lineage(&ev);
        let all: Vec<(usize, Option<MoveFamily>)> = ev
            .received
            .iter()
            .filter(|c| c.operator != INITIAL_OPERATOR)
            .map(|c| (c.generation, MoveFamily::of_operator(&c.operator)))
            .collect();
        let families: Vec<Option<MoveFamily>> = all
            .iter()
            .filter(|(g, _)| *g >= from)
            .map(|(_, f)| *f)
            .collect();
        let last_first = families.iter().rposition(|f| *f == Some(first));
        let first_second = families.iter().position(|f| *f == Some(second));
        let (Some(last_first), Some(first_second)) = (last_first, first_second) else {
            panic!("both stages of {strategy} should make children: {families:?}");
        };
        assert!(last_first < first_second, "{strategy}: {families:?}");
        if !careless {
            assert_reaches_the_toy_optimum(&outcome);
        }
        assert_eq!(
            trace_with(&cfg, 5, generator()),
            trace_with(&cfg, 5, generator())
        );
        (all, ev)
    }

    /// The families of generation `g`'s children.
    fn of_generation(all: &[(usize, Option<MoveFamily>)], g: usize) -> Vec<Option<MoveFamily>> {
        all.iter()
            .filter(|(x, _)| *x == g)
            .map(|(_, f)| *f)
            .collect()
    }

    #[test]
    fn staged_reflects_first_then_adds_demonstrations_and_is_seeded() {
        assert_stages_in_order("staged", false, 0, MoveFamily::Reflect, MoveFamily::Demos);
    }

    #[test]
    fn fewshot_gepa_reflects_first_when_its_probe_wins_and_is_seeded() {
        // Generation 0: the demonstration stage's first population; 1: the probe, whose
        // "careful" rewrites beat it; then reflection until half the budget, then demonstrations.
        let (all, _) = assert_stages_in_order(
            "fewshot-gepa",
            false,
            1,
            MoveFamily::Reflect,
            MoveFamily::Demos,
        );
        assert!(of_generation(&all, 0).contains(&Some(MoveFamily::Demos)));
        let probe = of_generation(&all, 1);
        assert!(!probe.is_empty());
        assert!(
            probe.iter().all(|f| *f == Some(MoveFamily::Reflect)),
            "{probe:?}"
        );
    }

    #[test]
    fn fewshot_gepa_adds_demonstrations_first_when_its_probe_does_not_win() {
        // The probe's "sloppy" rewrites lose: demonstrations from generation 2, reflection
        // after half the budget.
        let (all, ev) = assert_stages_in_order(
            "fewshot-gepa",
            true,
            2,
            MoveFamily::Demos,
            MoveFamily::Reflect,
        );
        let probe = of_generation(&all, 1);
        assert!(!probe.is_empty());
        assert!(
            probe.iter().all(|f| *f == Some(MoveFamily::Reflect)),
            "{probe:?}"
        );
        assert!(of_generation(&all, 2)
            .iter()
            .all(|f| *f != Some(MoveFamily::Reflect)));
        // The probe is reflection's budget: the demonstrations get their half of the 2,000
        // evaluations without it. Charged (dev and train) before the first reflection after
        // the probe, less what was charged from the end of generation 0 to the probe's last
        // evaluation.
        let generation: std::collections::HashMap<u64, (usize, Option<MoveFamily>)> = ev
            .received
            .iter()
            .map(|c| (c.id, (c.generation, MoveFamily::of_operator(&c.operator))))
            .collect();
        let calls: Vec<(usize, Option<MoveFamily>, usize, bool)> = (0..ev.ids.len())
            .map(|k| {
                let (g, f) = generation[&ev.ids[k]];
                (g, f, ev.sizes[k], ev.pools[k] != Pool::Validation)
            })
            .collect();
        let first_g1 = calls.iter().position(|c| c.0 == 1).expect("the probe");
        // Generation 0 ends with its last dev scoring; the probe's train probes follow.
        let g0_end = calls[..first_g1]
            .iter()
            .zip(&ev.pools)
            .rposition(|(c, pool)| c.0 == 0 && *pool == Pool::Dev)
            .expect("generation 0")
            + 1;
        let probe_end = calls.iter().rposition(|c| c.0 == 1).expect("the probe") + 1;
        let switch = calls
            .iter()
            .position(|c| c.0 >= 2 && c.1 == Some(MoveFamily::Reflect))
            .expect("reflection after the probe");
        let charged = |from: usize, to: usize| -> usize {
            calls[from..to].iter().filter(|c| c.3).map(|c| c.2).sum()
        };
        let demonstrations = charged(0, switch) - charged(g0_end, probe_end);
        assert!(demonstrations >= 1000, "{demonstrations}");
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
