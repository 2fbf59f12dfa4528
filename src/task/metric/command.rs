//! `command`: an external scorer the user names. Each batch of answers is one run of the
//! command, from the task file's folder: it reads one JSON line `{"input", "output", "targets"}`
//! per answer on stdin and writes one number in [0, 1] per line on stdout, in order.
//! A timeout (the child is killed), a non-zero exit, a line that is not such a number or a
//! wrong count is an error naming the command, never a silent zero.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::common::{Answer, Metric, MetricError, Params, Scored};

/// Seconds a scorer run may take when the task file says nothing: generous for a script that
/// scores a batch of short answers, short enough that a hung scorer is noticed.
const DEFAULT_TIMEOUT_SECONDS: f64 = 60.0;

/// How often a running scorer is checked for having exited.
const POLL: Duration = Duration::from_millis(5);

/// Characters of the scorer's stderr quoted in an error (its last line, cut to this).
const STDERR_SHOWN: usize = 200;

/// An external scorer; fitness = score.
#[derive(Debug)]
struct External {
    /// The command as the task file wrote it (for messages).
    shown: String,
    /// The program: a path inside the task folder when it names one, else a name on PATH.
    program: PathBuf,
    args: Vec<String>,
    folder: PathBuf,
    timeout: Duration,
}

/// The `command` metric: `command` (required: program and arguments, run from the task file's
/// folder) and `timeout_seconds` (default 60).
pub fn new(p: &mut Params<'_>) -> Result<Box<dyn Metric>, MetricError> {
    let command = p.strings("command")?.unwrap_or_default();
    let Some((program, args)) = command.split_first() else {
        return Err(p.bad(
            "command",
            "is missing or empty: add e.g. command = [\"python3\", \"score.py\"] to the [metric] table",
        ));
    };
    let timeout = p
        .float("timeout_seconds")?
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if !(timeout > 0.0 && timeout.is_finite()) {
        return Err(p.bad(
            "timeout_seconds",
            "must be a number of seconds above 0, e.g. 60",
        ));
    }
    let folder = p.folder().to_path_buf();
    let program = match find_program(program, &folder) {
        Some(found) => found,
        None => {
            return Err(p.bad(
                "command",
                format!(
                    "program {program:?} not found ({}): install it or fix the command",
                    if program.contains('/') {
                        format!("looked in {}", folder.display())
                    } else {
                        "not on PATH".to_string()
                    }
                ),
            ))
        }
    };
    Ok(Box::new(External {
        shown: command.join(" "),
        program,
        args: args.to_vec(),
        folder,
        timeout: Duration::from_secs_f64(timeout),
    }))
}

/// The program to run: a name with a `/` is a path relative to the task folder (it must
/// exist); a bare name must be found on PATH.
fn find_program(program: &str, folder: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        let path = folder.join(program);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .any(|candidate| candidate.is_file())
        .then(|| PathBuf::from(program))
}

/// Reads a pipe to its end on a thread; the result arrives on the returned channel.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

impl External {
    fn fail(&self, message: impl Into<String>) -> MetricError {
        MetricError::Command {
            command: self.shown.clone(),
            message: message.into(),
        }
    }

    /// Runs the scorer on `input` (JSON lines) and returns its stdout.
    fn run(&self, input: Vec<u8>) -> Result<String, MetricError> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.folder)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                self.fail(format!(
                    "cannot start it from {}: {e}; fix `[metric] command`",
                    self.folder.display()
                ))
            })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(self.fail("its standard streams could not be opened"));
        };
        // Written on a thread: a scorer that answers before reading all input cannot deadlock
        // with us. A scorer that stops reading ends the write early (a broken pipe); its
        // output count then tells what happened.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = drain(stdout);
        let err = drain(stderr);
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.fail(format!(
                        "timed out after {} s and was stopped; make it faster or raise `[metric] timeout_seconds`",
                        self.timeout.as_secs_f64()
                    )));
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.fail(format!("cannot wait for it: {e}")));
                }
            }
        };
        let _ = writer.join();
        // The pipes close when the scorer exits (unless it left a child holding them): wait
        // for the rest of the output no longer than the time left.
        let left = deadline.saturating_duration_since(Instant::now()) + POLL;
        let stdout = out.recv_timeout(left).unwrap_or_default();
        let stderr = err.recv_timeout(POLL * 20).unwrap_or_default();
        if !status.success() {
            let stderr = String::from_utf8_lossy(&stderr);
            let last: String = stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("")
                .chars()
                .take(STDERR_SHOWN)
                .collect();
            return Err(self.fail(format!(
                "failed ({status}){}; fix the scorer (it must exit 0 after writing one number per input line)",
                if last.is_empty() {
                    String::new()
                } else {
                    format!(", its last error line: {last}")
                }
            )));
        }
        String::from_utf8(stdout).map_err(|_| self.fail("wrote output that is not UTF-8"))
    }
}

impl Metric for External {
    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        let mut input = Vec::new();
        for a in answers {
            let line = serde_json::json!({
                "input": a.input,
                "output": a.output,
                "targets": a.targets,
            });
            input.extend_from_slice(line.to_string().as_bytes());
            input.push(b'\n');
        }
        let stdout = self.run(input)?;
        let lines: Vec<&str> = stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.len() != answers.len() {
            return Err(self.fail(format!(
                "wrote {} scores for {} answers; it must write exactly one number per input line",
                lines.len(),
                answers.len()
            )));
        }
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| match line.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => Ok(Scored::plain(x)),
                _ => {
                    let shown: String = line.chars().take(80).collect();
                    Err(self.fail(format!(
                        "output line {} is {shown:?}, not a number in [0, 1]; fix the scorer",
                        i + 1
                    )))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::metric::MetricSpec;

    /// A `command` metric running `script` with `sh` in a temp folder.
    fn sh(script: &str, timeout: f64) -> (tempfile::TempDir, MetricSpec) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("score.sh"), script).unwrap();
        let params: toml::Table = toml::from_str(&format!(
            "command = [\"sh\", \"score.sh\"]\ntimeout_seconds = {timeout}"
        ))
        .unwrap();
        let spec = MetricSpec::new("command", params, dir.path()).unwrap();
        (dir, spec)
    }

    fn answers<'a>(targets: &'a [String]) -> Vec<Answer<'a>> {
        vec![
            Answer {
                input: "in 1",
                output: "out \"1\"",
                targets,
            },
            Answer {
                input: "in 2",
                output: "out 2",
                targets,
            },
        ]
    }

    #[test]
    fn scores_come_back_in_order_from_the_task_folder() {
        // Scores 1 for a line mentioning "out 2", else 0.25; reads a file beside it.
        let (dir, spec) = sh(
            "cat weight >/dev/null; while read -r l; do case \"$l\" in *'out 2'*) echo 1;; *) echo 0.25;; esac; done\n",
            10.0,
        );
        std::fs::write(dir.path().join("weight"), "x").unwrap();
        let targets = vec!["t".to_string()];
        let got = spec.score(&answers(&targets)).unwrap();
        assert_eq!(got, vec![Scored::plain(0.25), Scored::plain(1.0)]);
    }

    #[test]
    fn every_failure_is_an_error_naming_the_command() {
        let targets = vec!["t".to_string()];
        for (script, needle) in [
            ("cat >/dev/null; echo 1\n", "wrote 1 scores for 2"),
            ("cat >/dev/null; echo 1; echo yes\n", "\"yes\""),
            (
                "cat >/dev/null; echo 1; echo 1.5\n",
                "not a number in [0, 1]",
            ),
            ("echo oops >&2; exit 3\n", "oops"),
        ] {
            let (_dir, spec) = sh(script, 10.0);
            let e = spec.score(&answers(&targets)).unwrap_err().to_string();
            assert!(
                e.contains("sh score.sh") && e.contains(needle),
                "{script}: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_hung_scorer_is_stopped_at_the_timeout() {
        let (_dir, spec) = sh("sleep 30\n", 0.3);
        let targets = vec!["t".to_string()];
        let start = Instant::now();
        let e = spec.score(&answers(&targets)).unwrap_err().to_string();
        assert!(e.contains("timed out"), "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_missing_program_is_a_config_error() {
        let params: toml::Table =
            toml::from_str("command = [\"no-such-scorer-here\", \"x\"]").unwrap();
        let e = MetricSpec::new("command", params, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no-such-scorer-here") && e.contains("not found"),
            "{e}"
        );
        let params: toml::Table = toml::from_str("command = [\"./missing.py\"]").unwrap();
        let e = MetricSpec::new("command", params, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.py") && e.contains("not found"), "{e}");
        let e = MetricSpec::new("command", toml::Table::new(), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("command") && e.contains("missing"), "{e}");
    }
}
