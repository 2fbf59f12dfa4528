//! The genetic algorithm: evolves a population of prompt genomes against an evaluator.

use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::EvolveError;
use super::genome::Genome;
use super::operators::{default_operators, Operator, WeightedOperator};
use super::pool::PhrasePool;
use super::selection::{elite_indices, tournament};

/// How many tries one population slot gets before it is given up (or filled by a survivor).
pub const MAX_ATTEMPTS_PER_SLOT: usize = 50;

/// Operator name recorded on the user's own prompts.
pub const INITIAL_OPERATOR: &str = "initial";

/// A candidate prompt proposed by a strategy, with its lineage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Sequential id in proposal order, starting at 0 for the first initial prompt.
    pub id: u64,
    /// Ids of the parents (empty for initial prompts).
    pub parents: Vec<u64>,
    /// Name of the operator that made it, or "initial".
    pub operator: String,
    /// The prompt as phrases.
    pub genome: Genome,
    /// Generation in which it was proposed (0 = initial population).
    pub generation: usize,
}

impl Candidate {
    /// The prompt text sent to the model.
    pub fn prompt(&self) -> String {
        self.genome.render()
    }
}

/// A candidate with its fitness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The candidate.
    pub candidate: Candidate,
    /// Its fitness; higher is better.
    pub score: f64,
}

/// Scores candidates. Implemented outside this module (by the model-backed scorer and the run log); tests implement a cheap deterministic one.
pub trait Evaluator {
    /// Scores a batch of candidates, in order (one score each, higher is better). The implementation caches by rendered prompt, so duplicates cost nothing.
    fn evaluate(&mut self, candidates: &[Candidate]) -> Result<Vec<f64>, EvolveError>;
    /// Called once after each generation (generation 0 = the initial population) with the population sorted best first. Default: no-op.
    fn generation_done(
        &mut self,
        _generation: usize,
        _population: &[Scored],
    ) -> Result<(), EvolveError> {
        Ok(())
    }
}

/// Settings of the genetic algorithm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GaConfig {
    /// Population size (default 8, at least 2).
    pub population: usize,
    /// Generations after the initial one (default 5; 0 only scores the initial population).
    pub generations: usize,
    /// Tournament size for parent selection (default 2, at least 1).
    pub tournament_k: usize,
    /// Best members kept unchanged each generation (default 2, less than `population`).
    pub elite: usize,
    /// Probability that a child comes from crossover rather than an edit (default 0.5, in 0..=1).
    pub crossover_rate: f64,
}

impl Default for GaConfig {
    fn default() -> GaConfig {
        GaConfig {
            population: 8,
            generations: 5,
            tournament_k: 2,
            elite: 2,
            crossover_rate: 0.5,
        }
    }
}

impl GaConfig {
    /// Checks every setting; the error names the flag and the allowed range.
    pub fn validate(&self) -> Result<(), EvolveError> {
        let fail = |msg: String| Err(EvolveError::Config(msg));
        if self.population < 2 {
            return fail(format!(
                "--population must be at least 2 (got {})",
                self.population
            ));
        }
        if self.elite >= self.population {
            return fail(format!(
                "--elite must be less than --population (got elite {} with population {}); lower --elite or raise --population",
                self.elite, self.population
            ));
        }
        if self.tournament_k < 1 {
            return fail("--tournament-k must be at least 1 (got 0)".to_string());
        }
        if !(0.0..=1.0).contains(&self.crossover_rate) {
            return fail(format!(
                "--crossover-rate must be between 0 and 1 (got {})",
                self.crossover_rate
            ));
        }
        Ok(())
    }
}

/// The genetic algorithm: a configuration and the operators it may use.
pub struct GeneticAlgorithm {
    /// The settings.
    pub config: GaConfig,
    /// The variation operators with their weights.
    pub operators: Vec<WeightedOperator>,
}

/// What a run of the GA produced.
#[derive(Clone, Debug)]
pub struct GaOutcome {
    /// The best candidate ever scored (ties: earliest id).
    pub best: Scored,
    /// The user's initial prompts (after dropping duplicates), scored, in the order given.
    pub initial: Vec<Scored>,
    /// The last population, best first.
    pub final_population: Vec<Scored>,
    /// Number of candidates sent to the evaluator, initial prompts included.
    pub candidates_proposed: usize,
}

/// The operators with positive weight, split by arity.
struct OperatorSets<'a> {
    edits: Vec<&'a WeightedOperator>,
    crossovers: Vec<&'a WeightedOperator>,
}

impl<'a> OperatorSets<'a> {
    fn new(operators: &'a [WeightedOperator]) -> Result<OperatorSets<'a>, EvolveError> {
        let mut sets = OperatorSets {
            edits: Vec::new(),
            crossovers: Vec::new(),
        };
        for w in operators {
            let name = w.operator.name();
            if !w.weight.is_finite() || w.weight < 0.0 {
                return Err(EvolveError::Operators(format!(
                    "operator `{name}` has weight {}; weights must be finite numbers >= 0 (0 disables it)",
                    w.weight
                )));
            }
            let set = match w.operator.arity() {
                1 => &mut sets.edits,
                2 => &mut sets.crossovers,
                n => {
                    return Err(EvolveError::Operators(format!(
                        "operator `{name}` takes {n} parents; only 1 (edits) and 2 (crossover) are supported"
                    )));
                }
            };
            if w.weight > 0.0 {
                set.push(w);
            }
        }
        for set in [&sets.edits, &sets.crossovers] {
            if !set.iter().map(|w| w.weight).sum::<f64>().is_finite() {
                return Err(EvolveError::Operators(
                    "operator weights are too large to add up; use weights like 1 or 2".to_string(),
                ));
            }
        }
        if sets.edits.is_empty() && sets.crossovers.is_empty() {
            return Err(EvolveError::Operators(
                "no operator has a positive weight; enable at least one of delete, swap, insert, crossover"
                    .to_string(),
            ));
        }
        Ok(sets)
    }

    /// A crossover operator when `crossover` is asked for (or no edit exists), else an edit.
    fn choose(&self, crossover: bool, rng: &mut ChaCha8Rng) -> &'a dyn Operator {
        let set = if (crossover && !self.crossovers.is_empty()) || self.edits.is_empty() {
            &self.crossovers
        } else {
            &self.edits
        };
        weighted_choice(set, rng)
    }
}

/// Picks from a non-empty set with probability proportional to weight.
fn weighted_choice<'a>(set: &[&'a WeightedOperator], rng: &mut ChaCha8Rng) -> &'a dyn Operator {
    let total: f64 = set.iter().map(|w| w.weight).sum();
    let mut r = rng.gen_range(0.0..total);
    for w in set {
        if r < w.weight {
            return w.operator.as_ref();
        }
        r -= w.weight;
    }
    // Floating-point leftovers land on the last one.
    set[set.len() - 1].operator.as_ref()
}

/// Sorts best first; stable, so ties keep their current order.
fn sort_best_first(population: &mut [Scored]) {
    population.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// State shared across the generations of one run.
struct Run<'e> {
    evaluator: &'e mut dyn Evaluator,
    next_id: u64,
    seen: BTreeSet<String>,
    proposed: usize,
    best: Option<Scored>,
}

impl Run<'_> {
    /// Makes a candidate if its prompt is new to this run.
    fn propose(
        &mut self,
        genome: Genome,
        parents: Vec<u64>,
        operator: &str,
        generation: usize,
    ) -> Option<Candidate> {
        if genome.is_empty() || !self.seen.insert(genome.render()) {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        Some(Candidate {
            id,
            parents,
            operator: operator.to_string(),
            genome,
            generation,
        })
    }

    /// Scores a batch in one call, checking the evaluator's answer, and updates the best.
    fn score(&mut self, candidates: Vec<Candidate>) -> Result<Vec<Scored>, EvolveError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let scores = self.evaluator.evaluate(&candidates)?;
        if scores.len() != candidates.len() {
            return Err(EvolveError::ScoreCount {
                expected: candidates.len(),
                got: scores.len(),
            });
        }
        self.proposed += candidates.len();
        let mut scored = Vec::with_capacity(candidates.len());
        for (candidate, score) in candidates.into_iter().zip(scores) {
            if score.is_nan() {
                return Err(EvolveError::NanScore {
                    id: candidate.id,
                    prompt: candidate.prompt(),
                });
            }
            let s = Scored { candidate, score };
            if self.best.as_ref().is_none_or(|b| s.score > b.score) {
                self.best = Some(s.clone());
            }
            scored.push(s);
        }
        Ok(scored)
    }
}

impl GeneticAlgorithm {
    /// A GA with the given settings and [`default_operators`].
    pub fn new(config: GaConfig) -> GeneticAlgorithm {
        GeneticAlgorithm {
            config,
            operators: default_operators(),
        }
    }

    /// Runs the GA: scores the initial population, then `generations` generations of
    /// elitism plus tournament-selected children, one `evaluate` call per generation.
    /// The same seed and inputs give the same run.
    pub fn run(
        &self,
        initial_prompts: &[String],
        pool: &PhrasePool,
        evaluator: &mut dyn Evaluator,
        rng: &mut ChaCha8Rng,
    ) -> Result<GaOutcome, EvolveError> {
        let cfg = &self.config;
        cfg.validate()?;
        let ops = OperatorSets::new(&self.operators)?;
        if initial_prompts.is_empty() {
            return Err(EvolveError::NoInitialPrompts);
        }
        let mut run = Run {
            evaluator,
            next_id: 0,
            seen: BTreeSet::new(),
            proposed: 0,
            best: None,
        };

        // Generation 0: the user's prompts (duplicates dropped), then mutants of them.
        let mut gen0 = Vec::new();
        for (index, prompt) in initial_prompts.iter().enumerate() {
            let genome = Genome::parse(prompt);
            if genome.is_empty() {
                return Err(EvolveError::EmptyPrompt { index });
            }
            gen0.extend(run.propose(genome, Vec::new(), INITIAL_OPERATOR, 0));
        }
        let n_initial = gen0.len();
        let mut failures = 0;
        let max_failures = MAX_ATTEMPTS_PER_SLOT * cfg.population.saturating_sub(n_initial);
        while gen0.len() < cfg.population && failures < max_failures {
            let parent = &gen0[rng.gen_range(0..n_initial)];
            let op = ops.choose(false, rng);
            let mut parents = vec![parent];
            if op.arity() == 2 {
                parents.push(&gen0[rng.gen_range(0..n_initial)]);
            }
            let genomes: Vec<&Genome> = parents.iter().map(|c| &c.genome).collect();
            let child = op.apply(&genomes, pool, rng).and_then(|g| {
                let ids = parents.iter().map(|c| c.id).collect();
                run.propose(g, ids, op.name(), 0)
            });
            match child {
                Some(c) => gen0.push(c),
                None => failures += 1,
            }
        }
        let scored0 = run.score(gen0)?;
        let initial = scored0[..n_initial].to_vec();
        let mut population = scored0;
        sort_best_first(&mut population);
        population.truncate(cfg.population);
        run.evaluator.generation_done(0, &population)?;

        for generation in 1..=cfg.generations {
            let fitness: Vec<f64> = population.iter().map(|s| s.score).collect();
            let keep = elite_indices(&fitness, cfg.elite);
            let mut next: Vec<Scored> = keep.iter().map(|&i| population[i].clone()).collect();
            let mut survivors = (0..population.len()).filter(|i| !keep.contains(i));
            let mut children = Vec::new();
            for _slot in next.len()..cfg.population {
                let child = self.breed(&population, &ops, pool, &mut run, generation, rng);
                match child {
                    Some(c) => children.push(c),
                    // No new prompt found: carry over the next best member unscored.
                    None => next.extend(survivors.next().map(|i| population[i].clone())),
                }
            }
            next.extend(run.score(children)?);
            sort_best_first(&mut next);
            next.truncate(cfg.population);
            population = next;
            run.evaluator.generation_done(generation, &population)?;
        }

        let best = match run.best {
            Some(best) => best,
            // Unreachable: generation 0 always scores at least one candidate.
            None => return Err(EvolveError::NoInitialPrompts),
        };
        Ok(GaOutcome {
            best,
            initial,
            final_population: population,
            candidates_proposed: run.proposed,
        })
    }

    /// Tries up to [`MAX_ATTEMPTS_PER_SLOT`] times to make a child with a prompt new to this run.
    fn breed(
        &self,
        population: &[Scored],
        ops: &OperatorSets<'_>,
        pool: &PhrasePool,
        run: &mut Run<'_>,
        generation: usize,
        rng: &mut ChaCha8Rng,
    ) -> Option<Candidate> {
        let k = self.config.tournament_k;
        for _ in 0..MAX_ATTEMPTS_PER_SLOT {
            let crossover = rng.gen_bool(self.config.crossover_rate);
            let op = ops.choose(crossover, rng);
            let parents: Vec<&Candidate> = (0..op.arity())
                .map(|_| &tournament(population, |s| s.score, k, rng).candidate)
                .collect();
            let genomes: Vec<&Genome> = parents.iter().map(|c| &c.genome).collect();
            if let Some(genome) = op.apply(&genomes, pool, rng) {
                let ids = parents.iter().map(|c| c.id).collect();
                if let Some(child) = run.propose(genome, ids, op.name(), generation) {
                    return Some(child);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evolve::operators::operator_by_name;
    use rand::SeedableRng;

    /// Toy fitness: +1 per occurrence of "careful", minus a small length penalty.
    fn toy_score(prompt: &str) -> f64 {
        prompt.matches("careful").count() as f64 - prompt.len() as f64 / 1000.0
    }

    /// Records everything it is asked, and fails the test on a repeated prompt.
    #[derive(Default)]
    struct ToyEvaluator {
        received: Vec<Candidate>,
        seen: BTreeSet<String>,
        calls: usize,
        generations: Vec<(usize, Vec<f64>)>,
    }

    impl Evaluator for ToyEvaluator {
        fn evaluate(&mut self, candidates: &[Candidate]) -> Result<Vec<f64>, EvolveError> {
            self.calls += 1;
            for c in candidates {
                assert!(
                    self.seen.insert(c.prompt()),
                    "prompt evaluated twice: {:?}",
                    c.prompt()
                );
                self.received.push(c.clone());
            }
            Ok(candidates.iter().map(|c| toy_score(&c.prompt())).collect())
        }

        fn generation_done(
            &mut self,
            generation: usize,
            population: &[Scored],
        ) -> Result<(), EvolveError> {
            self.generations
                .push((generation, population.iter().map(|s| s.score).collect()));
            Ok(())
        }
    }

    fn prompts() -> Vec<String> {
        [
            "Please perform Sentiment Classification task. Given the sentence, assign a sentiment label from ['negative', 'positive']. Return label only without any other text.",
            "Your task is to classify the comment \"positive\" or \"negative\".",
            "Given a sentence, classify it as either positive or negative sentiment.",
            "Is the sentiment of this movie review positive or negative?",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn pool() -> PhrasePool {
        PhrasePool::new([
            "Be careful.",
            "Read the text carefully.",
            "Think step by step.",
            "You are a careful annotator.",
            "Answer in one word.",
        ])
        .with_prompts(&prompts())
    }

    fn run_with(config: GaConfig, seed: u64) -> (GaOutcome, ToyEvaluator) {
        let ga = GeneticAlgorithm::new(config);
        let mut evaluator = ToyEvaluator::default();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let outcome = ga
            .run(&prompts(), &pool(), &mut evaluator, &mut rng)
            .expect("run succeeds");
        (outcome, evaluator)
    }

    fn trace(outcome: &GaOutcome, evaluator: &ToyEvaluator) -> String {
        serde_json::to_string(&(
            &evaluator.received,
            &outcome.best,
            &outcome.final_population,
        ))
        .expect("serialisable")
    }

    #[test]
    fn same_seed_gives_identical_run() {
        let (a, ea) = run_with(GaConfig::default(), 42);
        let (b, eb) = run_with(GaConfig::default(), 42);
        assert_eq!(trace(&a, &ea), trace(&b, &eb));
        assert_eq!(a.best, b.best);
    }

    #[test]
    fn different_seed_gives_different_run() {
        let (a, ea) = run_with(GaConfig::default(), 1);
        let (b, eb) = run_with(GaConfig::default(), 2);
        assert_ne!(trace(&a, &ea), trace(&b, &eb));
    }

    #[test]
    fn run_shape_lineage_and_monotone_best() {
        let config = GaConfig::default();
        let (outcome, ev) = run_with(config.clone(), 7);

        // One evaluate call per generation; generation_done once per generation, in order.
        assert_eq!(ev.calls, config.generations + 1);
        let gens: Vec<usize> = ev.generations.iter().map(|(g, _)| *g).collect();
        assert_eq!(gens, (0..=config.generations).collect::<Vec<_>>());

        // Populations are full, sorted best first, and their best never decreases (elite >= 1).
        let mut previous_best = f64::NEG_INFINITY;
        for (g, scores) in &ev.generations {
            assert_eq!(scores.len(), config.population, "generation {g}");
            assert!(
                scores.windows(2).all(|w| w[0] >= w[1]),
                "generation {g} not sorted: {scores:?}"
            );
            assert!(scores[0] >= previous_best, "best dropped in generation {g}");
            previous_best = scores[0];
        }

        // Ids are sequential in proposal order; lineage points backwards; scores are the toy's.
        for (i, c) in ev.received.iter().enumerate() {
            assert_eq!(c.id, i as u64);
            assert!(c.parents.iter().all(|&p| p < c.id));
            if c.operator == INITIAL_OPERATOR {
                assert!(c.parents.is_empty() && c.generation == 0);
            } else {
                assert!(operator_by_name(&c.operator).is_some(), "{}", c.operator);
                assert!(!c.parents.is_empty());
            }
        }
        assert_eq!(outcome.candidates_proposed, ev.received.len());
        assert_eq!(outcome.initial.len(), 4);
        assert!(outcome
            .initial
            .iter()
            .all(|s| s.candidate.operator == INITIAL_OPERATOR));

        // The best is the highest score ever seen, at least the best initial, and here strictly better.
        let best_seen = ev
            .received
            .iter()
            .map(|c| toy_score(&c.prompt()))
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(outcome.best.score, best_seen);
        assert_eq!(
            outcome.best.score,
            toy_score(&outcome.best.candidate.prompt())
        );
        let best_initial = outcome
            .initial
            .iter()
            .map(|s| s.score)
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(
            outcome.best.score > best_initial,
            "{} vs {best_initial}",
            outcome.best.score
        );
        assert_eq!(outcome.final_population[0].score, outcome.best.score);
    }

    #[test]
    fn more_initial_prompts_than_population_keeps_the_best() {
        let config = GaConfig {
            population: 2,
            elite: 1,
            generations: 1,
            ..GaConfig::default()
        };
        let (outcome, ev) = run_with(config, 3);
        // All four initial prompts are scored in generation 0, in one call, and none is a mutant.
        assert!(ev.received[..4]
            .iter()
            .all(|c| c.operator == INITIAL_OPERATOR));
        assert_eq!(ev.received.iter().filter(|c| c.generation == 0).count(), 4);
        assert_eq!(ev.generations[0].1.len(), 2);
        let mut initial: Vec<f64> = outcome.initial.iter().map(|s| s.score).collect();
        initial.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(ev.generations[0].1, initial[..2]);
    }

    #[test]
    fn duplicate_initial_prompts_are_scored_once() {
        let ga = GeneticAlgorithm::new(GaConfig {
            generations: 1,
            ..GaConfig::default()
        });
        let mut ev = ToyEvaluator::default();
        let prompts = vec![
            "Be careful.  Classify it.".to_string(),
            "Be careful. Classify it.".to_string(),
        ];
        let outcome = ga
            .run(
                &prompts,
                &pool(),
                &mut ev,
                &mut ChaCha8Rng::seed_from_u64(5),
            )
            .expect("run succeeds");
        assert_eq!(outcome.initial.len(), 1);
        assert_eq!(
            outcome.initial[0].candidate.prompt(),
            "Be careful. Classify it."
        );
    }

    #[test]
    fn stuck_run_gives_up_and_terminates() {
        // One one-phrase prompt and an empty pool: no operator can make anything new.
        let ga = GeneticAlgorithm::new(GaConfig {
            population: 4,
            elite: 1,
            generations: 3,
            ..GaConfig::default()
        });
        let mut ev = ToyEvaluator::default();
        let outcome = ga
            .run(
                &["Classify it.".to_string()],
                &PhrasePool::default(),
                &mut ev,
                &mut ChaCha8Rng::seed_from_u64(1),
            )
            .expect("run succeeds");
        assert_eq!(ev.received.len(), 1);
        assert_eq!(ev.calls, 1, "empty batches are not sent");
        assert_eq!(outcome.final_population.len(), 1);
        assert_eq!(outcome.best.candidate.id, 0);
        assert_eq!(ev.generations.len(), 4);
    }

    #[test]
    fn config_errors_name_the_flag() {
        let cases = [
            (
                GaConfig {
                    population: 1,
                    elite: 0,
                    ..GaConfig::default()
                },
                "--population must be at least 2",
            ),
            (
                GaConfig {
                    elite: 8,
                    ..GaConfig::default()
                },
                "--elite must be less than --population",
            ),
            (
                GaConfig {
                    tournament_k: 0,
                    ..GaConfig::default()
                },
                "--tournament-k must be at least 1",
            ),
            (
                GaConfig {
                    crossover_rate: 1.5,
                    ..GaConfig::default()
                },
                "--crossover-rate must be between 0 and 1",
            ),
            (
                GaConfig {
                    crossover_rate: f64::NAN,
                    ..GaConfig::default()
                },
                "--crossover-rate",
            ),
        ];
        for (config, needle) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
        assert!(GaConfig::default().validate().is_ok());
        let parsed: GaConfig = toml::from_str("population = 4\nelite = 1").expect("partial config");
        assert_eq!(
            parsed,
            GaConfig {
                population: 4,
                elite: 1,
                ..GaConfig::default()
            }
        );
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut ev = ToyEvaluator::default();
        let ga = GeneticAlgorithm::new(GaConfig::default());
        assert!(matches!(
            ga.run(&[], &pool(), &mut ev, &mut rng),
            Err(EvolveError::NoInitialPrompts)
        ));
        let blank = vec!["Ok.".to_string(), "  ".to_string()];
        assert!(matches!(
            ga.run(&blank, &pool(), &mut ev, &mut rng),
            Err(EvolveError::EmptyPrompt { index: 1 })
        ));

        for weights in [
            [-1.0, 1.0],
            [0.0, 0.0],
            [f64::NAN, 1.0],
            [f64::MAX, f64::MAX],
        ] {
            let ga = GeneticAlgorithm {
                config: GaConfig::default(),
                operators: ["delete", "insert"]
                    .iter()
                    .zip(weights)
                    .filter_map(|(n, w)| operator_by_name(n).map(|op| WeightedOperator::new(op, w)))
                    .collect(),
            };
            let err = ga.run(&prompts(), &pool(), &mut ev, &mut rng).unwrap_err();
            assert!(
                matches!(err, EvolveError::Operators(_)),
                "{weights:?}: {err}"
            );
        }
    }

    struct BrokenEvaluator(usize);

    impl Evaluator for BrokenEvaluator {
        fn evaluate(&mut self, candidates: &[Candidate]) -> Result<Vec<f64>, EvolveError> {
            match self.0 {
                0 => Err(EvolveError::evaluation("model server not reachable")),
                1 => Ok(vec![1.0]),
                _ => Ok(vec![f64::NAN; candidates.len()]),
            }
        }
    }

    #[test]
    fn evaluator_failures_are_reported() {
        let ga = GeneticAlgorithm::new(GaConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let err = ga
            .run(&prompts(), &pool(), &mut BrokenEvaluator(0), &mut rng)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "evaluation failed: model server not reachable"
        );
        let err = ga
            .run(&prompts(), &pool(), &mut BrokenEvaluator(1), &mut rng)
            .unwrap_err();
        assert!(
            matches!(
                err,
                EvolveError::ScoreCount {
                    expected: 8,
                    got: 1
                }
            ),
            "{err}"
        );
        let err = ga
            .run(&prompts(), &pool(), &mut BrokenEvaluator(2), &mut rng)
            .unwrap_err();
        assert!(matches!(err, EvolveError::NanScore { id: 0, .. }), "{err}");
    }

    #[test]
    fn only_edits_and_only_crossover_both_work() {
        for (names, rate) in [
            (&["delete", "swap", "insert"][..], 1.0),
            (&["crossover"][..], 0.0),
        ] {
            let ga = GeneticAlgorithm {
                config: GaConfig {
                    crossover_rate: rate,
                    ..GaConfig::default()
                },
                operators: names
                    .iter()
                    .filter_map(|n| operator_by_name(n).map(|op| WeightedOperator::new(op, 1.0)))
                    .collect(),
            };
            let mut ev = ToyEvaluator::default();
            let outcome = ga
                .run(
                    &prompts(),
                    &pool(),
                    &mut ev,
                    &mut ChaCha8Rng::seed_from_u64(11),
                )
                .expect("run succeeds");
            assert!(ev
                .received
                .iter()
                .skip(4)
                .all(|c| names.contains(&c.operator.as_str())));
            assert!(outcome.candidates_proposed > 4, "{names:?}");
        }
    }
}
