//! The adaptive strategy: a GA whose children come from four move families (demonstration
//! moves, reflective rewrites, wording edits, crossovers), with the children of each generation
//! shared between the families by Thompson sampling on how often each family's children beat
//! their parent on this task, and a floor so that no family starves.
//!
//! Credit is the paired dev gain paired screening measures: a child's mean fitness minus its
//! screening parent's (the parent with the best full dev score) on the dev examples both were
//! scored on; a child *wins* when that gain is above 0. The posteriors are recomputed from the
//! search's scores at the start of every generation, so a resumed run (which replays the log)
//! makes the same draws, and the report recomputes the same table from `evaluations.jsonl`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::config::SearchConfig;
use super::error_driven::{error_driven_child, DEMO_ERROR};
use super::ga::survivors;
use super::gepa::{reflect, Reflection, MERGE, REFLECT};
use super::strategy::{filled_population, select, Setup, Strategy};
use crate::evolve::candidate::{Candidate, Scored};
use crate::evolve::error::EvolveError;
use crate::evolve::operators::OperatorSet;
use crate::evolve::operators::{operator_by_name, Family, Operator};
use crate::evolve::search::Search;

/// Least share of the children every family that can act gets over the run so far (a family
/// below it gets the next slot): enough to notice when a family starts to pay off, little
/// enough that one which never does costs under a tenth of the budget.
pub const FLOOR: f64 = 0.1;

/// Share of demonstration moves that are error-driven (the rest are demonstration operators):
/// about fewshot's mix, where a quarter of all children, a third of its demonstration moves,
/// are error-driven.
const ERROR_DRIVEN_SHARE: f64 = 1.0 / 3.0;

/// A family of moves the adaptive strategy shares its children between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MoveFamily {
    /// Demonstration moves: the `demo-*` operators and error-driven demonstrations.
    Demos,
    /// gepa's reflective mutation: the model revises the instruction from train failures.
    Reflect,
    /// One-parent edits of the wording: delete, swap, insert, paraphrase, persona, constraint.
    Edits,
    /// Two-parent moves: one-point, uniform and sentence crossovers.
    Crossover,
}

impl MoveFamily {
    /// Every family, in report order.
    pub(crate) const ALL: [MoveFamily; 4] = [
        MoveFamily::Demos,
        MoveFamily::Reflect,
        MoveFamily::Edits,
        MoveFamily::Crossover,
    ];

    /// Lower-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            MoveFamily::Demos => "demos",
            MoveFamily::Reflect => "reflect",
            MoveFamily::Edits => "edits",
            MoveFamily::Crossover => "crossover",
        }
    }

    /// The family of an operator: demonstration genes are `Demos`, the other genes and
    /// one-parent rewrites `Edits`, two-parent ones `Crossover`.
    pub fn of(op: &dyn Operator) -> MoveFamily {
        match op.family() {
            Family::Gene if op.name().starts_with("demo-") => MoveFamily::Demos,
            Family::Crossover => MoveFamily::Crossover,
            _ if op.arity() >= 2 => MoveFamily::Crossover,
            _ => MoveFamily::Edits,
        }
    }

    /// The family of a logged operator name (None for initial prompts and moves no family
    /// makes, such as opro's).
    pub(crate) fn of_operator(name: &str) -> Option<MoveFamily> {
        match name {
            DEMO_ERROR => Some(MoveFamily::Demos),
            REFLECT => Some(MoveFamily::Reflect),
            MERGE => Some(MoveFamily::Crossover),
            _ => operator_by_name(name).map(|op| MoveFamily::of(op.as_ref())),
        }
    }
}

/// What the bandit knows about one family: its children that were credited (scored against a
/// fully scored parent) and how many of them beat that parent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Credit {
    /// Children with a paired gain.
    pub children: usize,
    /// Those whose paired gain is above 0.
    pub wins: usize,
}

/// The adaptive strategy (`--strategy adaptive`): parents by `--selection`, `--population`
/// minus `--elite` children a generation shared between the families by [`slot_order`],
/// survivors by `--replacement` as in the GA. `--crossover-rate` does not apply: the bandit
/// decides how many children are crossovers.
#[derive(Default)]
pub(crate) struct Adaptive {
    /// The families that can act in this search.
    families: Vec<MoveFamily>,
    /// Slots given to each family so far.
    given: Vec<usize>,
}

impl Strategy for Adaptive {
    fn start(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        initial_prompts: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Scored>, EvolveError> {
        self.families = families_that_can_act(search, setup.cfg, setup.operators);
        if self.families.is_empty() {
            return Err(EvolveError::Operators(
                "the adaptive strategy has no move family that can act: it needs a train pool (demos, reflect), a generator (reflect) or enabled edit or crossover operators".into(),
            ));
        }
        self.given = vec![0; self.families.len()];
        filled_population(search, setup, initial_prompts, rng)
    }

    /// `--population` minus `--elite` children, each slot going to the first family in
    /// [`slot_order`] that makes a new child.
    fn ask(
        &mut self,
        search: &mut Search<'_, '_>,
        setup: &Setup<'_>,
        generation: usize,
        population: &[Scored],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Candidate>, EvolveError> {
        let cfg = setup.cfg;
        let credit = credit(search, &self.families);
        let moves = Moves {
            cfg,
            operators: setup.operators,
            population,
            generation,
        };
        let mut children = Vec::new();
        for _ in 0..cfg.population - cfg.elite {
            for k in slot_order(&credit, &self.given, FLOOR, rng) {
                self.given[k] += 1;
                if let Some(child) = moves.child(self.families[k], search, rng)? {
                    children.push(child);
                    break;
                }
                if search.stopped() {
                    break;
                }
            }
        }
        Ok(children)
    }

    /// Survivors as in the GA.
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

/// The families that can act in this search: demonstration moves need a train pool, reflection
/// also the model, edits and crossovers an enabled operator of theirs (model-driven ones only
/// with the model) and crossovers two parents. Those that cannot are dropped, and their share
/// goes to the others.
fn families_that_can_act(
    search: &Search<'_, '_>,
    cfg: &SearchConfig,
    operators: &OperatorSet,
) -> Vec<MoveFamily> {
    let has_pool = !search.ops.train.is_empty();
    let has_model = search.ops.generator.is_some();
    MoveFamily::ALL
        .into_iter()
        .filter(|&f| match f {
            MoveFamily::Demos => has_pool,
            MoveFamily::Reflect => has_pool && has_model,
            MoveFamily::Edits => operators.any(|op| usable(op, f, has_model)),
            MoveFamily::Crossover => {
                cfg.population >= 2 && operators.any(|op| usable(op, f, has_model))
            }
        })
        .collect()
}

/// Whether `op` belongs to `family` and can run (a model-driven one needs the model).
fn usable(op: &dyn Operator, family: MoveFamily, has_model: bool) -> bool {
    MoveFamily::of(op) == family && (has_model || !op.needs_model())
}

/// Each family's credit from every child scored so far (the initial population's included).
fn credit(search: &Search<'_, '_>, families: &[MoveFamily]) -> Vec<Credit> {
    let mut credit = vec![Credit::default(); families.len()];
    for s in search.archive() {
        let family = MoveFamily::of_operator(&s.candidate.operator);
        let Some(k) = families.iter().position(|f| Some(*f) == family) else {
            continue;
        };
        if let Some(gain) = search.paired_gain(&s.candidate) {
            credit[k].children += 1;
            credit[k].wins += usize::from(gain > 0.0);
        }
    }
    credit
}

/// The order in which one slot tries the families (indices into `credit` and `given`): those
/// that would stay below `floor` of all slots given so far, this one included, come first, most
/// behind first; then the rest by a Thompson draw from each family's Beta(1 + wins,
/// 1 + losses) posterior, highest first. A slot goes to the first family that makes a new
/// child.
pub(crate) fn slot_order(
    credit: &[Credit],
    given: &[usize],
    floor: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let floor = floor.min(1.0 / credit.len().max(1) as f64);
    let total: usize = given.iter().sum();
    let draws: Vec<f64> = credit
        .iter()
        .map(|c| beta_draw(1 + c.wins, 1 + c.children - c.wins, rng))
        .collect();
    let debt = |k: usize| floor * (total + 1) as f64 - given[k] as f64;
    let mut order: Vec<usize> = (0..credit.len()).collect();
    order.sort_by(|&a, &b| {
        let (da, db) = (debt(a), debt(b));
        let owed = |d: f64| if d > 0.0 { d } else { 0.0 };
        owed(db)
            .total_cmp(&owed(da))
            .then(draws[b].total_cmp(&draws[a]))
            .then(a.cmp(&b))
    });
    order
}

/// A draw from Beta(a, b) for whole a, b >= 1: the a-th smallest of a + b - 1 uniform draws
/// (exact, and seeded through the run's stream like every other draw).
fn beta_draw(a: usize, b: usize, rng: &mut ChaCha8Rng) -> f64 {
    let mut u: Vec<f64> = (0..a + b - 1).map(|_| rng.gen::<f64>()).collect();
    *u.select_nth_unstable_by(a - 1, f64::total_cmp).1
}

/// What one generation's moves draw on.
struct Moves<'a> {
    cfg: &'a SearchConfig,
    operators: &'a OperatorSet,
    population: &'a [Scored],
    generation: usize,
}

impl Moves<'_> {
    /// One new child from `family` (None when it could not make a new prompt).
    fn child(
        &self,
        family: MoveFamily,
        search: &mut Search<'_, '_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Candidate>, EvolveError> {
        let (pop, cfg, generation) = (self.population, self.cfg, self.generation);
        match family {
            MoveFamily::Demos if rng.gen_bool(ERROR_DRIVEN_SHARE) => {
                let parent = select(pop, cfg, rng).candidate.clone();
                if let Some(child) = error_driven_child(search, &parent, generation, rng)? {
                    return Ok(Some(child));
                }
            }
            MoveFamily::Reflect => {
                let parent = select(pop, cfg, rng).candidate.clone();
                return Ok(match reflect(search, &parent, generation, rng)? {
                    Reflection::NoProbe => None,
                    Reflection::Child(child) => child,
                });
            }
            _ => {}
        }
        let has_model = search.ops.generator.is_some();
        let operators = self.operators;
        search.breed(generation, rng, |rng| {
            let op = operators.choose_where(|op| usable(op, family, has_model), rng)?;
            let parents = (0..op.arity())
                .map(|_| &select(pop, cfg, rng).candidate)
                .collect();
            Some((op, parents))
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::super::testing::*;
    use super::*;
    use crate::evolve::strategies::SearchConfig;

    fn adaptive(generations: usize) -> SearchConfig {
        SearchConfig {
            strategy: "adaptive".into(),
            generations,
            ..SearchConfig::default()
        }
    }

    #[test]
    fn reaches_the_toy_optimum_with_every_family_and_the_same_seed_gives_the_same_run() {
        let cfg = adaptive(6);
        let (outcome, ev, asked) = run_with_generator(&cfg, 4);
        check_lineage(&ev);
        assert_reaches_the_toy_optimum(&outcome);
        // Every family made children, reflection from train failures (never dev).
        for f in MoveFamily::ALL {
            assert!(
                ev.received
                    .iter()
                    .any(|c| c.generation > 0 && MoveFamily::of_operator(&c.operator) == Some(f)),
                "{f:?}"
            );
        }
        let text: String = asked.iter().flatten().map(|m| m.content.clone()).collect();
        assert!(text.contains("Correct answer: "), "{text}");
        assert!(!text.contains("dev"));
        // Populations are sorted and the best never drops ((mu+lambda) with elitism).
        let mut previous = f64::NEG_INFINITY;
        for (g, scores) in &ev.generations {
            assert_eq!(scores.len(), cfg.population, "generation {g}");
            assert!(scores.windows(2).all(|w| w[0] >= w[1]));
            assert!(scores[0] >= previous);
            previous = scores[0];
        }
        assert_eq!(trace_with_generator(&cfg, 4), trace_with_generator(&cfg, 4));
        assert_ne!(trace_with_generator(&cfg, 1), trace_with_generator(&cfg, 2));
    }

    #[test]
    fn without_a_model_reflection_is_dropped_and_the_others_reach_the_optimum() {
        let (outcome, ev) = run(&adaptive(6), 3);
        check_lineage(&ev);
        assert_reaches_the_toy_optimum(&outcome);
        assert!(ev.received.iter().all(|c| c.operator != REFLECT));
        assert_eq!(trace(&adaptive(4), 9), trace(&adaptive(4), 9));
    }

    #[test]
    fn the_budget_is_kept() {
        for max in [60u64, 250, 777] {
            let cfg = SearchConfig {
                max_evals: Some(max),
                generations: 1000,
                ..adaptive(0)
            };
            let (outcome, ev, _) = run_with_generator(&cfg, 5);
            assert_eq!(outcome.evals_used, ev.charged());
            assert!(ev.charged() <= max, "{} > {max}", ev.charged());
        }
    }

    /// Runs the bandit alone for `slots` slots in generations of 6, where a child of family `k`
    /// wins with probability `p[k]`; returns the slots each family was given.
    fn simulate(p: &[f64], slots: usize, seed: u64) -> Vec<usize> {
        let rng = &mut ChaCha8Rng::seed_from_u64(seed);
        let mut credit = vec![Credit::default(); p.len()];
        let mut given = vec![0; p.len()];
        let mut done = 0;
        while done < slots {
            let mut batch = Vec::new();
            for _ in 0..6 {
                let k = slot_order(&credit, &given, FLOOR, rng)[0];
                given[k] += 1;
                batch.push(k);
            }
            for k in batch {
                credit[k].children += 1;
                credit[k].wins += usize::from(rng.gen_bool(p[k]));
            }
            done += 6;
        }
        given
    }

    #[test]
    fn the_bandit_moves_the_budget_to_the_family_that_wins_and_keeps_the_floor() {
        for winner in 0..4 {
            let mut p = [0.02; 4];
            p[winner] = 0.5;
            let given = simulate(&p, 240, winner as u64);
            let total: usize = given.iter().sum();
            assert_eq!(total, 240);
            // Most of the budget goes to the family whose children win ...
            assert!(given[winner] * 2 > total, "{given:?}");
            // ... and every family keeps its floor (to within the slot being given).
            for &g in &given {
                assert!(g as f64 >= FLOOR * total as f64 - 1.0, "{given:?}");
            }
        }
        // With no family better, none takes most of the budget.
        let even = simulate(&[0.3; 4], 240, 7);
        assert!(even.iter().all(|&g| g < 120), "{even:?}");
        assert_eq!(simulate(&[0.3; 4], 240, 7), even, "seeded");
    }

    #[test]
    fn beta_draws_have_the_posterior_mean() {
        let rng = &mut ChaCha8Rng::seed_from_u64(1);
        for (a, b) in [(1, 1), (3, 9), (20, 5)] {
            let n = 4000;
            let mean = (0..n).map(|_| beta_draw(a, b, rng)).sum::<f64>() / n as f64;
            let want = a as f64 / (a + b) as f64;
            assert!(
                (mean - want).abs() < 0.02,
                "Beta({a}, {b}): {mean} vs {want}"
            );
        }
    }

    #[test]
    fn every_logged_move_has_its_family() {
        use crate::evolve::operators::OPERATOR_NAMES;
        for name in OPERATOR_NAMES {
            assert!(MoveFamily::of_operator(name).is_some(), "{name}");
        }
        let family = |n| MoveFamily::of_operator(n).unwrap();
        assert_eq!(family("demo-error"), MoveFamily::Demos);
        assert_eq!(family("demo-set"), MoveFamily::Demos);
        assert_eq!(family("gepa-reflect"), MoveFamily::Reflect);
        assert_eq!(family("persona"), MoveFamily::Edits);
        assert_eq!(family("paraphrase"), MoveFamily::Edits);
        assert_eq!(family("uniform"), MoveFamily::Crossover);
        assert_eq!(MoveFamily::of_operator("initial"), None);
        assert_eq!(MoveFamily::of_operator("opro"), None);
    }
}
