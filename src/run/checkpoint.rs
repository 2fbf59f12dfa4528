//! `checkpoint.json`: where the search stood after its last finished generation. The evaluation
//! log stays the record that resume replays; the checkpoint tells the user where a run stopped and
//! catches a log that lost lines the checkpoint had already counted.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::folder::{RunFolder, CHECKPOINT_FILE};
use crate::error::Result;

/// Why `checkpoint.json` could not be used; resume reports it and carries on (the evaluation
/// log is the record).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file exists but could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying I/O error (in the message, not chained).
        error: std::io::Error,
    },
    /// The file is not a checkpoint (damaged, or written by something else).
    #[error("{} is not a promptevo checkpoint: {error}", path.display())]
    Parse {
        /// The checkpoint file.
        path: PathBuf,
        /// What the JSON parser reported (in the message, not chained).
        error: serde_json::Error,
    },
}

/// One member of the population at a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Candidate id.
    pub id: u64,
    /// Its dev fitness then.
    pub score: f64,
}

/// The state written after every finished generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The generation just finished (0: the initial population).
    pub generation: usize,
    /// The population after it, best first.
    pub population: Vec<Member>,
    /// Evaluation records logged so far (lines of `evaluations.jsonl`).
    pub candidates: usize,
    /// Forward passes of those records.
    pub forward_passes: usize,
    /// Example evaluations charged to the budget.
    pub evals_used: u64,
}

impl Checkpoint {
    /// Writes it atomically into `folder`.
    pub fn write(&self, folder: &RunFolder) -> Result<()> {
        folder.write_json(CHECKPOINT_FILE, self)
    }

    /// The checkpoint in `folder`: Ok(None) when there is none yet (a run killed in its first
    /// generation), an error naming the file when it cannot be read or parsed.
    pub fn read(folder: &RunFolder) -> std::result::Result<Option<Self>, CheckpointError> {
        let path = folder.file(CHECKPOINT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(CheckpointError::Read { path, error }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| CheckpointError::Parse { path, error })
    }

    /// What resume tells the user about this checkpoint, given the records the log still holds;
    /// the second part is a warning when the log holds fewer records than the checkpoint counted.
    pub fn describe(&self, logged: usize) -> (String, Option<String>) {
        let at = format!(
            "last checkpoint after generation {} ({} evaluation records, {} example evaluations charged)",
            self.generation, self.candidates, self.evals_used
        );
        let lost = (logged < self.candidates).then(|| {
            format!(
                "the evaluation log holds {logged} records but checkpoint.json counted {} at generation {}: {} were lost (a damaged or replaced log?); they will be scored again, so the run may not match an uninterrupted one",
                self.candidates,
                self.generation,
                self.candidates - logged
            )
        });
        (at, lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            generation: 3,
            population: vec![Member { id: 7, score: 0.5 }, Member { id: 2, score: 0.25 }],
            candidates: 40,
            forward_passes: 1200,
            evals_used: 1100,
        }
    }

    #[test]
    fn a_written_checkpoint_reads_back_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let folder = RunFolder::create(dir.path()).unwrap();
        assert_eq!(Checkpoint::read(&folder).unwrap(), None);
        checkpoint().write(&folder).unwrap();
        assert_eq!(Checkpoint::read(&folder).unwrap(), Some(checkpoint()));
    }

    #[test]
    fn a_malformed_checkpoint_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let folder = RunFolder::create(dir.path()).unwrap();
        std::fs::write(folder.file(CHECKPOINT_FILE), "{\"generation\": ").unwrap();
        let err = Checkpoint::read(&folder).unwrap_err().to_string();
        assert!(
            err.contains("checkpoint.json is not a promptevo checkpoint"),
            "{err}"
        );
    }

    #[test]
    fn a_log_shorter_than_the_checkpoint_is_warned_about() {
        let (at, lost) = checkpoint().describe(40);
        assert!(
            at.contains("generation 3") && at.contains("1100 example evaluations"),
            "{at}"
        );
        assert_eq!(lost, None);
        assert_eq!(checkpoint().describe(41).1, None);
        let lost = checkpoint().describe(25).1.unwrap();
        assert!(
            lost.contains("holds 25 records") && lost.contains("15 were lost"),
            "{lost}"
        );
    }
}
