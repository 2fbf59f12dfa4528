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
/// A finished run's result (the report's figures) file name.
pub const RESULT_FILE: &str = "result.json";
/// The readable report's file name.
pub const REPORT_FILE: &str = "report.md";
/// The per-generation checkpoint's file name.
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint.json";
/// The lock file's name.
pub(crate) const LOCK_FILE: &str = ".lock";

/// Holds a run folder's lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

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

    /// Creates `root` if needed and names it, whatever it holds: for callers that take the
    /// lock before deciding whether the run there is new, half-finished or finished.
    pub fn at(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::write(root, e))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Opens the folder of an existing run (for `resume`).
    pub fn open(root: &Path) -> Result<Self> {
        for f in [CONFIG_FILE, EVALUATIONS_FILE] {
            if !root.join(f).is_file() {
                return Err(Error::Run { path: root.to_path_buf(), message: format!("is not a run folder ({f} is missing); give the folder an `optimize` run wrote") });
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Takes the folder's lock file, so that two processes never write the same run. A lock left
    /// by a process that no longer exists is taken over.
    pub fn lock(&self) -> Result<RunLock> {
        let path = self.file(LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    writeln!(f, "{}", std::process::id()).map_err(|e| Error::write(&path, e))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path)
                        .unwrap_or_default()
                        .trim()
                        .parse::<u32>()
                        .ok();
                    match holder {
                        Some(pid)
                            if Path::new(&format!("/proc/{pid}")).exists()
                                || !Path::new("/proc/self").exists() =>
                        {
                            return Err(Error::Run {
                                path: self.root.clone(),
                                message: format!("another promptevo (pid {pid}) is writing to this run folder; wait for it to finish or stop it (if it is gone, delete {LOCK_FILE})"),
                            });
                        }
                        _ => std::fs::remove_file(&path).map_err(|e| Error::write(&path, e))?,
                    }
                }
                Err(e) => return Err(Error::write(&path, e)),
            }
        }
        Err(Error::Run {
            path: self.root.clone(),
            message: format!("cannot take {LOCK_FILE}; delete it if no promptevo is running"),
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

    /// Writes a file atomically (temporary file, fsync, then rename), so a crash never leaves half
    /// of it.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<()> {
        let path = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(contents)?;
            f.sync_all()
        };
        // A failed write (a full disk) leaves the old file as it was and no temporary behind,
        // and the error names the file the user knows.
        write()
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::write(&path, e)
            })
    }

    /// Reads a JSON file of the folder: None when it does not exist; an error naming the file,
    /// `what` it should be and `fix` when it cannot be read or parsed.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        what: &str,
        fix: &str,
    ) -> Result<Option<T>> {
        let path = self.file(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::read(&path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Run {
                path,
                message: format!("is not {what} ({e}); {fix}"),
            })
    }

    /// [`RunFolder::read_json`] of a file the folder must hold: its absence is a read error
    /// naming it.
    pub fn require_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        what: &str,
        fix: &str,
    ) -> Result<T> {
        self.read_json(name, what, fix)?
            .ok_or_else(|| Error::read(self.file(name), std::io::ErrorKind::NotFound.into()))
    }

    /// Writes a value as pretty JSON.
    pub fn write_json<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let text = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::write(self.file(name), std::io::Error::other(e)))?;
        self.write(name, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_and_a_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let folder = RunFolder::create(dir.path()).unwrap();
        let held = folder.lock().unwrap();
        let err = folder.lock().unwrap_err().to_string();
        assert!(err.contains("another promptevo"), "{err}");
        drop(held);
        let again = folder.lock().unwrap();
        drop(again);
        // A lock naming a process that does not exist is stale.
        std::fs::write(dir.path().join(LOCK_FILE), "4000000000\n").unwrap();
        assert!(folder.lock().is_ok());
    }
}
