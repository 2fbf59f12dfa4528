//! Loads JSONL data splits (`{"input": ..., "target": ...}` per line) with line-numbered errors.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// One labelled example.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Example {
    /// Stable id within its split: the 0-based line index among examples.
    pub id: usize,
    /// 1-based line of the data file it was read from (blank lines are counted, so this can
    /// differ from `id + 1`).
    #[serde(skip)]
    pub line: usize,
    /// The text substituted for `{input}`.
    pub input: String,
    /// The gold answer (a label for classification).
    pub target: String,
    /// Every accepted answer (instruction-induction data); `[target]` when the file has none.
    pub targets: Vec<String>,
}

#[derive(Deserialize)]
struct Line {
    input: serde_json::Value,
    target: serde_json::Value,
    #[serde(default)]
    targets: Option<Vec<String>>,
}

/// A data line's `input` or `target` that is neither a string nor a number.
#[derive(Debug, thiserror::Error)]
#[error("\"{key}\" must be a string, found {found}")]
struct NotText {
    key: &'static str,
    found: serde_json::Value,
}

fn as_text(v: &serde_json::Value, key: &'static str) -> std::result::Result<String, NotText> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(NotText {
            key,
            found: other.clone(),
        }),
    }
}

/// Reads every example of a JSONL file. Blank lines are skipped; any other line that is not an
/// object with `input` and `target` is an error naming the file and line.
pub(crate) fn load_jsonl(path: &Path) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Jsonl {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let line: Line = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
        let input = as_text(&line.input, "input").map_err(|e| bad(e.to_string()))?;
        let target = as_text(&line.target, "target").map_err(|e| bad(e.to_string()))?;
        let targets = line
            .targets
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| vec![target.clone()]);
        out.push(Example {
            id: out.len(),
            line: line_no,
            input,
            target,
            targets,
        });
    }
    if out.is_empty() {
        return Err(Error::Jsonl {
            path: path.to_path_buf(),
            line: 1,
            message: "the file has no examples".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn reads_examples_and_skips_blank_lines() {
        let f = write("{\"input\": \"a\", \"target\": \"x\"}\n\n{\"input\": \"b\", \"target\": \"y\", \"targets\": [\"y\", \"z\"]}\n");
        let ex = load_jsonl(f.path()).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[1].id, 1);
        assert_eq!((ex[0].line, ex[1].line), (1, 3), "blank lines count");
        assert_eq!(ex[1].targets, vec!["y", "z"]);
        assert_eq!(ex[0].targets, vec!["x"]);
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let f = write("{\"input\": \"a\", \"target\": \"x\"}\n{\"input\": \"b\"\n");
        let err = load_jsonl(f.path()).unwrap_err().to_string();
        assert!(err.contains(":2: malformed JSONL line"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn missing_target_is_an_error() {
        let f = write("{\"input\": \"a\"}\n");
        assert!(load_jsonl(f.path())
            .unwrap_err()
            .to_string()
            .contains(":1:"));
    }
}
