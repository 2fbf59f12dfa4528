//! A cheap deterministic evaluator and helpers for strategy tests.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::evolve::candidate::{Candidate, Scored, INITIAL_OPERATOR};
use crate::evolve::driver::run_search;
use crate::evolve::error::EvolveError;
use crate::evolve::operators::{operator_by_name, OperatorContext};
use crate::evolve::outcome::SearchOutcome;
use crate::evolve::pool::PhrasePool;
use crate::evolve::results::{ExampleResult, Pool};
use crate::evolve::search::Evaluator;
use crate::evolve::strategies::{SearchConfig, STRATEGY_MOVES};
use crate::evolve::train::{TrainExample, TrainPool};

/// Toy fitness: +1 per occurrence of "careful", minus a small length penalty; on a partial
/// dev set the score is scaled by n/dev (so partial scores are lower, as racing expects noise).
pub fn toy_score(prompt: &str) -> f64 {
    prompt.matches("careful").count() as f64 - prompt.len() as f64 / 1000.0
}

/// Records everything it is asked, and fails the test on a repeated (prompt, pool, example).
#[derive(Default)]
pub struct ToyEvaluator {
    /// Candidates in the order first asked (each once).
    pub received: Vec<Candidate>,
    /// Candidate id asked per call.
    pub ids: Vec<u64>,
    /// Examples asked per call.
    pub sizes: Vec<usize>,
    /// Pool asked per call.
    pub pools: Vec<Pool>,
    pub seen: BTreeSet<(String, Pool, usize)>,
    /// Score validation examples with the toy score negated (validation disagrees with dev).
    pub flip_validation: bool,
    pub generations: Vec<(usize, Vec<f64>)>,
    pub populations: Vec<Vec<u64>>,
    /// Sleep this long per evaluation (to test time budgets without racing the operators).
    pub delay: std::time::Duration,
    /// How far a dev or train example's fitness strays from the toy score (see
    /// [`toy_fitness`]); 0: every example scores the toy score.
    pub spread: f64,
}

/// A dev or train example's toy fitness: the toy score, moved by up to `spread` by a pattern
/// fixed by the prompt and the example, opposite on the two halves of dev (example `e` and
/// `e + TOY_DEV / 2`), so the full-dev mean is the toy score while a quarter or half of dev
/// (racing's rungs) is off by up to `spread`.
pub fn toy_fitness(prompt: &str, example: usize, spread: f64) -> f64 {
    if spread == 0.0 {
        return toy_score(prompt);
    }
    let half = TOY_DEV / 2;
    // FNV-1a over the prompt and the example's place in its half.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prompt.bytes().chain((example % half).to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let u = (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
    let sign = if (example % TOY_DEV) < half {
        1.0
    } else {
        -1.0
    };
    toy_score(prompt) + spread * sign * u
}

/// Dev size of the toy evaluator.
pub const TOY_DEV: usize = 40;

/// Validation size of the toy evaluator.
pub const TOY_VALIDATION: usize = 20;

impl ToyEvaluator {
    /// Dev examples scored for candidate `id` in all.
    pub fn dev_examples(&self, id: u64) -> usize {
        (0..self.ids.len())
            .filter(|&k| self.ids[k] == id && self.pools[k] == Pool::Dev)
            .map(|k| self.sizes[k])
            .sum()
    }

    /// Examples charged to the budget (dev and train).
    pub fn charged(&self) -> u64 {
        self.sizes
            .iter()
            .zip(&self.pools)
            .filter(|(_, p)| **p != Pool::Validation)
            .map(|(n, _)| *n as u64)
            .sum()
    }
}

impl Evaluator for ToyEvaluator {
    fn pool_size(&self, pool: Pool) -> usize {
        match pool {
            Pool::Dev => TOY_DEV,
            Pool::Validation => TOY_VALIDATION,
            Pool::Train => train().len(),
        }
    }

    fn evaluate(
        &mut self,
        c: &Candidate,
        pool: Pool,
        examples: &[usize],
    ) -> Result<Vec<ExampleResult>, EvolveError> {
        std::thread::sleep(self.delay);
        if !self.ids.contains(&c.id) {
            self.received.push(c.clone());
        }
        self.ids.push(c.id);
        self.sizes.push(examples.len());
        self.pools.push(pool);
        let prompt = c.prompt();
        let fitness = |e: usize| match pool {
            Pool::Validation if self.flip_validation => -toy_score(&prompt),
            Pool::Validation => toy_score(&prompt),
            _ => toy_fitness(&prompt, e, self.spread),
        };
        Ok(examples
            .iter()
            .map(|&e| {
                assert!(
                    self.seen.insert((c.prompt(), pool, e)),
                    "evaluated twice: {:?} on {pool} example {e}",
                    c.prompt()
                );
                // Dev and train: right on two examples in three, shifted by the prompt's length.
                // Validation: right when the prompt says "careful" (wrong when flipped).
                let careful = toy_score(&c.prompt()) > 0.5;
                let right = match pool {
                    Pool::Validation => careful != self.flip_validation,
                    _ => !(e + c.prompt().len()).is_multiple_of(3),
                };
                ExampleResult {
                    example: e,
                    fitness: fitness(e),
                    metric: f64::from(u8::from(right)),
                    predicted: if right { "positive" } else { "negative" }.into(),
                }
            })
            .collect())
    }

    fn generation_done(
        &mut self,
        generation: usize,
        population: &[Scored],
    ) -> Result<(), EvolveError> {
        self.generations
            .push((generation, population.iter().map(|s| s.score).collect()));
        self.populations
            .push(population.iter().map(|s| s.candidate.id).collect());
        Ok(())
    }
}

pub fn prompts() -> Vec<String> {
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

pub fn pool() -> PhrasePool {
    let mut pool = PhrasePool::new([
        "Be careful.",
        "Read the text carefully.",
        "Think step by step.",
        "You are a careful annotator.",
        "Answer in one word.",
    ])
    .with_prompts(&prompts());
    pool.personas = vec!["You are a careful critic.".into()];
    pool.constraints = vec!["Answer in one word.".into()];
    pool
}

/// The toy's train pool: four reviews, two per label.
pub fn train() -> &'static TrainPool {
    static TRAIN: std::sync::OnceLock<TrainPool> = std::sync::OnceLock::new();
    TRAIN.get_or_init(|| {
        let pairs = [
            ("careful film", "positive"),
            ("dull plot", "negative"),
            ("a careful, moving story", "positive"),
            ("flat and long", "negative"),
        ];
        let examples = pairs
            .iter()
            .map(|(i, l)| TrainExample {
                input: i.to_string(),
                target: l.to_string(),
                demonstration: format!("Review: {i}\nSentiment: {l}"),
            })
            .collect();
        TrainPool::new(examples, pairs.len())
    })
}

pub fn context<'g>() -> OperatorContext<'g> {
    OperatorContext {
        pool: pool(),
        train: train(),
        ..OperatorContext::default()
    }
}

/// Runs a search whose model-driven moves ask a [`Counting`] generator; also returns what it
/// was asked.
pub fn run_with_generator(
    cfg: &SearchConfig,
    seed: u64,
) -> (
    SearchOutcome,
    ToyEvaluator,
    Vec<Vec<crate::chat::ChatMessage>>,
) {
    run_with(cfg, seed, Counting::default())
}

/// [`run_with_generator`] with a given generator.
pub fn run_with(
    cfg: &SearchConfig,
    seed: u64,
    mut generator: Counting,
) -> (
    SearchOutcome,
    ToyEvaluator,
    Vec<Vec<crate::chat::ChatMessage>>,
) {
    let mut ev = ToyEvaluator::default();
    let ctx = OperatorContext {
        generator: Some(&mut generator),
        ..context()
    };
    let outcome = run_search(
        cfg,
        &prompts(),
        ctx,
        &mut ev,
        &mut ChaCha8Rng::seed_from_u64(seed),
    )
    .expect("search succeeds");
    (outcome, ev, generator.asked)
}

/// A run with a generator as one comparable string.
pub fn trace_with_generator(cfg: &SearchConfig, seed: u64) -> String {
    trace_with(cfg, seed, Counting::default())
}

/// [`trace_with_generator`] with a given generator.
pub fn trace_with(cfg: &SearchConfig, seed: u64, generator: Counting) -> String {
    let (outcome, ev, _) = run_with(cfg, seed, generator);
    serde_json::to_string(&(&ev.received, &outcome.best, &outcome.final_population)).expect("json")
}

pub fn run(cfg: &SearchConfig, seed: u64) -> (SearchOutcome, ToyEvaluator) {
    let mut ev = ToyEvaluator::default();
    let outcome = run_search(
        cfg,
        &prompts(),
        context(),
        &mut ev,
        &mut ChaCha8Rng::seed_from_u64(seed),
    )
    .expect("search succeeds");
    (outcome, ev)
}

pub fn trace(cfg: &SearchConfig, seed: u64) -> String {
    let (outcome, ev) = run(cfg, seed);
    serde_json::to_string(&(&ev.received, &outcome.best, &outcome.final_population)).expect("json")
}

/// Asserts what only a working strategy achieves on the toy: none of the initial prompts says
/// "careful" (toy score below 0), so an answer scoring above 0.5 means the strategy found and
/// kept a prompt that does (a strategy that does nothing hands back an initial prompt), and the
/// final choice's paired test accepted it over the best initial prompt.
pub fn assert_reaches_the_toy_optimum(outcome: &SearchOutcome) {
    assert!(best_initial(outcome) < 0.0);
    assert!(
        outcome.best.score > 0.5,
        "the answer {:?} scores {} (best initial {})",
        outcome.best.candidate.prompt(),
        outcome.best.score,
        best_initial(outcome)
    );
    let choice = outcome
        .final_choice
        .as_ref()
        .expect("the toy has validation");
    assert!(!choice.kept_initial, "{}", choice.reason);
}

/// The best initial prompt's dev score.
pub fn best_initial(outcome: &SearchOutcome) -> f64 {
    outcome
        .initial
        .iter()
        .map(|s| s.score)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Ids sequential in proposal order, parents earlier, operators known.
pub fn check_lineage(ev: &ToyEvaluator) {
    let mut last = None;
    for c in &ev.received {
        assert!(last.is_none_or(|l| c.id > l));
        last = Some(c.id);
        assert!(c.parents.iter().all(|&p| p < c.id));
        if c.operator == INITIAL_OPERATOR {
            assert!(c.parents.is_empty() && c.generation == 0);
        } else {
            assert!(
                operator_by_name(&c.operator).is_some()
                    || STRATEGY_MOVES.contains(&c.operator.as_str()),
                "{}",
                c.operator
            );
            assert!(!c.parents.is_empty() || c.operator.starts_with("pb-"));
        }
    }
}

/// A generator whose replies are numbered prompts that mention "careful" (so the toy fitness
/// rewards them; `careless`: "sloppy", which it does not), and that records what it was asked.
#[derive(Default)]
pub struct Counting {
    pub asked: Vec<Vec<crate::chat::ChatMessage>>,
    pub careless: bool,
}

impl crate::chat::TextGenerator for Counting {
    fn chat(
        &mut self,
        messages: &[crate::chat::ChatMessage],
        _rng: &mut ChaCha8Rng,
    ) -> crate::Result<String> {
        self.asked.push(messages.to_vec());
        let n = self.asked.len();
        Ok(format!(
            "<prompt>Be {} {}: classify the review.</prompt>",
            if self.careless { "sloppy" } else { "careful" },
            "very ".repeat(n % 7) + &n.to_string()
        ))
    }
}
