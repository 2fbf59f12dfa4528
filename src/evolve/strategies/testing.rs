//! A cheap deterministic evaluator and helpers for strategy tests.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::evolve::error::EvolveError;
use crate::evolve::operators::{operator_by_name, OperatorContext};
use crate::evolve::pool::PhrasePool;
use crate::evolve::search::{Candidate, Evaluator, Scored, SearchOutcome, INITIAL_OPERATOR};
use crate::evolve::strategies::{run_search, SearchConfig};

/// Toy fitness: +1 per occurrence of "careful", minus a small length penalty; on a partial
/// dev set the score is scaled by n/dev (so partial scores are lower, as racing expects noise).
pub fn toy_score(prompt: &str) -> f64 {
    prompt.matches("careful").count() as f64 - prompt.len() as f64 / 1000.0
}

/// Records everything it is asked, and fails the test on a repeated (prompt, n).
#[derive(Default)]
pub struct ToyEvaluator {
    pub received: Vec<Candidate>,
    pub sizes: Vec<usize>,
    seen: BTreeSet<(String, usize)>,
    pub generations: Vec<(usize, Vec<f64>)>,
    pub populations: Vec<Vec<u64>>,
}

/// Dev size of the toy evaluator.
pub const TOY_DEV: usize = 40;

impl Evaluator for ToyEvaluator {
    fn dev_size(&self) -> usize {
        TOY_DEV
    }

    fn evaluate(&mut self, candidates: &[Candidate], n: usize) -> Result<Vec<f64>, EvolveError> {
        for c in candidates {
            assert!(
                self.seen.insert((c.prompt(), n)),
                "evaluated twice: {:?}",
                c.prompt()
            );
            self.received.push(c.clone());
            self.sizes.push(n);
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

pub fn context<'g>() -> OperatorContext<'g> {
    OperatorContext {
        pool: pool(),
        demos: vec!["Review: careful film\nSentiment: positive".into()],
        ..OperatorContext::default()
    }
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
        if last != Some(c.id) {
            assert!(last.is_none_or(|l| c.id > l));
        }
        last = Some(c.id);
        assert!(c.parents.iter().all(|&p| p < c.id));
        if c.operator == INITIAL_OPERATOR {
            assert!(c.parents.is_empty() && c.generation == 0);
        } else {
            assert!(operator_by_name(&c.operator).is_some(), "{}", c.operator);
            assert!(!c.parents.is_empty() || c.operator.starts_with("pb-"));
        }
    }
}

/// A generator whose replies are numbered prompts that mention "careful" (so the toy fitness
/// rewards them), and that records what it was asked.
#[derive(Default)]
pub struct Counting {
    pub asked: Vec<Vec<crate::evolve::generator::ChatMessage>>,
}

impl crate::evolve::generator::TextGenerator for Counting {
    fn chat(
        &mut self,
        messages: &[crate::evolve::generator::ChatMessage],
        _rng: &mut ChaCha8Rng,
    ) -> Result<String, EvolveError> {
        self.asked.push(messages.to_vec());
        let n = self.asked.len();
        Ok(format!(
            "<prompt>Be careful {}: classify the review.</prompt>",
            "very ".repeat(n % 7) + &n.to_string()
        ))
    }
}
