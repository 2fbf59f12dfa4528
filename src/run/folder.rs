//! Creates a run folder up front (so a bad path fails before minutes of work) and writes its files.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The folder one optimisation run writes to.
#[derive(Clone, Debug)]
pub struct RunFolder {
    root: PathBuf,
}

/// The evaluation log's file name.
pub const EVALUATIONS_FILE: &str = "evaluations.jsonl";
/// The resolved configuration's file name.
pub const CONFIG_FILE: &str = "config.json";

impl RunFolder {
    /// Creates `root` (and parents). Refuses a folder that already holds a run's log, so that no
    /// completed work is overwritten.
    pub fn create(root: &Path) -> Result<Self> {
        if root.join(EVALUATIONS_FILE).exists() {
            return Err(Error::Run {
                path: root.to_path_buf(),
                message: format!("already holds a run ({EVALUATIONS_FILE} exists); choose another --out folder or delete this one"),
            });
        }
        std::fs::create_dir_all(root).map_err(|e| Error::write(root, e))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file inside the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Writes a file atomically (temporary file, then rename), so a crash never leaves half of it.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<()> {
        let path = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).map_err(|e| Error::write(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::write(&path, e))
    }

    /// Writes a value as pretty JSON.
    pub fn write_json<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let text = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::write(self.file(name), std::io::Error::other(e)))?;
        self.write(name, &text)
    }
}
