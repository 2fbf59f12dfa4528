//! The append-only `evaluations.jsonl`: one line per scored candidate, flushed as it is written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::evolve::results::{ExampleResult, Pool};

/// One evaluation of one candidate, as logged: the examples it was scored on this time, each
/// with its result, and the candidate's totals on that pool so far.
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
    /// Which examples: dev (fitness), validation (the final choice) or train (error-driven
    /// probes); logs written before pools existed are all dev.
    #[serde(default = "dev_pool")]
    pub pool: Pool,
    /// Mean fitness over every example of `pool` this candidate has been scored on so far.
    #[serde(alias = "dev_score")]
    pub score: f64,
    /// Mean metric (accuracy) over the same examples.
    #[serde(default)]
    pub accuracy: f64,
    /// Macro-F1 over the same examples (generation: the mean metric).
    #[serde(alias = "dev_macro_f1")]
    pub macro_f1: f64,
    /// Examples of `pool` scored so far for this candidate.
    #[serde(alias = "dev_n")]
    pub n: usize,
    /// This evaluation's examples and their results (the per-example record resume and
    /// reports read back).
    #[serde(default)]
    pub results: Vec<ExampleResult>,
    /// Examples that needed a forward pass for this candidate (0 when served from cache).
    pub forward_passes: usize,
    /// Seconds spent scoring it.
    pub seconds: f64,
    /// Example evaluations charged to the search's budget once this evaluation was made (one
    /// per dev or train example a candidate is scored on, cached or not, each counted once;
    /// validation is not charged).
    #[serde(default)]
    pub evals_used: u64,
}

fn dev_pool() -> Pool {
    Pool::Dev
}

impl EvaluationRecord {
    /// Whether it is a dev (fitness) evaluation.
    pub fn is_dev(&self) -> bool {
        self.pool == Pool::Dev
    }
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
            pool: Pool::Dev,
            score: 0.5,
            accuracy: 0.5,
            macro_f1: 0.4,
            n: 1,
            results: vec![ExampleResult {
                example: 3,
                fitness: 0.1 + 0.2,
                metric: 1.0,
                predicted: "positive".into(),
            }],
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
    fn per_example_results_round_trip_exactly_and_old_logs_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.jsonl");
        let r = record(1, &[0], "demo-add");
        let mut log = EvaluationLog::open(&p).unwrap();
        log.append(std::slice::from_ref(&r)).unwrap();
        let back = EvaluationLog::read(&p).unwrap();
        // 0.1 + 0.2 is not a short decimal: it must come back bit for bit.
        assert_eq!(
            back[0].results[0].fitness.to_bits(),
            (0.1f64 + 0.2).to_bits()
        );
        assert_eq!(back, vec![r]);
        let old = r#"{"id":0,"generation":0,"parents":[],"operator":"initial","prompt":"P","dev_score":0.5,"dev_macro_f1":0.4,"dev_n":10,"forward_passes":10,"seconds":0.1}"#;
        std::fs::write(&p, format!("{old}\n")).unwrap();
        let back = EvaluationLog::read(&p).unwrap();
        assert_eq!(
            (back[0].pool, back[0].score, back[0].n),
            (Pool::Dev, 0.5, 10)
        );
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
