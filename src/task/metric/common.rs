//! What every metric shares, below the registry: the [`Metric`] trait, the answers it scores
//! and what it gives back, its errors, the parameters its constructor reads, and the scoring
//! layer's services a metric may use when it is prepared. Metric files import this, never the
//! registry in `mod.rs`, so no metric file and the registry import each other.

use std::path::{Path, PathBuf};

/// One answer to score: the example's input, the model's output and the accepted answers.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    /// The text substituted for `{input}`.
    pub input: &'a str,
    /// The generated answer.
    pub output: &'a str,
    /// Every accepted answer of the example.
    pub targets: &'a [String],
}

/// What a metric gives one answer.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scored {
    /// The headline score in [0, 1] (reports average it).
    pub score: f64,
    /// Partial credit in [0, 1] that screening and racing maximise (equal to `score` for
    /// all-or-nothing metrics).
    pub fitness: f64,
}

impl Scored {
    /// A score that is its own fitness.
    pub fn plain(score: f64) -> Self {
        Self {
            score,
            fitness: score,
        }
    }
}

/// The model that scores a task, as [`Metric::prepare`] is told of it (a `judge` metric with
/// `judge_model = "scoring"` judges with it).
#[derive(Clone, Debug)]
pub enum ScoringModel {
    /// A model file or folder loaded in process.
    File(PathBuf),
    /// An OpenAI-compatible server, connected.
    Server(crate::remote::Client),
}

/// Why a metric could not be made or could not score.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// The task file's `metric` settings are wrong; the message names the key and the fix.
    #[error("{0}")]
    Config(String),
    /// An external scorer (`command` metric) failed; the message says how and what to do.
    #[error("scorer command `{command}`: {message}")]
    Command {
        /// The command line, joined with spaces.
        command: String,
        /// What went wrong and how to fix it.
        message: String,
    },
    /// A judge model (`judge` metric) could not be loaded, reached or run; the message says how
    /// and what to do.
    #[error("judge model {model}: {message}")]
    Judge {
        /// The judge's file, URL or `scoring`.
        model: String,
        /// What went wrong and how to fix it.
        message: String,
    },
}

impl From<MetricError> for crate::Error {
    fn from(e: MetricError) -> Self {
        crate::Error::Metric(Box::new(e))
    }
}

/// An accepted answer of the data that the task's metric cannot take (a `number` target that
/// is not a number, a `json` target that is not JSON); the message says what and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadTarget(pub String);

/// Compares generated answers with an example's accepted answers.
pub trait Metric: std::fmt::Debug + Send + Sync {
    /// Scores a batch of answers, one [`Scored`] per answer in order.
    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError>;

    /// Called when a scorer is made, before any answer is scored, with the model scoring the
    /// task and the scoring layer's services: a metric that needs a model of its own loads it
    /// here, so one that cannot load stops a run before any work.
    fn prepare(&self, _services: &Services<'_>) -> Result<(), MetricError> {
        Ok(())
    }

    /// Checks one accepted answer of the data when the task is loaded (Err: what is wrong).
    fn check_target(&self, _target: &str) -> Result<(), BadTarget> {
        Ok(())
    }
}

/// Scores each answer on its own with `f` (output, accepted answers): the helper of every
/// metric that needs no batch.
pub fn each(
    answers: &[Answer<'_>],
    f: impl Fn(&str, &[String]) -> Scored,
) -> Result<Vec<Scored>, MetricError> {
    Ok(answers.iter().map(|a| f(a.output, a.targets)).collect())
}

/// The best score and the best fitness of `f` over the accepted answers (0 when none).
pub(crate) fn best_over(targets: &[String], f: impl Fn(&str) -> Scored) -> Scored {
    targets
        .iter()
        .map(|t| f(t))
        .fold(Scored::plain(0.0), |a, b| Scored {
            score: a.score.max(b.score),
            fitness: a.fitness.max(b.fitness),
        })
}

/// A metric's parameters from the task file's `[metric]` table, read by its constructor; keys
/// it never asks for are reported as unknown.
pub(crate) struct Params<'a> {
    metric: &'static str,
    table: toml::Table,
    asked: Vec<&'static str>,
    folder: &'a Path,
}

impl<'a> Params<'a> {
    /// Parameters `table` of metric `metric`, for a task file in `folder`.
    pub fn new(metric: &'static str, table: toml::Table, folder: &'a Path) -> Self {
        Self {
            metric,
            table,
            asked: Vec::new(),
            folder,
        }
    }

    /// The task file's folder (relative paths of the metric are relative to it).
    pub fn folder(&self) -> &Path {
        self.folder
    }

    /// An error about `key` of this metric.
    pub fn bad(&self, key: &str, message: impl std::fmt::Display) -> MetricError {
        MetricError::Config(format!(
            "`[metric] {key}` of metric \"{}\": {message}",
            self.metric
        ))
    }

    fn take(&mut self, key: &'static str) -> Option<toml::Value> {
        self.asked.push(key);
        self.table.remove(key)
    }

    /// A string parameter.
    pub fn string(&mut self, key: &'static str) -> Result<Option<String>, MetricError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.bad(key, format!("must be a string, found {}", other.type_str())))
            }
        }
    }

    /// A number parameter (an integer is taken as a float).
    pub fn float(&mut self, key: &'static str) -> Result<Option<f64>, MetricError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Float(x)) => Ok(Some(x)),
            Some(toml::Value::Integer(i)) => Ok(Some(i as f64)),
            Some(other) => {
                Err(self.bad(key, format!("must be a number, found {}", other.type_str())))
            }
        }
    }

    /// A list-of-strings parameter.
    pub fn strings(&mut self, key: &'static str) -> Result<Option<Vec<String>>, MetricError> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let items = match &value {
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        items.map(Some).ok_or_else(|| {
            self.bad(
                key,
                "must be a list of strings, e.g. [\"a\", \"b\"]".to_string(),
            )
        })
    }

    /// Errors on a key no reader asked for, listing the metric's keys.
    pub(crate) fn finish(self) -> Result<(), MetricError> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(key) => Err(MetricError::Config(format!(
                "unknown key `[metric] {key}` for metric \"{}\": {}",
                self.metric,
                if self.asked.is_empty() {
                    "it takes no parameters, remove it".to_string()
                } else {
                    format!("its keys are {} (and `name`)", self.asked.join(", "))
                }
            ))),
        }
    }
}

/// Log-probabilities of fixed labels after prompts: what a judge asks of a server (the scoring
/// layer's server backend is one).
pub trait LabelScorer: Send {
    /// For each suffix, the log-prob of each label after `prefix` + the suffix.
    fn label_logprobs(&mut self, prefix: &str, suffixes: &[String])
        -> crate::Result<Vec<Vec<f32>>>;
}

/// Opens a server as a [`LabelScorer`] of these labels (the scoring layer provides it).
pub type ServerLabels = fn(crate::remote::Client, &[String]) -> crate::Result<Box<dyn LabelScorer>>;

/// What a metric may use of the scoring layer when it is prepared ([`Metric::prepare`]): the
/// metric layer sits below the scoring layer, so the scorer hands these down.
#[derive(Clone, Copy, Default)]
pub struct Services<'a> {
    /// The model scoring the task (None: not known).
    pub scoring: Option<&'a ScoringModel>,
    /// How to score labels through a server (None: no server can be used here).
    pub server_labels: Option<ServerLabels>,
}
