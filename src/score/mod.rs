//! Scoring prompts on a task: label log-likelihoods (classification) or greedily decoded
//! answers (generation) from a [`ScoringBackend`] (the in-process [`engine`], or an
//! OpenAI-compatible [`server`]), contextual calibration, metrics, and a cache so that no
//! (prompt, example) pair is ever computed twice.

pub mod backend;
pub mod engine;
pub mod local;
pub mod server;

use std::collections::HashMap;
use std::time::Instant;

pub use backend::{BackendInfo, ScoringBackend};
pub use engine::{Engine, EngineOptions};
pub use local::LocalBackend;

use crate::error::Result;
use crate::model::Model;
use crate::task::format::ChatRenderer;
use crate::task::metric::{Answer, Scored, Services};
use crate::task::{metrics, Fitness, Format, GenerationSpec, Split, Task};

/// What scoring one prompt on a set of examples gave.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    /// Classification: fraction of examples whose highest-scoring label is the gold label.
    /// Generation: mean of the task's metric over the examples.
    pub accuracy: f64,
    /// Unweighted mean of per-label F1 (generation: equal to `accuracy`).
    pub macro_f1: f64,
    /// Number of examples scored.
    pub n: usize,
    /// Whether contextual calibration was applied.
    pub calibrated: bool,
    /// Predicted label index per example (empty for generation).
    pub predictions: Vec<usize>,
    /// Per-example score: 1/0 correctness (classification) or the metric (generation); the
    /// mean is `accuracy`, and reports bootstrap over it.
    pub per_example: Vec<f64>,
    /// Per-example fitness: the metric's partial credit (generation), or equal to
    /// `per_example` (classification, 1/0).
    pub fitness: Vec<f64>,
    /// Generated answer per example (empty for classification).
    pub outputs: Vec<String>,
    /// Wall-clock seconds spent (cached pairs cost nothing).
    pub seconds: f64,
    /// Examples that needed a forward pass (not served from the cache).
    pub forward_passes: usize,
}

/// One example's result from [`Scorer::example_scores`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ExampleScore {
    /// The example's id in its split.
    pub example: usize,
    /// The fitness the search maximises (see [`Fitness`]).
    pub fitness: f64,
    /// 1/0 correctness (classification) or the task's metric (generation).
    pub metric: f64,
    /// The predicted label, or the generated answer.
    pub predicted: String,
    /// The predicted label's index (None for generation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<usize>,
}

/// Scores prompts on one task with one backend, caching label log-probs, answers and their
/// metric results per (prompt, example).
pub struct Scorer<'m> {
    task: &'m Task,
    backend: Box<dyn ScoringBackend + 'm>,
    /// The model's chat template, for chat tasks.
    chat: Option<ChatRenderer>,
    cache: HashMap<(String, Split, usize), Vec<f32>>,
    calibration: HashMap<String, Vec<f32>>,
    answers: HashMap<(String, Split, usize), String>,
    /// Metric results of answers: an external scorer is never asked twice about one pair.
    scored: HashMap<(String, Split, usize), Scored>,
    /// Prompt lengths in tokens (and whether counted, not estimated).
    token_counts: HashMap<String, (usize, bool)>,
}

impl<'m> Scorer<'m> {
    /// A scorer for `task` on `model`, run in process.
    pub fn new(model: &'m Model, task: &'m Task, options: EngineOptions) -> Result<Self> {
        Self::with_backend(task, Box::new(LocalBackend::new(model, options)))
    }

    /// A scorer for `task` on any backend (prepared for the task here, and the task's metric
    /// prepared with the backend's model: a judge model is loaded now). A chat task needs the
    /// backend's chat renderer: without one it is an error naming the model and the fix.
    pub fn with_backend(task: &'m Task, mut backend: Box<dyn ScoringBackend + 'm>) -> Result<Self> {
        let chat = match &task.format {
            Format::Chat(_) => Some(backend.chat_renderer()?),
            Format::Completion => None,
        };
        backend.prepare(task)?;
        if let Some(spec) = task.generation() {
            // Named after the task file, whose `[metric]` table is to fix.
            let scoring = backend.scoring_model();
            let services = Services {
                scoring: scoring.as_ref(),
                server_labels: Some(server::label_scorer),
            };
            spec.metric
                .prepare(&services)
                .map_err(|e| crate::error::Error::task(&task.path, e.to_string()))?;
        }
        let scorer = Self {
            task,
            backend,
            chat,
            cache: HashMap::new(),
            calibration: HashMap::new(),
            answers: HashMap::new(),
            scored: HashMap::new(),
            token_counts: HashMap::new(),
        };
        // A chat template that cannot render this task's messages fails here, not mid-run.
        if let Some(first) = task.initial_prompts.first() {
            scorer.split(first)?;
        }
        Ok(scorer)
    }

    /// The text before and after the input for `prompt`: the task's template around it, or
    /// the chat rendered through the model's template (everything before the final user
    /// turn's input, and what follows it up to the assistant header).
    pub fn split(&self, prompt: &str) -> Result<(String, String)> {
        match (&self.task.format, &self.chat) {
            (Format::Chat(format), Some(chat)) => chat.split(format, prompt),
            _ => Ok(self.task.template.split(prompt)),
        }
    }

    /// The whole text the model sees for `prompt` and `input` (prefix, input, suffix).
    pub fn render(&self, prompt: &str, input: &str) -> Result<String> {
        let (before, after) = self.split(prompt)?;
        Ok(format!("{before}{input}{after}"))
    }

    /// The task.
    pub fn task(&self) -> &'m Task {
        self.task
    }

    /// The scoring model's name.
    pub fn model_name(&self) -> String {
        self.backend.model_name()
    }

    /// How the backend scores (for the run folder and report).
    pub fn backend_info(&self) -> BackendInfo {
        self.backend.info()
    }

    /// Total examples run through the model so far (one per example scored or answered).
    pub fn forward_passes(&self) -> u64 {
        self.backend.forward_passes()
    }

    /// Total tokens run through the model so far (prompt and generated tokens).
    pub fn tokens_processed(&self) -> u64 {
        self.backend.tokens_processed()
    }

    /// Tokens generated so far (generation tasks).
    pub fn tokens_generated(&self) -> u64 {
        self.backend.tokens_generated()
    }

    /// Tokens of a prompt text in the scoring model's tokenizer; when the backend cannot count
    /// (a server without a tokenize endpoint), an estimate of one token per 4 characters and
    /// `false`.
    pub fn prompt_tokens(&mut self, text: &str) -> (usize, bool) {
        if let Some(&n) = self.token_counts.get(text) {
            return n;
        }
        let n = match self.backend.token_count(text) {
            Some(n) => (n, true),
            None => (text.chars().count().div_ceil(4), false),
        };
        self.token_counts.insert(text.to_string(), n);
        n
    }

    /// Greedy answers of the first `limit` examples of `split` after `prompt`, decoding only the
    /// pairs not yet cached (in process, the prompt's text up to `{input}` is run once and its
    /// KV cache reused).
    pub fn answers(
        &mut self,
        prompt: &str,
        split: Split,
        limit: Option<usize>,
        spec: &GenerationSpec,
    ) -> Result<(Vec<String>, usize)> {
        let ids = first_ids(self.task.examples(split).len(), limit);
        self.answers_of(prompt, split, &ids, spec)
    }

    /// Greedy answers of these examples (ids of `split`), as [`Scorer::answers`].
    pub(crate) fn answers_of(
        &mut self,
        prompt: &str,
        split: Split,
        ids: &[usize],
        spec: &GenerationSpec,
    ) -> Result<(Vec<String>, usize)> {
        let mut missing: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|&i| !self.answers.contains_key(&(prompt.to_string(), split, i)))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let (before, after) = self.split(prompt)?;
            let suffixes: Vec<String> = missing
                .iter()
                .map(|&i| format!("{}{after}", self.task.examples(split)[i].input))
                .collect();
            let outputs = self.backend.answers(&before, &suffixes, spec)?;
            for (&i, text) in missing.iter().zip(outputs) {
                self.answers.insert((prompt.to_string(), split, i), text);
            }
        }
        let out = ids
            .iter()
            .map(|&i| self.answers[&(prompt.to_string(), split, i)].clone())
            .collect();
        Ok((out, missing.len()))
    }

    /// Records a generation result logged by an earlier process (a resumed run's replayed
    /// evaluation): its answer and metric result are then served from the caches, so neither
    /// the model nor an external scorer is asked about this (prompt, example) again. Ignored
    /// for classification tasks.
    pub fn remember(
        &mut self,
        prompt: &str,
        split: Split,
        example: usize,
        output: &str,
        scored: Scored,
    ) {
        if !self.task.is_generation() || example >= self.task.examples(split).len() {
            return;
        }
        let key = (prompt.to_string(), split, example);
        self.answers
            .entry(key.clone())
            .or_insert_with(|| output.to_string());
        self.scored.entry(key).or_insert(scored);
    }

    /// Label log-probabilities (sum over each verbaliser's tokens) for the first `limit`
    /// examples of `split`, computing only the pairs not yet cached.
    pub fn label_logprobs(
        &mut self,
        prompt: &str,
        split: Split,
        limit: Option<usize>,
    ) -> Result<(Vec<Vec<f32>>, usize)> {
        let ids = first_ids(self.task.examples(split).len(), limit);
        self.label_logprobs_of(prompt, split, &ids)
    }

    /// Label log-probabilities of these examples (ids of `split`), as
    /// [`Scorer::label_logprobs`].
    pub fn label_logprobs_of(
        &mut self,
        prompt: &str,
        split: Split,
        ids: &[usize],
    ) -> Result<(Vec<Vec<f32>>, usize)> {
        let mut missing: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|&i| !self.cache.contains_key(&(prompt.to_string(), split, i)))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let (before, after) = self.split(prompt)?;
            let suffixes: Vec<String> = missing
                .iter()
                .map(|&i| format!("{}{after}", self.task.examples(split)[i].input))
                .collect();
            let scores = self.backend.label_logprobs(&before, &suffixes)?;
            for (&i, s) in missing.iter().zip(scores) {
                self.cache.insert((prompt.to_string(), split, i), s);
            }
        }
        let out = ids
            .iter()
            .map(|&i| self.cache[&(prompt.to_string(), split, i)].clone())
            .collect();
        Ok((out, missing.len()))
    }

    /// Label log-probs for the task's content-free input (computed once per prompt).
    pub fn content_free_logprobs(&mut self, prompt: &str) -> Result<Vec<f32>> {
        if let Some(v) = self.calibration.get(prompt) {
            return Ok(v.clone());
        }
        let (before, after) = self.split(prompt)?;
        let suffix = format!("{}{after}", self.task.content_free_input());
        let v = self.backend.label_logprobs(&before, &[suffix])?.remove(0);
        self.calibration.insert(prompt.to_string(), v.clone());
        Ok(v)
    }

    /// Per-example results of `prompt` on these examples (ids of `split`), in the order given:
    /// the fitness (`fitness` of the label log-probs, calibrated when asked; the metric for
    /// generation tasks), the metric and the answer. Only pairs not cached are computed; the
    /// second value counts them.
    pub fn example_scores(
        &mut self,
        prompt: &str,
        split: Split,
        ids: &[usize],
        calibrate: bool,
        fitness: Fitness,
    ) -> Result<(Vec<ExampleScore>, usize)> {
        let examples = self.task.examples(split);
        if let Some(&bad) = ids.iter().find(|&&i| i >= examples.len()) {
            return Err(crate::error::Error::Internal(format!(
                "example {bad} is past the end of the {split} split ({} examples)",
                examples.len()
            )));
        }
        if let Some(spec) = self.task.generation() {
            return self.generation_scores(prompt, split, ids, spec);
        }
        let (logprobs, computed) = self.label_logprobs_of(prompt, split, ids)?;
        let cf = if calibrate {
            Some(normalise(&self.content_free_logprobs(prompt)?))
        } else {
            None
        };
        let scores = ids
            .iter()
            .zip(&logprobs)
            .map(|(&i, s)| {
                let s = calibrated(s, cf.as_deref());
                let labels = self.task.labels();
                let gold = labels
                    .iter()
                    .position(|l| *l == self.task.examples(split)[i].target)
                    .unwrap_or(0);
                let predicted = argmax(&s);
                ExampleScore {
                    example: i,
                    fitness: fitness.of(&s, gold),
                    metric: f64::from(u8::from(predicted == gold)),
                    predicted: labels[predicted].clone(),
                    label: Some(predicted),
                }
            })
            .collect();
        Ok((scores, computed))
    }

    /// Per-example results of a generation task: the answers (decoded when not cached) and
    /// their metric results (computed once per pair, in one batch for the pairs not cached).
    fn generation_scores(
        &mut self,
        prompt: &str,
        split: Split,
        ids: &[usize],
        spec: &GenerationSpec,
    ) -> Result<(Vec<ExampleScore>, usize)> {
        let (outputs, computed) = self.answers_of(prompt, split, ids, spec)?;
        let key = |i: usize| (prompt.to_string(), split, i);
        let mut missing: Vec<(usize, &String)> = ids
            .iter()
            .copied()
            .zip(&outputs)
            .filter(|(i, _)| !self.scored.contains_key(&key(*i)))
            .collect();
        missing.sort_unstable_by_key(|(i, _)| *i);
        missing.dedup_by_key(|(i, _)| *i);
        let examples = self.task.examples(split);
        let answers: Vec<Answer<'_>> = missing
            .iter()
            .map(|&(i, output)| Answer {
                input: &examples[i].input,
                output,
                targets: &examples[i].targets,
            })
            .collect();
        let results = spec.metric.score(&answers)?;
        for (&(i, _), r) in missing.iter().zip(results) {
            self.scored.insert(key(i), r);
        }
        let scores = ids
            .iter()
            .zip(outputs)
            .map(|(&i, output)| {
                let r = self.scored[&key(i)];
                ExampleScore {
                    example: i,
                    fitness: r.fitness,
                    metric: r.score,
                    predicted: output,
                    label: None,
                }
            })
            .collect();
        Ok((scores, computed))
    }

    /// Scores `prompt` on the first `limit` examples of `split`: the per-example results of
    /// [`Scorer::example_scores`], summarised.
    pub fn evaluate(
        &mut self,
        prompt: &str,
        split: Split,
        limit: Option<usize>,
        calibrate: bool,
    ) -> Result<Evaluation> {
        let start = Instant::now();
        let ids = first_ids(self.task.examples(split).len(), limit);
        let generation = self.task.is_generation();
        // Calibration applies to label log-probs only.
        let calibrate = calibrate && !generation;
        let (scores, computed) =
            self.example_scores(prompt, split, &ids, calibrate, Fitness::Accuracy)?;
        let per_example: Vec<f64> = scores.iter().map(|s| s.metric).collect();
        let n = scores.len();
        let (accuracy, macro_f1, predictions, fitness, outputs) = if generation {
            // An empty evaluation scores 0, as `metrics::accuracy` does for classification.
            let mean = if n == 0 {
                0.0
            } else {
                crate::stats::mean(&per_example)
            };
            let fitness = scores.iter().map(|s| s.fitness).collect();
            let outputs = scores.into_iter().map(|s| s.predicted).collect();
            (mean, mean, Vec::new(), fitness, outputs)
        } else {
            let predictions: Vec<usize> = scores.iter().map(|s| s.label.unwrap_or(0)).collect();
            let gold = &self.task.gold(split)[..n];
            (
                metrics::accuracy(gold, &predictions),
                metrics::macro_f1(gold, &predictions, self.task.labels().len()),
                predictions,
                per_example.clone(),
                Vec::new(),
            )
        };
        Ok(Evaluation {
            accuracy,
            macro_f1,
            n,
            calibrated: calibrate,
            predictions,
            per_example,
            fitness,
            outputs,
            seconds: start.elapsed().as_secs_f64(),
            forward_passes: computed,
        })
    }
}

/// The ids of the first `limit` examples of a split of `len` (all when None).
fn first_ids(len: usize, limit: Option<usize>) -> Vec<usize> {
    (0..limit.map_or(len, |l| l.min(len))).collect()
}

/// Calibrated label scores of one example, as the prediction of a calibrated evaluation uses
/// them: `logps` (the label log-probs) normalised over the labels, minus the normalised
/// `content_free` log-probs of the same prompt ([`Scorer::content_free_logprobs`]). Its argmax
/// is the calibrated prediction.
pub fn calibrate(logps: &[f32], content_free: &[f32]) -> Vec<f32> {
    calibrated(logps, Some(&normalise(content_free)))
}

/// Contextual calibration (Zhao et al. 2021): divide the label distribution by the one the
/// prompt gives a content-free input (`cf`, normalised); in logs, subtract. Unchanged without.
fn calibrated(logps: &[f32], cf: Option<&[f32]>) -> Vec<f32> {
    match cf {
        Some(cf) => normalise(logps)
            .iter()
            .zip(cf)
            .map(|(a, b)| a - b)
            .collect(),
        None => logps.to_vec(),
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
