//! The one error type of the `evolve` module, with messages that say what to fix.

use std::path::PathBuf;

/// Everything that can go wrong while loading a phrase pool, validating a GA
/// configuration or running the GA.
#[derive(Debug, thiserror::Error)]
pub enum EvolveError {
    /// The phrase pool file could not be read.
    #[error(
        "cannot read phrase pool file {path}: {error}; check that the path exists and is readable"
    )]
    PoolRead {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error (in the message, not chained: printing the chain would
        /// repeat it).
        error: std::io::Error,
    },

    /// The phrase pool file is not valid TOML or has an unexpected shape.
    #[error(
        "phrase pool file {path} is invalid: {message}; it may only hold the string arrays \
         `instructions`, `personas` and `constraints`, e.g. instructions = [\"Think step by step.\"]"
    )]
    PoolParse {
        /// The offending file.
        path: PathBuf,
        /// What the TOML parser reported.
        message: String,
    },

    /// A phrase pool entry is blank.
    #[error(
        "phrase pool file {path}: entry {index} of `{key}` is blank; remove it or write a phrase"
    )]
    BlankPoolEntry {
        /// The offending file.
        path: PathBuf,
        /// The array that holds the blank entry.
        key: &'static str,
        /// Zero-based position of the entry in that array.
        index: usize,
    },

    /// A GA setting is out of range; the message names the flag and the allowed range.
    #[error("invalid GA setting: {0}")]
    Config(String),

    /// The operator list cannot be used (bad weight, nothing enabled).
    #[error("invalid operator set: {0}")]
    Operators(String),

    /// No initial prompt was given.
    #[error("no initial prompts were given; pass at least one non-empty prompt to optimise")]
    NoInitialPrompts,

    /// An initial prompt is empty or only whitespace.
    #[error("initial prompt #{index} is empty; remove it or write some text")]
    EmptyPrompt {
        /// Zero-based position of the prompt in the list given.
        index: usize,
    },

    /// The evaluator failed; carries the evaluator's own error (the model's, the scorer's, a
    /// metric's or a server's) as its source, so callers can inspect it.
    #[error("evaluation failed")]
    Evaluation(#[source] BoxError),

    /// The run's record could not be written (full disk, permissions); the source error names
    /// the file.
    #[error("the run's record could not be written")]
    Record(#[source] BoxError),

    /// The evaluator broke its contract of one result per example.
    #[error(
        "the evaluator returned {got} results for {expected} examples; it must return exactly one result per example asked for, in order"
    )]
    ScoreCount {
        /// Number of examples asked for.
        expected: usize,
        /// Number of results returned.
        got: usize,
    },

    /// The evaluator returned NaN, which cannot be ranked.
    #[error(
        "the evaluator returned NaN for candidate {id} ({prompt:?}); return a finite score (use a very low score for failures)"
    )]
    NanScore {
        /// Id of the candidate.
        id: u64,
        /// Its rendered prompt.
        prompt: String,
    },
}

/// An error from below the search (model, scorer, metric, server, file system), kept whole.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl EvolveError {
    /// Wraps an evaluator-side error (model, cache, metric, I/O; or a message) as
    /// [`EvolveError::Evaluation`], keeping it as the source.
    pub fn evaluation(err: impl Into<BoxError>) -> EvolveError {
        EvolveError::Evaluation(err.into())
    }

    /// Wraps a failure to write the run's record as [`EvolveError::Record`].
    pub fn record(err: impl Into<BoxError>) -> EvolveError {
        EvolveError::Record(err.into())
    }
}

impl From<EvolveError> for crate::Error {
    fn from(e: EvolveError) -> Self {
        crate::Error::Evolve(Box::new(e))
    }
}
