//! Peer arms: an external prompt optimiser (promptolution's CAPO, EvoPromptGA and OPRO, or
//! gepa) run by a Python driver (`experiments/peers/driver.py`) on the benchmark's task, model,
//! splits, seed and budget, its answer then scored by our own scorer on the same examples.
//!
//! A peer run's folder holds `config.json` (the run's settings, as every run's), `peer-job.json`
//! (what the driver was given), `peer.json` (the driver's answer), `peer.log` (its output) and,
//! once finished, `peer-result.json`. A peer that cannot run here (not installed, no GGUF model,
//! a generation task) gives a `skipped` result, retried by the next invocation; one that fails
//! while running gives a `failed` result, kept (delete the folder to redo it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::progress::{Event, Progress};
use crate::run::folder::{RunFolder, CONFIG_FILE};
use crate::run::ModelSettings;
use crate::score::Scorer;
use crate::task::{Split, Task};

/// The peers a `kind = "peer"` arm can name.
pub const PEER_NAMES: [&str; 4] = ["capo", "evoprompt-ga", "opro", "gepa"];

/// A finished peer run's result file.
pub const PEER_RESULT_FILE: &str = "peer-result.json";
/// What the driver is given.
const JOB_FILE: &str = "peer-job.json";
/// What the driver answers.
const ANSWER_FILE: &str = "peer.json";
/// The driver's standard output and error.
const LOG_FILE: &str = "peer.log";
/// Characters of the driver's output quoted when it fails without an answer.
const QUOTED_TAIL: usize = 600;

/// Where the peers' tools are (the benchmark file's `[peers]` table).
#[derive(Clone, Debug, PartialEq)]
pub struct PeerTools {
    /// The Python with the peers installed (`experiments/peers/install.sh` makes it).
    pub python: PathBuf,
    /// The driver script.
    pub driver: PathBuf,
    /// The llama.cpp server the driver starts on the benchmark's GGUF model (unused when the
    /// benchmark scores through a server: the peer then asks that server).
    pub llama_server: PathBuf,
    /// Threads of that server.
    pub threads: usize,
}

/// `[peers]` as written: paths given are taken against the benchmark file's folder, those left
/// out default to the repository's (relative to the current directory, the repository root).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeerTools {
    python: Option<PathBuf>,
    driver: Option<PathBuf>,
    llama_server: Option<PathBuf>,
    threads: Option<usize>,
}

/// Threads of the llama.cpp server a peer starts by default: 1, since on a shared machine more
/// threads than free cores make llama.cpp's spinning threads many times slower (measured here:
/// 30 prompt tokens in 0.5 s with 1 thread, 17 s with 2, under a load of 16 on 2 cores).
const DEFAULT_THREADS: usize = 1;

impl RawPeerTools {
    /// The tools, with the paths given taken against `dir` (the benchmark file's folder).
    pub(crate) fn resolve(self, dir: &Path) -> PeerTools {
        let path = |given: Option<PathBuf>, default: &str| {
            given.map_or_else(|| PathBuf::from(default), |p| dir.join(p))
        };
        PeerTools {
            python: path(self.python, "target/peers-venv/bin/python"),
            driver: path(self.driver, "experiments/peers/driver.py"),
            llama_server: path(
                self.llama_server,
                "target/llama-cpp-server/build/bin/llama-server",
            ),
            threads: self.threads.unwrap_or(DEFAULT_THREADS),
        }
    }
}

/// How a peer run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerStatus {
    /// It returned a prompt, scored by our scorer.
    Ok,
    /// It ran and failed (the reason quotes it); kept as the run's result.
    Failed,
    /// It could not run here (the reason says why and what to install); rerun next time.
    Skipped,
}

impl PeerStatus {
    /// Its name in `results.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// The driver's answer, `peer.json`.
#[derive(Debug, Deserialize)]
struct Answer {
    status: PeerStatus,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    best_prompt: Option<String>,
    #[serde(default)]
    peer_test_accuracy: Option<f64>,
    #[serde(default)]
    evals_used: u64,
    #[serde(default)]
    candidates: Option<usize>,
    #[serde(default)]
    search_seconds: f64,
    #[serde(default)]
    cpu_seconds: Option<f64>,
    #[serde(default)]
    peak_rss_mb: Option<f64>,
    #[serde(default)]
    settings: serde_json::Value,
    #[serde(default)]
    errors: Vec<String>,
}

/// A finished peer run, `peer-result.json`: the peer's answer scored by our scorer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerResult {
    /// The peer (one of [`PEER_NAMES`]).
    pub peer: String,
    /// How it ended.
    pub status: PeerStatus,
    /// Why it failed or was skipped (quoting the peer).
    pub reason: Option<String>,
    /// Its answer: the prompt it returned.
    pub prompt: Option<String>,
    /// Our dev accuracy of the task's first initial prompt (first `dev_limit` examples).
    pub initial_dev: f64,
    /// Our test accuracy of the task's first initial prompt (first `test_limit` examples).
    pub initial_test: f64,
    /// Our dev accuracy of its answer (None without one).
    pub best_dev: Option<f64>,
    /// Our test accuracy of its answer, as `promptevo eval` scores it (None without one).
    pub best_test: Option<f64>,
    /// The peer's own accuracy of its answer on the same test examples, its own way.
    pub peer_test: Option<f64>,
    /// Example evaluations of the downstream model during its search.
    pub evals_used: u64,
    /// Distinct prompts it evaluated.
    pub candidates: usize,
    /// Wall seconds of its search.
    pub search_seconds: f64,
    /// CPU seconds of its search: the driver and the llama.cpp server it started.
    pub cpu_seconds: Option<f64>,
    /// Peak resident memory (MB) of the driver plus that of its server.
    pub peak_rss_mb: Option<f64>,
    /// Every setting the peer ran with, as the driver records them.
    pub settings: serde_json::Value,
    /// Errors the peer logged and carried on past.
    pub errors: Vec<String>,
}

/// The job file the driver reads.
#[derive(Serialize)]
struct Job<'a> {
    peer: &'a str,
    task: &'a str,
    description: &'a str,
    labels: &'a [String],
    template: String,
    initial_prompts: &'a [String],
    dev: Vec<JobExample<'a>>,
    validation: Vec<JobExample<'a>>,
    test: Vec<JobExample<'a>>,
    budget: u64,
    seed: u64,
    model: Option<PathBuf>,
    server_url: Option<String>,
    llama_server: PathBuf,
    threads: usize,
    out: PathBuf,
}

#[derive(Serialize)]
struct JobExample<'a> {
    input: &'a str,
    target: &'a str,
}

fn examples(task: &Task, split: Split, limit: usize) -> Vec<JobExample<'_>> {
    task.examples(split)
        .iter()
        .take(limit)
        .map(|e| JobExample {
            input: &e.input,
            target: &e.target,
        })
        .collect()
}

/// What a peer run needs to know of its benchmark run.
pub(crate) struct PeerRun<'a> {
    /// The peer.
    pub peer: &'a str,
    /// The run's task.
    pub task: &'a Task,
    /// The run's settings (seed, limits, budget, initial prompts).
    pub settings: &'a crate::run::RunSettings,
    /// The model the benchmark scores with.
    pub model: &'a ModelSettings,
    /// Where the tools are.
    pub tools: &'a PeerTools,
    /// The run folder.
    pub dir: &'a Path,
}

/// Why the peer cannot run here, if it cannot (checked before the driver is started).
fn cannot_run(run: &PeerRun<'_>) -> Option<String> {
    let tools = run.tools;
    if run.task.is_generation() {
        return Some(format!(
            "the peers take classification tasks only; task `{}` is a generation task",
            run.task.name
        ));
    }
    if !tools.python.is_file() {
        return Some(format!(
            "no peer Python at {}; run experiments/peers/install.sh (installs promptolution 2.3.0 and gepa 0.1.4 into target/peers-venv)",
            tools.python.display()
        ));
    }
    if !tools.driver.is_file() {
        return Some(format!(
            "no peer driver at {}; set [peers] driver in the benchmark file",
            tools.driver.display()
        ));
    }
    if run.model.server.is_none() {
        let gguf = run
            .model
            .model
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if !gguf {
            return Some(format!(
                "the peers ask a llama.cpp server, which needs a GGUF model; {} is not one (score the benchmark with a .gguf file or through a server)",
                run.model.model.display()
            ));
        }
        if !tools.llama_server.is_file() {
            return Some(format!(
                "no llama.cpp server at {}; build one, or set [peers] llama_server in the benchmark file",
                tools.llama_server.display()
            ));
        }
    }
    None
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Runs the driver and returns its answer (a `failed` one, quoting its output, when it wrote
/// none).
fn drive(run: &PeerRun<'_>, folder: &RunFolder) -> Result<Answer> {
    let task = run.task;
    let s = run.settings;
    let initial = match s.max_initial_prompts {
        Some(n) => &task.initial_prompts[..n.min(task.initial_prompts.len())],
        None => &task.initial_prompts[..],
    };
    let job = Job {
        peer: run.peer,
        task: &task.name,
        description: &task.description,
        labels: task.labels(),
        template: task.template.as_str().to_string(),
        initial_prompts: initial,
        dev: examples(task, Split::Dev, s.dev_limit),
        validation: examples(task, Split::Validation, s.validation_limit),
        test: examples(task, Split::Test, s.test_limit),
        budget: s.search.max_evals.unwrap_or(0),
        seed: s.seed,
        model: run
            .model
            .server
            .is_none()
            .then(|| absolute(&run.model.model)),
        server_url: run
            .model
            .server
            .as_ref()
            .and_then(|c| c.url.split(',').next().map(|u| u.trim().to_string())),
        llama_server: absolute(&run.tools.llama_server),
        threads: run.tools.threads,
        out: absolute(run.dir),
    };
    folder.write_json(JOB_FILE, &job)?;
    let answer_path = folder.file(ANSWER_FILE);
    let _ = std::fs::remove_file(&answer_path);
    let log_path = folder.file(LOG_FILE);
    let log = std::fs::File::create(&log_path).map_err(|e| Error::write(&log_path, e))?;
    let err_log = log.try_clone().map_err(|e| Error::write(&log_path, e))?;
    let status = Command::new(&run.tools.python)
        .arg(absolute(&run.tools.driver))
        .arg(folder.file(JOB_FILE))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .status();
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return Ok(Answer::without(
                PeerStatus::Skipped,
                format!("cannot start {}: {e}", run.tools.python.display()),
            ))
        }
    };
    if answer_path.is_file() {
        let text =
            std::fs::read_to_string(&answer_path).map_err(|e| Error::read(&answer_path, e))?;
        return serde_json::from_str(&text).map_err(|e| Error::Bench {
            path: answer_path.clone(),
            message: format!(
                "is not a peer answer ({e}); fix the driver, delete the run folder and rerun"
            ),
        });
    }
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail: String = {
        let chars: Vec<char> = output.trim().chars().collect();
        chars[chars.len().saturating_sub(QUOTED_TAIL)..]
            .iter()
            .collect()
    };
    Ok(Answer::without(
        PeerStatus::Failed,
        format!(
            "the driver exited ({status}) without an answer: {}",
            tail.replace('\n', " | ")
        ),
    ))
}

impl Answer {
    fn without(status: PeerStatus, reason: String) -> Self {
        Self {
            status,
            reason: Some(reason),
            best_prompt: None,
            peer_test_accuracy: None,
            evals_used: 0,
            candidates: None,
            search_seconds: 0.0,
            cpu_seconds: None,
            peak_rss_mb: None,
            settings: serde_json::Value::Null,
            errors: Vec::new(),
        }
    }
}

/// Runs a peer into its run folder (which the caller has locked) and scores its answer with
/// `scorer`; writes and returns its result. The task's first initial prompt is scored too, so
/// the row compares with the other arms'.
pub(crate) fn run(
    run: &PeerRun<'_>,
    scorer: &mut Scorer<'_>,
    progress: &dyn Progress,
) -> Result<PeerResult> {
    let folder = RunFolder::at(run.dir)?;
    folder.write_json(CONFIG_FILE, run.settings)?;
    let start = Instant::now();
    let answer = match cannot_run(run) {
        Some(reason) => Answer::without(PeerStatus::Skipped, reason),
        None => {
            progress.event(&Event::PeerStarted {
                peer: run.peer,
                task: &run.task.name,
                seed: run.settings.seed,
                driver: &run.tools.driver,
            });
            drive(run, &folder)?
        }
    };
    let s = run.settings;
    let first = run
        .task
        .initial_prompts
        .first()
        .ok_or_else(|| Error::Internal("the task has no initial prompt".into()))?;
    let mut dev = |p: &str| scorer.evaluate(p, Split::Dev, Some(s.dev_limit), false);
    let initial_dev = dev(first)?.accuracy;
    let best_dev = match (&answer.status, &answer.best_prompt) {
        (PeerStatus::Ok, Some(p)) => Some(dev(p)?.accuracy),
        _ => None,
    };
    let mut test = |p: &str| scorer.evaluate(p, Split::Test, Some(s.test_limit), false);
    let initial_test = test(first)?.accuracy;
    let best_test = match (&answer.status, &answer.best_prompt) {
        (PeerStatus::Ok, Some(p)) => Some(test(p)?.accuracy),
        _ => None,
    };
    let status = match (answer.status, &answer.best_prompt) {
        (PeerStatus::Ok, None) => PeerStatus::Failed,
        (s, _) => s,
    };
    let reason = match (answer.status, &answer.best_prompt) {
        (PeerStatus::Ok, None) => Some("the driver reported success but no prompt".into()),
        _ => answer.reason,
    };
    let result = PeerResult {
        peer: run.peer.to_string(),
        status,
        reason,
        prompt: answer.best_prompt,
        initial_dev,
        initial_test,
        best_dev,
        best_test,
        peer_test: answer.peer_test_accuracy,
        evals_used: answer.evals_used,
        candidates: answer.candidates.unwrap_or(0),
        search_seconds: if answer.search_seconds > 0.0 {
            answer.search_seconds
        } else {
            start.elapsed().as_secs_f64()
        },
        cpu_seconds: answer.cpu_seconds,
        peak_rss_mb: answer.peak_rss_mb,
        settings: answer.settings,
        errors: answer.errors,
    };
    folder.write_json(PEER_RESULT_FILE, &result)?;
    Ok(result)
}

/// Reads a peer run's result file (in the run folder `dir`).
pub fn read(dir: &Path) -> Result<PeerResult> {
    let path = dir.join(PEER_RESULT_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::read(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Bench {
        path: path.clone(),
        message: format!("is not a peer result ({e}); delete it to redo the run"),
    })
}
