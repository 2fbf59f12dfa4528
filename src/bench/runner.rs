//! Runs every arm x task x seed of a benchmark with one opened backend (a model loaded once, or
//! an inference server), one scorer per task, and ordinary run folders; finished runs are
//! skipped and half-finished ones resumed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::BenchConfig;
use super::peer::{self, PeerResult, PeerRun, PeerStatus, PEER_RESULT_FILE};
use super::shard::Shard;
use crate::error::{Error, Result};
use crate::evolve::{PhrasePool, TextGenerator};
use crate::progress::{Event, Progress};
use crate::run::folder::{RunFolder, CONFIG_FILE, EVALUATIONS_FILE, RESULT_FILE};
use crate::run::session::BACKEND_FILE;
use crate::run::{analysis, execute, Backends, EvaluationLog, ModelSettings, Report, RunSettings};
use crate::score::{BackendInfo, Scorer};
use crate::task::Task;

/// Share of a run's final best dev score at which `evals_to_95` is read off.
pub(crate) const CONVERGED_FRACTION: f64 = 0.95;

/// One run's row of `results.csv` / `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunRow {
    /// Arm name.
    pub arm: String,
    /// The arm's strategy.
    pub strategy: String,
    /// Task name.
    pub task: String,
    /// Seed.
    pub seed: u64,
    /// Dev accuracy of the task's first initial prompt.
    pub initial_dev: f64,
    /// Test accuracy of the task's first initial prompt.
    pub initial_test: f64,
    /// Dev accuracy of the best prompt.
    pub best_dev: f64,
    /// Test accuracy of the best prompt.
    pub best_test: f64,
    /// Example evaluations charged to the budget.
    pub evals_used: u64,
    /// Candidates evaluated.
    pub candidates: usize,
    /// Wall-clock seconds of the search (result.json's `search_seconds`; the final test scoring
    /// is not included).
    pub seconds: f64,
    /// Example evaluations spent when the best full-dev score so far first reached 95% of the
    /// run's final best.
    pub evals_to_95: u64,
    /// `ok`; of a peer arm also `failed` or `skipped` (then `best_dev` and `best_test` are NaN,
    /// and the row is left out of every statistic).
    #[serde(default = "ok")]
    pub status: String,
    /// CPU seconds of the search: ours (every thread; of a resumed run, the part after the
    /// resume; none for runs made before 2026-12-03's change), or a peer's driver and the
    /// llama.cpp server it started.
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// Peak resident memory (MB) during the search: the bench process's (the model loaded
    /// once included), or a peer's driver plus its server.
    #[serde(default)]
    pub peak_rss_mb: Option<f64>,
    /// A peer's own test accuracy of its answer (its own way of scoring, same examples).
    #[serde(default)]
    pub peer_test: Option<f64>,
    /// Why a peer failed or was skipped.
    #[serde(default)]
    pub note: Option<String>,
}

fn ok() -> String {
    "ok".into()
}

impl RunRow {
    /// Whether the run has an answer scored by us (every search run; a peer that ran).
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }

    /// Whether the run is a peer's that could not install or start: shown, not finished, and
    /// retried by the next invocation.
    pub fn is_skipped(&self) -> bool {
        self.status == PeerStatus::Skipped.name()
    }
}

/// A run's row and its convergence curve.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The row.
    pub row: RunRow,
    /// (example evaluations charged, best full-dev score so far) after each logged evaluation.
    pub curve: Vec<(u64, f64)>,
    /// How a server scored it (its report's backend section; None in process).
    pub backend: Option<BackendInfo>,
}

/// How a run was brought to its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunState {
    /// It had finished in an earlier invocation; its result was read back.
    Finished,
    /// It had started; its logged evaluations were replayed and it was finished.
    Resumed,
    /// It was run from scratch.
    Fresh,
}

/// Example evaluations at which `curve` first reached `fraction` of its final best (0 for an
/// empty curve).
pub(crate) fn evals_to_fraction(curve: &[(u64, f64)], fraction: f64) -> u64 {
    let Some(&(_, last)) = curve.last() else {
        return 0;
    };
    let threshold = fraction * last - 1e-12;
    curve
        .iter()
        .find(|(_, best)| *best >= threshold)
        .map_or(0, |p| p.0)
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A run's folder inside the benchmark's output folder.
pub fn run_dir(out: &Path, arm: &str, task: &str, seed: u64) -> PathBuf {
    out.join("runs")
        .join(arm)
        .join(task)
        .join(format!("seed{seed}"))
}

/// Settings as JSON without the version and with files reduced to their names, for comparing
/// a folder's config.json with the benchmark. Of a server, what answers is compared (its URL
/// and served model), not how it is asked: concurrency, timeout and attempts change no figure,
/// and a rerun after an outage may retry harder. `served_model` false drops the served model too (a merge not told it with
/// `--server-model`; the runs are then checked to agree with each other). A `peer`'s run drops
/// our search strategy, which a peer never uses (its settings record the default strategy of
/// the promptevo that wrote them).
fn comparable(settings: &serde_json::Value, served_model: bool, peer: bool) -> serde_json::Value {
    let mut v = settings.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("version");
        if peer {
            if let Some(search) = o
                .get_mut("search")
                .and_then(serde_json::Value::as_object_mut)
            {
                search.remove("strategy");
            }
        }
        // Files are compared by name, not by where the checkout was: a benchmark folder made in
        // one checkout is merged or resumed in another (task names are distinct in a benchmark,
        // and a model file's name says which model it is). A server's URL is kept whole.
        let mut files = vec!["task", "pool"];
        if !o.contains_key("server") {
            files.push("model");
        }
        if !o.contains_key("mutator_server") {
            files.push("mutator_model");
        }
        for key in files {
            if let Some(serde_json::Value::String(path)) = o.get(key) {
                let name = Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.clone());
                o.insert(key.to_string(), serde_json::Value::String(name));
            }
        }
        for key in ["server", "mutator_server"] {
            if let Some(server) = o.get_mut(key).and_then(serde_json::Value::as_object_mut) {
                for how in ["concurrency", "timeout_s", "attempts"] {
                    server.remove(how);
                }
                if !served_model {
                    server.remove("model");
                }
            }
        }
    }
    v
}

/// Fails unless the run folder's config.json records `settings` (so a changed benchmark file
/// never mixes old and new runs). A `peer`'s run is compared without our search strategy, so a
/// change of the default does not orphan the peers' finished runs.
fn check_settings(folder: &RunFolder, settings: &RunSettings, peer: bool) -> Result<()> {
    let path = folder.file(CONFIG_FILE);
    let stored: serde_json::Value = folder.require_json(
        CONFIG_FILE,
        "a run configuration",
        "delete the run folder to redo it",
    )?;
    let want = serde_json::to_value(settings)
        .map_err(|e| Error::write(&path, std::io::Error::other(e)))?;
    let served_model = settings.server.as_ref().is_none_or(|s| s.model.is_some());
    if comparable(&stored, served_model, peer) != comparable(&want, served_model, peer) {
        return Err(Error::Bench {
            path,
            message: "was written with other settings (benchmark file, model or flags changed); restore them, delete this run folder, or pass another --out".into(),
        });
    }
    Ok(())
}

/// Loads the tasks of a benchmark and checks their names are distinct (the cap on initial
/// prompts is applied by each run, from its settings).
pub fn load_tasks(config: &BenchConfig) -> Result<Vec<Task>> {
    let mut tasks: Vec<Task> = Vec::new();
    for path in &config.tasks {
        let task = Task::load(path)?;
        if tasks.iter().any(|t| t.name == task.name) {
            return Err(Error::Bench {
                path: config.path.clone(),
                message: format!("two tasks are named `{}`; list each task once", task.name),
            });
        }
        tasks.push(task);
    }
    Ok(tasks)
}

/// One run of the grid, before it is run.
#[derive(Clone, Debug)]
pub(crate) struct PlannedRun {
    /// Its position in run order (seed, task, arm), 0-based; shards split on it.
    pub index: usize,
    /// Index of its arm in the benchmark file.
    pub arm: usize,
    /// Index of its task in the benchmark file.
    pub task: usize,
    /// Its seed.
    pub seed: u64,
    /// The settings its config.json records.
    pub settings: RunSettings,
    /// Its run folder.
    pub dir: PathBuf,
}

/// Every run of the benchmark in run order (seed, task, arm), with its settings and folder
/// under `out`. `tasks` are the benchmark's tasks as [`load_tasks`] returns them.
pub(crate) fn plan(
    config: &BenchConfig,
    tasks: &[Task],
    out: &Path,
    model: &ModelSettings,
) -> Vec<PlannedRun> {
    let mut runs = Vec::with_capacity(config.run_count());
    for &seed in &config.seeds {
        for (ti, (task, task_path)) in tasks.iter().zip(&config.tasks).enumerate() {
            for (ai, arm) in config.arms.iter().enumerate() {
                if !arm.runs_on(ti, seed) {
                    continue;
                }
                let settings = RunSettings {
                    task: absolute(task_path),
                    // A server's URL stays as given.
                    model: match &model.server {
                        Some(_) => model.model.clone(),
                        None => absolute(&model.model),
                    },
                    mutator_model: model.mutator_model.as_deref().map(absolute),
                    server: model.server.clone(),
                    mutator_server: model.mutator_server.clone(),
                    weights: model.weights,
                    device: model.device.clone(),
                    engine: model.engine,
                    search: arm.search.clone(),
                    seed,
                    dev_limit: config.dev_limit.min(task.dev.len()),
                    test_limit: config.test_limit.min(task.test.len()),
                    validation_limit: config.validation_limit.min(task.validation.len()),
                    calibrate: config.calibrate || task.calibrates(),
                    pool: absolute(&config.pool),
                    version: env!("CARGO_PKG_VERSION").into(),
                    max_initial_prompts: config.max_initial_prompts,
                };
                runs.push(PlannedRun {
                    index: runs.len(),
                    arm: ai,
                    task: ti,
                    seed,
                    dir: run_dir(out, &arm.name, &task.name, seed),
                    settings,
                });
            }
        }
    }
    runs
}

/// A finished run's row and curve, from its report and evaluation log.
fn result_of(
    config: &BenchConfig,
    tasks: &[Task],
    run: &PlannedRun,
    report: &Report,
) -> Result<RunResult> {
    let arm = &config.arms[run.arm];
    let records = EvaluationLog::read(&run.dir.join(EVALUATIONS_FILE))?;
    let curve = analysis::progress(&records);
    let row = RunRow {
        arm: arm.name.clone(),
        strategy: arm.strategy(),
        task: tasks[run.task].name.clone(),
        seed: run.seed,
        initial_dev: report.initial.dev_accuracy,
        initial_test: report.initial.test_accuracy,
        best_dev: report.best.dev_accuracy,
        best_test: report.best.test_accuracy,
        evals_used: report.evals_used,
        candidates: report.candidates,
        seconds: report.search_seconds,
        evals_to_95: evals_to_fraction(&curve, CONVERGED_FRACTION),
        status: ok(),
        cpu_seconds: report.search_cpu_seconds,
        peak_rss_mb: report.peak_rss_mb,
        peer_test: None,
        note: None,
    };
    Ok(RunResult {
        row,
        curve,
        backend: report.backend.clone(),
    })
}

/// A peer run's row (no convergence curve: the peer logs none we read).
fn peer_result_of(
    config: &BenchConfig,
    tasks: &[Task],
    run: &PlannedRun,
    r: &PeerResult,
) -> RunResult {
    let arm = &config.arms[run.arm];
    RunResult {
        row: RunRow {
            arm: arm.name.clone(),
            strategy: arm.strategy(),
            task: tasks[run.task].name.clone(),
            seed: run.seed,
            initial_dev: r.initial_dev,
            initial_test: r.initial_test,
            best_dev: r.best_dev.unwrap_or(f64::NAN),
            best_test: r.best_test.unwrap_or(f64::NAN),
            evals_used: r.evals_used,
            candidates: r.candidates,
            seconds: r.search_seconds,
            evals_to_95: 0,
            status: r.status.name().into(),
            cpu_seconds: r.cpu_seconds,
            peak_rss_mb: r.peak_rss_mb,
            peer_test: r.peer_test,
            note: r.reason.clone(),
        },
        curve: Vec::new(),
        backend: None,
    }
}

/// What the runs' config.json must record about the scoring backend, for a benchmark run on
/// `backends`: its settings, with a server's served model named (connecting to it).
pub fn record(backends: &Backends) -> Result<ModelSettings> {
    let mut record = backends.settings().clone();
    if let (Some(server), Some(client)) = (&mut record.server, backends.scoring_client()?) {
        server.model = Some(client.model().to_string());
    }
    Ok(record)
}

/// Which runs of the benchmark an invocation brings to a result.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only this shard's share of the grid (`--shard K/N`).
    pub shard: Option<Shard>,
    /// Only these arms (`--arms`, names from the benchmark file); the other arms' finished
    /// runs are read into the tables, their unfinished ones are left for a later invocation.
    pub arms: Option<Vec<String>>,
}

impl Selection {
    /// Fails (one line, listing the file's arms) when `--arms` names an arm `config` lacks.
    pub fn check(&self, config: &BenchConfig) -> Result<()> {
        let names = self.arms.as_deref().unwrap_or_default();
        if let Some(unknown) = names
            .iter()
            .find(|n| !config.arms.iter().any(|a| &a.name == *n))
        {
            let known: Vec<&str> = config.arms.iter().map(|a| a.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "--arms: the benchmark has no arm `{unknown}`; its arms are {}",
                known.join(", ")
            )));
        }
        Ok(())
    }

    /// Per arm of `config`, whether this invocation leaves it for later.
    fn deferred(&self, config: &BenchConfig) -> Result<Vec<bool>> {
        self.check(config)?;
        let Some(names) = &self.arms else {
            return Ok(vec![false; config.arms.len()]);
        };
        Ok(config
            .arms
            .iter()
            .map(|a| !names.contains(&a.name))
            .collect())
    }
}

/// A finished run read back without running anything, with the model name its report gives
/// (None for a peer's run).
struct Finished {
    result: RunResult,
    model: Option<String>,
}

/// The one reader of a finished run, for every path that reads one without running it (an arm
/// deferred by `--arms`, a merge): its result if it has finished (a peer's if it has a result
/// file, skipped included), after checking its config.json against the benchmark's settings
/// and, given the live `scorer`, its backend; None for a run not started or half-finished. A
/// peer's folder holds no evaluation log, so it is never opened as a run of ours.
fn finished_result(
    config: &BenchConfig,
    tasks: &[Task],
    run: &PlannedRun,
    scorer: Option<&Scorer<'_>>,
) -> Result<Option<Finished>> {
    let peer = config.arms[run.arm].peer.is_some();
    let done_file = if peer { PEER_RESULT_FILE } else { RESULT_FILE };
    if !run.dir.join(done_file).is_file() {
        return Ok(None);
    }
    let folder = RunFolder::at(&run.dir)?;
    check_settings(&folder, &run.settings, peer)?;
    if peer {
        let r = peer::read(&run.dir)?;
        return Ok(Some(Finished {
            result: peer_result_of(config, tasks, run, &r),
            model: None,
        }));
    }
    if let Some(scorer) = scorer {
        check_backend(&folder, scorer)?;
    }
    let report = read_report(&run.dir)?;
    Ok(Some(Finished {
        result: result_of(config, tasks, run, &report)?,
        model: Some(report.model),
    }))
}

/// Runs (or skips, or resumes) every run of the benchmark into `out`, or only `shard`'s share
/// of them or only some arms' (`select`), scored and written by `backends`, calling `each` after
/// each run it was given with the results of every finished run (those finished before this
/// invocation included); returns those results, in run order (seed, task, arm). A run
/// stopped by its server fails naming its folder: rerunning the benchmark resumes it.
pub(crate) fn run_all(
    config: &BenchConfig,
    out: &Path,
    backends: &Backends,
    select: &Selection,
    mut each: impl FnMut(&[RunResult]) -> Result<()>,
) -> Result<Vec<RunResult>> {
    let shard = select.shard;
    let deferred = select.deferred(config)?;
    PhrasePool::load(&config.pool)?;
    let tasks = load_tasks(config)?;
    // One scorer per task, shared by every run of it: its cache makes repeated prompts free in
    // wall time; the budget still charges every evaluation. A server is probed once per task.
    let mut scorers = tasks
        .iter()
        .map(|t| backends.scorer(t))
        .collect::<Result<Vec<_>>>()?;
    let runs: Vec<PlannedRun> = plan(config, &tasks, out, &record(backends)?)
        .into_iter()
        .filter(|r| shard.is_none_or(|s| s.owns(r.index)))
        .collect();
    let total = runs.iter().filter(|r| !deferred[r.arm]).count();
    let mut position = 0;
    let of = shard.map_or_else(String::new, |s| {
        format!(" of shard {s} ({} runs in all)", config.run_count())
    });
    // Every run finished before this invocation counts in the tables from the first write on,
    // those of arms left for a later invocation (`--arms`) included; a skipped peer's row shows
    // as skipped until an invocation runs it. Each run this invocation finishes takes its place.
    let mut known: Vec<Option<RunResult>> = runs
        .iter()
        .map(|run| {
            let done = finished_result(config, &tasks, run, Some(&scorers[run.task]))?;
            Ok(done.map(|d| d.result))
        })
        .collect::<Result<_>>()?;
    // The tables are written once with every run finished earlier, then after each run this
    // invocation makes; a run finished earlier is only announced (it was read above).
    let mut write = |known: &[Option<RunResult>]| {
        let results: Vec<RunResult> = known.iter().flatten().cloned().collect();
        each(&results)
    };
    write(&known)?;
    for (k, run) in runs.iter().enumerate() {
        let task = &tasks[run.task];
        let start = Instant::now();
        if deferred[run.arm] {
            continue;
        }
        position += 1;
        let position = format!("[{position}/{total}{of}]");
        let peer_name = config.arms[run.arm].peer.as_deref();
        if let Some(done) = &known[k] {
            // A skipped peer is retried; any other finished run is final.
            if !done.row.is_skipped() {
                let line = run_line(
                    &position,
                    &done.row,
                    peer_name,
                    "(finished earlier, skipped)",
                );
                backends.progress().event(&Event::BenchRun(&line));
                continue;
            }
        }
        let result = if let Some(peer_name) = peer_name {
            let peer_run = PeerRun {
                peer: peer_name,
                task,
                settings: &run.settings,
                model: backends.settings(),
                tools: &config.peer_tools,
                dir: &run.dir,
            };
            let (r, state) = run_peer(&peer_run, &mut scorers[run.task], backends.progress())?;
            let result = peer_result_of(config, &tasks, run, &r);
            let how = match state {
                RunState::Finished => "(finished earlier, skipped)".to_string(),
                _ => format!("in {:.0} s", start.elapsed().as_secs_f64()),
            };
            let line = run_line(&position, &result.row, Some(peer_name), &how);
            backends.progress().event(&Event::BenchRun(&line));
            result
        } else {
            let (report, state) = run_one(
                &run.settings,
                task,
                &mut scorers[run.task],
                backends,
                &run.dir,
            )
            .map_err(|e| stopped(e, &run.dir))?;
            let result = result_of(config, &tasks, run, &report)?;
            let how = match state {
                RunState::Finished => "(finished earlier, skipped)".to_string(),
                RunState::Resumed => format!("in {:.0} s (resumed)", start.elapsed().as_secs_f64()),
                RunState::Fresh => format!("in {:.0} s", start.elapsed().as_secs_f64()),
            };
            let line = run_line(&position, &result.row, None, &how);
            backends.progress().event(&Event::BenchRun(&line));
            result
        };
        known[k] = Some(result);
        write(&known)?;
    }
    Ok(known.into_iter().flatten().collect())
}

/// The progress line of one run: `position`, arm, task and seed, then its dev and test scores
/// (a peer's named), or a peer's status and reason when it did not answer, then `how`.
fn run_line(position: &str, row: &RunRow, peer: Option<&str>, how: &str) -> String {
    let head = format!("{position} {} {} seed {}", row.arm, row.task, row.seed);
    match peer {
        Some(peer) if !row.is_ok() => format!(
            "{head}: PEER {} {}: {} {how}",
            peer.to_uppercase(),
            row.status.to_uppercase(),
            row.note.as_deref().unwrap_or("no reason given")
        ),
        _ => format!(
            "{head}: dev {:.1}% test {:.1}%{} {how}",
            100.0 * row.best_dev,
            100.0 * row.best_test,
            peer.map(|p| format!(" (peer {p})")).unwrap_or_default()
        ),
    }
}

/// A run's failure as the benchmark reports it: one stopped by its server (down, or answering
/// errors past its retries) names the run's folder and how the benchmark continues; any other
/// failure is returned as it is.
fn stopped(e: Error, dir: &Path) -> Error {
    let mut chain: Vec<String> = Vec::new();
    let mut server = false;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        server |= matches!(c.downcast_ref::<Error>(), Some(Error::Server { .. }));
        chain.push(c.to_string());
        cause = c.source();
    }
    if !server {
        return e;
    }
    chain.dedup();
    Error::Bench {
        path: dir.to_path_buf(),
        message: format!(
            "{}; to finish the benchmark, rerun the same `promptevo bench` command: finished runs are skipped and this one resumes from its log",
            chain.join(": ")
        ),
    }
}

/// Runs listed in an error message before the rest are counted.
const MISSING_SHOWN: usize = 6;

/// Reads every run of the benchmark from `out` without running anything (the merge of a
/// sharded benchmark): each must have finished with the settings `model` gives. Fails with one
/// line naming the runs that have not finished. Returns the results in run order and the
/// model's name as the runs' reports give it.
pub(crate) fn read_finished(
    config: &BenchConfig,
    out: &Path,
    model: &ModelSettings,
) -> Result<(Vec<RunResult>, String)> {
    let tasks = load_tasks(config)?;
    let runs = plan(config, &tasks, out, model);
    let mut missing: Vec<&PlannedRun> = Vec::new();
    let mut results = Vec::with_capacity(runs.len());
    let mut name = String::new();
    for run in &runs {
        match finished_result(config, &tasks, run, None)? {
            Some(done) => {
                if name.is_empty() {
                    name = done.model.unwrap_or_default();
                }
                results.push(done.result);
            }
            None => missing.push(run),
        }
    }
    if !missing.is_empty() {
        let mut names: Vec<String> = missing
            .iter()
            .take(MISSING_SHOWN)
            .map(|r| {
                r.dir
                    .strip_prefix(out)
                    .unwrap_or(&r.dir)
                    .display()
                    .to_string()
            })
            .collect();
        if missing.len() > MISSING_SHOWN {
            names.push(format!("and {} more", missing.len() - MISSING_SHOWN));
        }
        return Err(Error::Bench {
            path: out.to_path_buf(),
            message: format!(
                "{} of {} runs have not finished ({}); run the shards that own them (--shard K/N), or `promptevo bench` without --merge to finish them here",
                missing.len(),
                runs.len(),
                names.join(", ")
            ),
        });
    }
    if model.server.is_some() {
        // Peer runs are scored by the same scorer but record no backend of their own.
        let (ours, ours_results): (Vec<PlannedRun>, Vec<RunResult>) = runs
            .iter()
            .zip(&results)
            .filter(|(r, _)| config.arms[r.arm].peer.is_none())
            .map(|(r, x)| (r.clone(), x.clone()))
            .unzip();
        check_backends(&ours, &ours_results)?;
    }
    Ok((results, name))
}

/// Reads a finished run's result.json.
fn read_report(dir: &Path) -> Result<Report> {
    RunFolder::at(dir)?.require_json(
        RESULT_FILE,
        "a promptevo result",
        "delete it to redo the run",
    )
}

/// Fails unless a run scored through a server (its `backend.json`, written before its first
/// request) was scored as `scorer` scores now: the same served model and scoring method (a
/// server whose echo now passes the self-check would score the rest of the run otherwise).
fn check_backend(folder: &RunFolder, scorer: &Scorer<'_>) -> Result<()> {
    let now = scorer.backend_info();
    let path = folder.file(BACKEND_FILE);
    if now.kind != "server" || !path.is_file() {
        return Ok(());
    }
    let stored = read_backend(&path)?;
    if stored.model != now.model || stored.method() != now.method() {
        return Err(Error::Bench {
            path,
            message: format!(
                "records scoring of `{}` by the {} method, but the server now serves `{}` scored by the {} method; restore that server, delete this run folder, or pass another --out",
                stored.model,
                stored.method(),
                now.model,
                now.method()
            ),
        });
    }
    Ok(())
}

/// Reads a run's `backend.json`.
fn read_backend(path: &Path) -> Result<BackendInfo> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Bench {
        path: path.to_path_buf(),
        message: format!(
            "is not a backend description ({e}); delete the run folder to redo the run"
        ),
    })
}

/// Fails unless every run scored through a server was scored alike: the same served model,
/// and per task the same scoring method (what a merge reads cannot be checked against a live
/// server).
fn check_backends(runs: &[PlannedRun], results: &[RunResult]) -> Result<()> {
    let mut first: Vec<(usize, &PlannedRun, &BackendInfo)> = Vec::new();
    for (run, result) in runs.iter().zip(results) {
        let Some(info) = &result.backend else {
            return Err(Error::Bench {
                path: run.dir.join(RESULT_FILE),
                message: "records no server backend, but the benchmark scores through a server; delete the run folder to redo the run".into(),
            });
        };
        let model_of = first.first().map(|f| (f.1, f.2));
        let method_of = first.iter().find(|f| f.0 == run.task).map(|f| (f.1, f.2));
        for (other, what, same) in [
            (
                model_of,
                "served model",
                model_of.is_none_or(|(_, o)| o.model == info.model),
            ),
            (
                method_of,
                "scoring method",
                method_of.is_none_or(|(_, o)| o.method() == info.method()),
            ),
        ] {
            if let (false, Some((other_run, other))) = (same, other) {
                return Err(Error::Bench {
                    path: run.dir.join(RESULT_FILE),
                    message: format!(
                        "was scored with {what} `{}` by `{}`, but {} with `{}` by `{}`; the runs of a benchmark must be scored alike: delete one of the run folders and rerun it against the same server",
                        info.model,
                        info.method(),
                        other_run.dir.display(),
                        other.model,
                        other.method()
                    ),
                });
            }
        }
        if method_of.is_none() {
            first.push((run.task, run, info));
        }
    }
    Ok(())
}

/// Brings one peer run to a result: reads a finished (ok or failed) one, or runs it, under the
/// folder's lock. A skipped one (the peer could not run here) and one whose driver was
/// interrupted (no result file) are run again.
fn run_peer(
    run: &PeerRun<'_>,
    scorer: &mut Scorer<'_>,
    progress: &dyn Progress,
) -> Result<(PeerResult, RunState)> {
    let folder = RunFolder::at(run.dir)?;
    let _lock = folder.lock()?;
    if run.dir.join(PEER_RESULT_FILE).is_file() {
        check_settings(&folder, run.settings, true)?;
        let r = peer::read(run.dir)?;
        if r.status != PeerStatus::Skipped {
            return Ok((r, RunState::Finished));
        }
    }
    Ok((peer::run(run, scorer, progress)?, RunState::Fresh))
}

/// Brings one run folder to a finished report: reads a finished one, resumes a started one,
/// or runs a fresh one. The folder's lock is taken before its state is read, so a second
/// process given the same run (the same shard started twice) never redoes it: while the run is
/// being written it fails naming the holder, and afterwards it reads the result.
fn run_one(
    settings: &RunSettings,
    task: &Task,
    scorer: &mut Scorer<'_>,
    backends: &Backends,
    dir: &Path,
) -> Result<(Report, RunState)> {
    let folder = RunFolder::at(dir)?;
    let _lock = folder.lock()?;
    if dir.join(RESULT_FILE).is_file() {
        check_settings(&folder, settings, false)?;
        check_backend(&folder, scorer)?;
        return Ok((read_report(dir)?, RunState::Finished));
    }
    let started = dir.join(EVALUATIONS_FILE).is_file();
    let (logged, state) = if started {
        let folder = RunFolder::open(dir)?;
        check_settings(&folder, settings, false)?;
        check_backend(&folder, scorer)?;
        let (records, _) = EvaluationLog::recover(&folder.file(EVALUATIONS_FILE))?;
        (records, RunState::Resumed)
    } else {
        folder.write_json(CONFIG_FILE, settings)?;
        (Vec::new(), RunState::Fresh)
    };
    let mut generator = backends.generator(&settings.search)?;
    let report = execute(
        settings,
        task,
        scorer,
        generator
            .as_mut()
            .map(|g| g.as_mut() as &mut dyn TextGenerator),
        &folder,
        logged,
        backends.progress(),
    )?;
    Ok((report, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_settings_compare_what_answers_not_how_it_is_asked() {
        let run = |concurrency: u32, model: Option<&str>| {
            serde_json::json!({
                "model": "http://127.0.0.1:8000/v1",
                "version": "0.1.0",
                "server": {"url": "http://127.0.0.1:8000/v1", "model": model, "concurrency": concurrency, "timeout_s": 300.0, "attempts": 5},
            })
        };
        let same = |a: &serde_json::Value, b: &serde_json::Value, served: bool| {
            comparable(a, served, false) == comparable(b, served, false)
        };
        assert!(same(&run(8, Some("m")), &run(16, Some("m")), true));
        assert!(!same(&run(8, Some("m")), &run(8, Some("other")), true));
        // A merge not told the served model leaves it to the runs' reports.
        assert!(same(&run(8, Some("m")), &run(8, None), false));
        let mut moved = run(8, Some("m"));
        moved["server"]["url"] = "http://10.0.0.2:8000/v1".into();
        assert!(!same(&run(8, Some("m")), &moved, true));
    }

    #[test]
    fn a_peers_run_ignores_our_strategy_and_ours_do_not() {
        // The peers' runs of issue 24's benchmark were written while fewshot was the default.
        let run = |strategy: &str, max_evals: u64| serde_json::json!({"search": {"strategy": strategy, "max_evals": max_evals}, "seed": 0});
        let same = |a: &serde_json::Value, b: &serde_json::Value, peer: bool| {
            comparable(a, true, peer) == comparable(b, true, peer)
        };
        assert!(same(
            &run("fewshot", 3000),
            &run("fewshot-gepa", 3000),
            true
        ));
        assert!(!same(
            &run("fewshot", 3000),
            &run("fewshot-gepa", 3000),
            false
        ));
        // The budget still counts for a peer.
        assert!(!same(&run("fewshot", 3000), &run("fewshot", 2000), true));
    }

    #[test]
    fn files_compare_by_name_so_a_benchmark_folder_moves_between_checkouts() {
        let run = |root: &str, model: &str| {
            serde_json::json!({
                "task": format!("{root}/experiments/tasks/sst2.toml"),
                "model": format!("{root}/models/{model}"),
                "mutator_model": null,
                "pool": format!("{root}/experiments/pools/phrases.toml"),
                "seed": 0,
            })
        };
        let same = |a: &serde_json::Value, b: &serde_json::Value| {
            comparable(a, true, false) == comparable(b, true, false)
        };
        // The same files in another checkout (the issue-24 peers benchmark was made in a
        // worktree and failed to merge in the main one).
        assert!(same(
            &run("/work/wt-peers", "m.gguf"),
            &run("/work/main", "m.gguf")
        ));
        // Another model, task or seed is still another run.
        assert!(!same(
            &run("/work/main", "m.gguf"),
            &run("/work/main", "other.gguf")
        ));
        let mut other_task = run("/work/main", "m.gguf");
        other_task["task"] = "/work/main/experiments/tasks/subj.toml".into();
        assert!(!same(&run("/work/main", "m.gguf"), &other_task));
        let mut other_seed = run("/work/main", "m.gguf");
        other_seed["seed"] = 1.into();
        assert!(!same(&run("/work/main", "m.gguf"), &other_seed));
        // A server's URL is compared whole, not cut to its last segment.
        let served =
            |url: &str| serde_json::json!({"model": url, "server": {"url": url, "model": "m"}});
        assert_ne!(
            comparable(&served("http://a:1/v1"), true, false),
            comparable(&served("http://b:1/v1"), true, false)
        );
    }

    #[test]
    fn evals_to_95_reads_the_first_point_within_5_percent_of_the_final_best() {
        let curve = [(8, 0.5), (16, 0.5), (24, 0.76), (32, 0.8), (40, 0.8)];
        assert_eq!(evals_to_fraction(&curve, 0.95), 24);
        assert_eq!(evals_to_fraction(&curve, 1.0), 32);
        assert_eq!(evals_to_fraction(&[], 0.95), 0);
    }
}
