//! Scoring prompts on a task: label log-likelihoods from the [`engine`] (classification) or
//! greedily decoded answers (generation), contextual calibration, metrics, and a cache so that
//! no (prompt, example) pair is ever computed twice.

pub mod engine;

use std::collections::HashMap;
use std::time::Instant;

pub use engine::{Engine, EngineOptions};

use crate::error::Result;
use crate::model::{GenerateOptions, Generator, Model};
use crate::task::{metrics, Fitness, GenerationSpec, Split, Task};

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
}

/// Scores prompts on one task with one model, caching label log-probs per (prompt, example).
pub struct Scorer<'m> {
    task: &'m Task,
    engine: Engine<'m>,
    label_ids: Vec<Vec<u32>>,
    cache: HashMap<(String, Split, usize), Vec<f32>>,
    calibration: HashMap<String, Vec<f32>>,
    generator: Generator<'m>,
    answers: HashMap<(String, Split, usize), String>,
    answers_generated: u64,
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
            generator: Generator::new(model),
            answers: HashMap::new(),
            answers_generated: 0,
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

    /// Total examples run through the model so far (one per example scored or answered).
    pub fn forward_passes(&self) -> u64 {
        self.engine.texts_scored + self.answers_generated
    }

    /// Total tokens run through the model so far (prompt and generated tokens).
    pub fn tokens_processed(&self) -> u64 {
        self.engine.tokens_processed
            + self.generator.tokens_prefilled
            + self.generator.tokens_generated
    }

    /// Tokens generated so far (generation tasks).
    pub fn tokens_generated(&self) -> u64 {
        self.generator.tokens_generated
    }

    /// Greedy answers of the first `limit` examples of `split` after `prompt`, decoding only the
    /// pairs not yet cached. The prompt's text up to `{input}` is run once and its KV cache
    /// reused for every example whose tokens start with it (others are run whole).
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
    pub fn answers_of(
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
            let model = self.engine.model();
            let options = GenerateOptions {
                max_new_tokens: spec.max_new_tokens,
                temperature: 0.0,
                top_p: 1.0,
                stop: spec.stop.clone(),
            };
            let (before, after) = self.task.template.split(prompt);
            let lead = model.leading_ids();
            // As in the engine: the prefix is tokenised without its trailing whitespace, which
            // BPE merges into the next word.
            let mut prefix_ids = lead.clone();
            prefix_ids.extend(model.encode(before.trim_end())?);
            let reuse = self.engine.options().prefix_reuse && prefix_ids.len() > lead.len();
            let mut prefix_cache = None;
            for &i in &missing {
                let input = &self.task.examples(split)[i].input;
                let mut ids = lead.clone();
                ids.extend(model.encode(&format!("{before}{input}{after}"))?);
                let g = if reuse && ids.len() > prefix_ids.len() && ids.starts_with(&prefix_ids) {
                    let (cache, done) = match &prefix_cache {
                        Some(c) => c,
                        None => {
                            let mut cache = model.arch.new_cache();
                            self.generator.prefill(&mut cache, &prefix_ids)?;
                            prefix_cache.insert((cache, prefix_ids.len()))
                        }
                    };
                    let mut cache = cache.clone();
                    self.generator
                        .generate_after(&mut cache, &ids[*done..], &options, None)?
                } else {
                    let mut cache = model.arch.new_cache();
                    self.generator
                        .generate_after(&mut cache, &ids, &options, None)?
                };
                self.answers_generated += 1;
                self.answers.insert((prompt.to_string(), split, i), g.text);
            }
        }
        let out = ids
            .iter()
            .map(|&i| self.answers[&(prompt.to_string(), split, i)].clone())
            .collect();
        Ok((out, missing.len()))
    }

    /// Scores `prompt` on a generation task: the mean metric of its greedy answers.
    fn evaluate_generation(
        &mut self,
        prompt: &str,
        split: Split,
        limit: Option<usize>,
        spec: &GenerationSpec,
    ) -> Result<Evaluation> {
        let start = Instant::now();
        let (outputs, computed) = self.answers(prompt, split, limit, spec)?;
        let per_example: Vec<f64> = outputs
            .iter()
            .zip(self.task.examples(split))
            .map(|(o, e)| spec.metric.score(o, &e.targets))
            .collect();
        // An empty evaluation scores 0, as `metrics::accuracy` does for classification.
        let mean = if per_example.is_empty() {
            0.0
        } else {
            crate::stats::mean(&per_example)
        };
        Ok(Evaluation {
            accuracy: mean,
            macro_f1: mean,
            n: outputs.len(),
            calibrated: false,
            predictions: Vec::new(),
            per_example,
            outputs,
            seconds: start.elapsed().as_secs_f64(),
            forward_passes: computed,
        })
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
        let (before, after) = self.task.template.split(prompt);
        let suffix = format!("{}{after}", self.task.content_free_input);
        let v = self
            .engine
            .score(&before, &[suffix], &self.label_ids)?
            .remove(0);
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
            return Err(crate::error::Error::Usage(format!(
                "example {bad} is past the end of the {split} split ({} examples)",
                examples.len()
            )));
        }
        if let Some(spec) = &self.task.generation {
            let (outputs, computed) = self.answers_of(prompt, split, ids, spec)?;
            let scores = ids
                .iter()
                .zip(outputs)
                .map(|(&i, output)| {
                    let metric = spec
                        .metric
                        .score(&output, &self.task.examples(split)[i].targets);
                    ExampleScore {
                        example: i,
                        fitness: metric,
                        metric,
                        predicted: output,
                    }
                })
                .collect();
            return Ok((scores, computed));
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
                let gold = self
                    .task
                    .labels
                    .iter()
                    .position(|l| *l == self.task.examples(split)[i].target)
                    .unwrap_or(0);
                let predicted = argmax(&s);
                ExampleScore {
                    example: i,
                    fitness: fitness.of(&s, gold),
                    metric: f64::from(u8::from(predicted == gold)),
                    predicted: self.task.labels[predicted].clone(),
                }
            })
            .collect();
        Ok((scores, computed))
    }

    /// Scores `prompt` on the first `limit` examples of `split`.
    pub fn evaluate(
        &mut self,
        prompt: &str,
        split: Split,
        limit: Option<usize>,
        calibrate: bool,
    ) -> Result<Evaluation> {
        if let Some(spec) = &self.task.generation {
            return self.evaluate_generation(prompt, split, limit, spec);
        }
        let start = Instant::now();
        let (scores, computed) = self.label_logprobs(prompt, split, limit)?;
        let cf = if calibrate {
            Some(normalise(&self.content_free_logprobs(prompt)?))
        } else {
            None
        };
        let predictions: Vec<usize> = scores
            .iter()
            .map(|s| argmax(&calibrated(s, cf.as_deref())))
            .collect();
        let gold = &self.task.gold(split)[..predictions.len()];
        let per_example = gold
            .iter()
            .zip(&predictions)
            .map(|(g, p)| f64::from(g == p))
            .collect();
        Ok(Evaluation {
            accuracy: metrics::accuracy(gold, &predictions),
            macro_f1: metrics::macro_f1(gold, &predictions, self.task.labels.len()),
            n: predictions.len(),
            calibrated: calibrate,
            predictions,
            per_example,
            outputs: Vec::new(),
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
