//! The append-only `evaluations.jsonl`: one line per scored candidate, flushed as it is written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One candidate's evaluation, as logged.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EvaluationRecord {
    /// Candidate id (proposal order).
    pub id: u64,
    /// Generation it was proposed in (0 = initial population).
    pub generation: usize,
    /// Parent candidate ids.
    pub parents: Vec<u64>,
    /// Operator that made it ("initial" for the task's prompts).
    pub operator: String,
    /// The prompt text.
    pub prompt: String,
    /// Dev score (accuracy) used as fitness.
    pub dev_score: f64,
    /// Dev macro-F1.
    pub dev_macro_f1: f64,
    /// Dev examples scored.
    pub dev_n: usize,
    /// Examples that needed a forward pass for this candidate (0 when served from cache).
    pub forward_passes: usize,
    /// Seconds spent scoring it.
    pub seconds: f64,
    /// Example forward passes charged to the search's budget once this evaluation was made
    /// (one per dev example a candidate is scored on, cached or not; a raced candidate that is
    /// scored again on more examples is charged only the new ones).
    #[serde(default)]
    pub evals_used: u64,
}

/// Appends records to a run's log.
pub struct EvaluationLog {
    path: PathBuf,
    file: File,
}

impl EvaluationLog {
    /// Opens (creating if needed) the log for appending.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::write(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends records and flushes them to the OS.
    pub fn append(&mut self, records: &[EvaluationRecord]) -> Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r)
                .map_err(|e| Error::write(&self.path, std::io::Error::other(e)))?;
            buf.push(b'\n');
        }
        self.file
            .write_all(&buf)
            .map_err(|e| Error::write(&self.path, e))?;
        self.file.flush().map_err(|e| Error::write(&self.path, e))
    }

    /// Reads a log after a crash: a half-written last line (no trailing newline, not valid JSON)
    /// is cut off the file and reported; any other bad line is an error.
    pub fn recover(path: &Path) -> Result<(Vec<EvaluationRecord>, bool)> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        let complete = match text.rfind('\n') {
            Some(i) => i + 1,
            None => 0,
        };
        let tail = &text[complete..];
        let dropped =
            !tail.trim().is_empty() && serde_json::from_str::<EvaluationRecord>(tail).is_err();
        if dropped || tail.trim().is_empty() && complete < text.len() {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::write(path, e))?;
            f.set_len(complete as u64)
                .map_err(|e| Error::write(path, e))?;
        }
        let keep = if dropped {
            &text[..complete]
        } else {
            &text[..]
        };
        Ok((parse(path, keep)?, dropped))
    }

    /// Reads every record of a log.
    pub fn read(path: &Path) -> Result<Vec<EvaluationRecord>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        parse(path, &text)
    }
}

/// Parses the non-blank lines of a log's text, naming the file and line of any bad one.
fn parse(path: &Path, text: &str) -> Result<Vec<EvaluationRecord>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Line {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("malformed evaluation record: {e}; this log was not written by promptevo or was edited: restore it, or start a new run"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, parents: &[u64], operator: &str) -> EvaluationRecord {
        EvaluationRecord {
            id,
            generation: usize::from(!parents.is_empty()),
            parents: parents.to_vec(),
            operator: operator.into(),
            prompt: "Say it.".into(),
            dev_score: 0.5,
            dev_macro_f1: 0.4,
            dev_n: 10,
            forward_passes: 10,
            seconds: 0.1,
            evals_used: 0,
        }
    }

    #[test]
    fn a_half_written_last_line_is_dropped_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.jsonl");
        let r = record(0, &[], "initial");
        let line = serde_json::to_string(&r).unwrap();
        std::fs::write(&p, format!("{line}\n{}", &line[..line.len() / 2])).unwrap();
        let (records, dropped) = EvaluationLog::recover(&p).unwrap();
        assert!(dropped);
        assert_eq!(records, vec![r]);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{line}\n"));
        // A malformed line in the middle is not a crash artefact: it is an error.
        std::fs::write(&p, format!("{{oops\n{line}\n")).unwrap();
        assert!(EvaluationLog::recover(&p)
            .unwrap_err()
            .to_string()
            .contains(":1:"));
    }

    #[test]
    fn appended_records_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.jsonl");
        let r = record(3, &[0, 2], "crossover");
        let mut log = EvaluationLog::open(&p).unwrap();
        log.append(std::slice::from_ref(&r)).unwrap();
        log.append(std::slice::from_ref(&r)).unwrap();
        assert_eq!(EvaluationLog::read(&p).unwrap(), vec![r.clone(), r]);
    }
}
