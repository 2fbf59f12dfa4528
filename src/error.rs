//! Library error type: every variant names the file (and line or key) at fault and the fix.

use std::path::PathBuf;

/// Errors of the promptevo library. Each message is one line meant for a person: what went
/// wrong, where, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    ///
    /// The I/O error is part of the message, not a separate cause (a cause would print twice).
    #[error("cannot read {}: {error}{}", shown(path), hint_for_io(error))]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        error: std::io::Error,
    },
    /// A file could not be written.
    ///
    /// The I/O error is part of the message, not a separate cause (a cause would print twice).
    #[error("cannot write {}: {error}", shown(path))]
    Write {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        error: std::io::Error,
    },
    /// A line of a JSONL data file is not a JSON object with string `input` and `target`.
    #[error("{}:{line}: malformed JSONL line: {message} (each line must be {{\"input\": \"...\", \"target\": \"...\"}})", shown(path))]
    Jsonl {
        /// The data file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A line of a file (a run's log, a data line that parses but does not fit the task) is
    /// wrong; the message says what and how to fix it.
    #[error("{}:{line}: {message}", shown(path))]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line and how to fix it.
        message: String,
    },
    /// A task file is invalid.
    #[error("{}: {message}", shown(path))]
    Task {
        /// The task file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A model file is invalid or unsupported.
    #[error("{}: {message}", shown(path))]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A model's chat template is missing, does not parse or fails to render.
    #[error("{}: {message}", shown(path))]
    ChatTemplate {
        /// The model file the template came from.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// No model could be found or fetched.
    #[error("{0}")]
    ModelNotFound(String),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(#[source] tokenizers::Error),
    /// A run folder is invalid, locked or inconsistent.
    #[error("{}: {message}", shown(path))]
    Run {
        /// The run folder or file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A benchmark file is invalid, or its output folder disagrees with it.
    #[error("{}: {message}", shown(path))]
    Bench {
        /// The benchmark file or run folder.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// An inference server failed, stayed down, or cannot score the task; the message says
    /// what it answered and the fix.
    #[error("inference server {url}: {message}")]
    Server {
        /// The URL that failed.
        url: String,
        /// What went wrong and how to fix it.
        message: String,
    },
    /// An inference server answered without what was asked for (no reply text); the message
    /// names the endpoint and asks whether it is an OpenAI-compatible server.
    #[error("{0}")]
    BadReply(String),
    /// A flag or option has an invalid value.
    #[error("{0}")]
    Usage(String),
    /// promptevo broke one of its own contracts (a caller asked for something its callee
    /// cannot give: a position past the model, a packed pass without the CPU kernel); a bug, not
    /// bad input. The message says what.
    #[error("{0}")]
    Internal(String),
    /// The search failed (bad strategy settings, operator set, pool, or a failed evaluation).
    ///
    /// Transparent: printed once, not once as this error and again as its cause.
    /// Boxed, so that this file names no module above it (the conversion lives beside
    /// `EvolveError`); `source()` is the search's error.
    #[error(transparent)]
    Evolve(Box<dyn std::error::Error + Send + Sync>),
    /// A task's metric failed while scoring (an external scorer crashed, hung or wrote junk).
    ///
    /// Transparent: the metric's message already names the command and the fix.
    /// Boxed like [`Error::Evolve`]; the conversion lives beside `MetricError`.
    #[error(transparent)]
    Metric(Box<dyn std::error::Error + Send + Sync>),
    /// The tensor backend failed (a bug or an exhausted resource, not bad input).
    ///
    /// Printed as the first line of candle's message and not exposed as a cause: with
    /// `RUST_BACKTRACE=1` candle appends a backtrace to its message, which is not for users.
    #[error("tensor backend: {}", first_line(.0))]
    Candle(candle_core::Error),
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(e)
    }
}

/// The first line of an error's message (candle's may continue with a backtrace).
fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

fn hint_for_io(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            " (check the path; relative paths in a task file are relative to that file)"
        }
        std::io::ErrorKind::PermissionDenied => " (check the file's permissions)",
        _ => "",
    }
}

impl Error {
    /// Wraps an I/O error on reading `path`.
    pub fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Read {
            path: path.into(),
            error: source,
        }
    }
    /// Wraps an I/O error on writing `path`.
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Write {
            path: path.into(),
            error: source,
        }
    }
    /// A model-file error with its fix.
    pub fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            message: message.into(),
        }
    }
    /// A chat-template error with its fix.
    pub fn chat_template(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::ChatTemplate {
            path: path.into(),
            message: message.into(),
        }
    }
    /// A task-file error with its fix.
    pub fn task(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Task {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A path for a one-line message: control characters (a newline in a name read from a task
/// file) are escaped.
fn shown(path: &std::path::Path) -> String {
    let s = path.display().to_string();
    if !s.chars().any(char::is_control) {
        return s;
    }
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The 1-based line of byte `offset` in `text` (one more than the newlines before it), for
/// messages about a parsed file; an offset past the end counts to the end.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::line_of;

    #[test]
    fn line_of_counts_the_newlines_before_the_offset() {
        let text = "a = 1\nb = é\nc";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 6), 2);
        // Inside a multi-byte character, and past the end: no panic, the line it falls on.
        assert_eq!(line_of(text, 11), 2);
        assert_eq!(line_of(text, 1000), 3);
    }
}
