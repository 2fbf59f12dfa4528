//! Scoring prompts on a task: label log-likelihoods from the [`engine`], contextual calibration,
//! metrics, and a cache so that no (prompt, example) pair is ever computed twice.

pub mod engine;

use std::collections::HashMap;
use std::time::Instant;

pub use engine::{Engine, EngineOptions};

use crate::error::Result;
use crate::model::Model;
use crate::task::{metrics, Split, Task};

/// What scoring one prompt on a set of examples gave.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    /// Fraction of examples whose highest-scoring label is the gold label.
    pub accuracy: f64,
    /// Unweighted mean of per-label F1.
    pub macro_f1: f64,
    /// Number of examples scored.
    pub n: usize,
    /// Whether contextual calibration was applied.
    pub calibrated: bool,
    /// Predicted label index per example.
    pub predictions: Vec<usize>,
    /// Wall-clock seconds spent (cached pairs cost nothing).
    pub seconds: f64,
    /// Examples that needed a forward pass (not served from the cache).
    pub forward_passes: usize,
}

/// Scores prompts on one task with one model, caching label log-probs per (prompt, example).
pub struct Scorer<'m> {
    task: &'m Task,
    engine: Engine<'m>,
    label_ids: Vec<Vec<u32>>,
    cache: HashMap<(String, Split, usize), Vec<f32>>,
    calibration: HashMap<String, Vec<f32>>,
}

impl<'m> Scorer<'m> {
    /// A scorer for `task` on `model`.
    pub fn new(model: &'m Model, task: &'m Task, options: EngineOptions) -> Result<Self> {
        let label_ids = task
            .verbalizers
            .iter()
            .map(|v| model.encode(v))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            task,
            engine: Engine::new(model, options),
            label_ids,
            cache: HashMap::new(),
            calibration: HashMap::new(),
        })
    }

    /// The task.
    pub fn task(&self) -> &'m Task {
        self.task
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.engine.model()
    }

    /// Total texts run through the model so far.
    pub fn forward_passes(&self) -> u64 {
        self.engine.texts_scored
    }

    /// Total tokens run through the model so far.
    pub fn tokens_processed(&self) -> u64 {
        self.engine.tokens_processed
    }

    /// Label log-probabilities (sum over each verbaliser's tokens) for the first `limit`
    /// examples of `split`, computing only the pairs not yet cached.
    pub fn label_logprobs(
        &mut self,
        prompt: &str,
        split: Split,
        limit: Option<usize>,
    ) -> Result<(Vec<Vec<f32>>, usize)> {
        let examples = self.task.examples(split);
        let n = limit.map_or(examples.len(), |l| l.min(examples.len()));
        let examples = &examples[..n];
        let missing: Vec<usize> = examples
            .iter()
            .filter(|e| !self.cache.contains_key(&(prompt.to_string(), split, e.id)))
            .map(|e| e.id)
            .collect();
        if !missing.is_empty() {
            let (before, after) = self.task.template.split(prompt);
            let suffixes: Vec<String> = missing
                .iter()
                .map(|&i| format!("{}{after}", self.task.examples(split)[i].input))
                .collect();
            let scores = self.engine.score(&before, &suffixes, &self.label_ids)?;
            for (&i, s) in missing.iter().zip(scores) {
                self.cache.insert((prompt.to_string(), split, i), s);
            }
        }
        let out = examples
            .iter()
            .map(|e| self.cache[&(prompt.to_string(), split, e.id)].clone())
            .collect();
        Ok((out, missing.len()))
    }

    /// Label log-probs for the task's content-free input (computed once per prompt).
    pub fn content_free_logprobs(&mut self, prompt: &str) -> Result<Vec<f32>> {
        if let Some(v) = self.calibration.get(prompt) {
            return Ok(v.clone());
        }
        let (before, after) = self.task.template.split(prompt);
        let suffix = format!("{}{after}", self.task.content_free_input);
        let v = self
            .engine
            .score(&before, &[suffix], &self.label_ids)?
            .remove(0);
        self.calibration.insert(prompt.to_string(), v.clone());
        Ok(v)
    }

    /// Scores `prompt` on the first `limit` examples of `split`.
    pub fn evaluate(
        &mut self,
        prompt: &str,
        split: Split,
        limit: Option<usize>,
        calibrate: bool,
    ) -> Result<Evaluation> {
        let start = Instant::now();
        let (scores, computed) = self.label_logprobs(prompt, split, limit)?;
        let cf = if calibrate {
            Some(normalise(&self.content_free_logprobs(prompt)?))
        } else {
            None
        };
        let predictions: Vec<usize> = scores
            .iter()
            .map(|s| {
                let s = match &cf {
                    // Contextual calibration (Zhao et al. 2021): divide the label distribution by
                    // the one the prompt gives a content-free input; in logs, subtract.
                    Some(cf) => normalise(s).iter().zip(cf).map(|(a, b)| a - b).collect(),
                    None => s.clone(),
                };
                argmax(&s)
            })
            .collect();
        let gold = &self.task.gold(split)[..predictions.len()];
        Ok(Evaluation {
            accuracy: metrics::accuracy(gold, &predictions),
            macro_f1: metrics::macro_f1(gold, &predictions, self.task.labels.len()),
            n: predictions.len(),
            calibrated: calibrate,
            predictions,
            seconds: start.elapsed().as_secs_f64(),
            forward_passes: computed,
        })
    }
}

/// Log-softmax over labels.
fn normalise(logps: &[f32]) -> Vec<f32> {
    let m = logps.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let z = m + logps.iter().map(|x| (x - m).exp()).sum::<f32>().ln();
    logps.iter().map(|x| x - z).collect()
}

/// Index of the largest value (the first on ties).
fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best
}
