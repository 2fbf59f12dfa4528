//! Runs every arm x task x seed of a benchmark with one loaded model, one scorer per task, and
//! ordinary run folders; finished runs are skipped and half-finished ones resumed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::BenchConfig;
use super::shard::Shard;
use crate::error::{Error, Result};
use crate::evolve::{PhrasePool, TextGenerator};
use crate::model::{Model, WeightFormat};
use crate::run::folder::{RunFolder, CONFIG_FILE, EVALUATIONS_FILE};
use crate::run::session::chat_generator;
use crate::run::{analysis, execute, EvaluationLog, Report, RunSettings};
use crate::score::{EngineOptions, Scorer};
use crate::task::Task;

/// Share of a run's final best dev score at which `evals_to_95` is read off.
pub const CONVERGED_FRACTION: f64 = 0.95;

/// What every run's config.json records about the scoring model and how it is run (a
/// finished run is only reused, or merged, when these agree with its config.json).
#[derive(Clone, Debug)]
pub struct ModelRecord {
    /// The model's file.
    pub path: PathBuf,
    /// How its weights are held.
    pub weights: WeightFormat,
    /// Where it runs (`cpu`, `cuda:N`, ...).
    pub device: String,
    /// Batching and prefix reuse.
    pub engine: EngineOptions,
}

/// The scoring model, loaded once for the whole benchmark, and how it is run.
pub struct BenchModel<'m> {
    /// The loaded model.
    pub model: &'m Model,
    /// Its file, weights, device and engine options, as recorded in every run's config.json.
    pub record: ModelRecord,
}

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
}

/// A run's row and its convergence curve.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The row.
    pub row: RunRow,
    /// (example evaluations charged, best full-dev score so far) after each logged evaluation.
    pub curve: Vec<(u64, f64)>,
}

/// How a run was brought to its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// It had finished in an earlier invocation; its result was read back.
    Finished,
    /// It had started; its logged evaluations were replayed and it was finished.
    Resumed,
    /// It was run from scratch.
    Fresh,
}

/// Example evaluations at which `curve` first reached `fraction` of its final best (0 for an
/// empty curve).
pub fn evals_to_fraction(curve: &[(u64, f64)], fraction: f64) -> u64 {
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

/// Settings as JSON without the version, for comparing a folder's config.json with the benchmark.
fn comparable(settings: &serde_json::Value) -> serde_json::Value {
    let mut v = settings.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("version");
    }
    v
}

/// Fails unless the run folder's config.json records `settings` (so a changed benchmark file
/// never mixes old and new runs).
fn check_settings(folder: &RunFolder, settings: &RunSettings) -> Result<()> {
    let path = folder.file(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::read(&path, e))?;
    let stored: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Bench {
        path: path.clone(),
        message: format!("is not a run configuration ({e}); delete the run folder to redo it"),
    })?;
    let want = serde_json::to_value(settings)
        .map_err(|e| Error::write(&path, std::io::Error::other(e)))?;
    if comparable(&stored) != comparable(&want) {
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
pub struct PlannedRun {
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
pub fn plan(
    config: &BenchConfig,
    tasks: &[Task],
    out: &Path,
    model: &ModelRecord,
) -> Vec<PlannedRun> {
    let mut runs = Vec::with_capacity(config.run_count());
    for &seed in &config.seeds {
        for (ti, (task, task_path)) in tasks.iter().zip(&config.tasks).enumerate() {
            for (ai, arm) in config.arms.iter().enumerate() {
                let settings = RunSettings {
                    task: absolute(task_path),
                    model: absolute(&model.path),
                    mutator_model: None,
                    server: None,
                    mutator_server: None,
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
        strategy: arm.search.strategy.clone(),
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
    };
    Ok(RunResult { row, curve })
}

/// Runs (or skips, or resumes) every run of the benchmark into `out`, or only `shard`'s share
/// of them, calling `each` after each run with the results so far; returns the results of the
/// runs it was given, in run order (seed, task, arm).
pub fn run_all(
    config: &BenchConfig,
    out: &Path,
    model: &BenchModel<'_>,
    shard: Option<Shard>,
    quiet: bool,
    mut each: impl FnMut(&[RunResult]) -> Result<()>,
) -> Result<Vec<RunResult>> {
    PhrasePool::load(&config.pool)?;
    let tasks = load_tasks(config)?;
    let runs: Vec<PlannedRun> = plan(config, &tasks, out, &model.record)
        .into_iter()
        .filter(|r| shard.is_none_or(|s| s.owns(r.index)))
        .collect();
    // One scorer per task, shared by every run of it: its cache makes repeated prompts free in
    // wall time; the budget still charges every evaluation.
    let mut scorers = tasks
        .iter()
        .map(|t| Scorer::new(model.model, t, model.record.engine))
        .collect::<Result<Vec<_>>>()?;
    let total = runs.len();
    let of = shard.map_or_else(String::new, |s| {
        format!(" of shard {s} ({} runs in all)", config.run_count())
    });
    let mut results = Vec::with_capacity(total);
    for run in &runs {
        let task = &tasks[run.task];
        let start = Instant::now();
        let (report, state) = run_one(
            &run.settings,
            task,
            &mut scorers[run.task],
            model.model,
            &run.dir,
            quiet,
        )?;
        let result = result_of(config, &tasks, run, &report)?;
        eprintln!(
            "[{}/{total}{of}] {} {} seed {}: dev {:.1}% test {:.1}% {}",
            results.len() + 1,
            result.row.arm,
            task.name,
            run.seed,
            100.0 * result.row.best_dev,
            100.0 * result.row.best_test,
            match state {
                RunState::Finished => "(finished earlier, skipped)".to_string(),
                RunState::Resumed => format!("in {:.0} s (resumed)", start.elapsed().as_secs_f64()),
                RunState::Fresh => format!("in {:.0} s", start.elapsed().as_secs_f64()),
            }
        );
        results.push(result);
        each(&results)?;
    }
    Ok(results)
}

/// Runs listed in an error message before the rest are counted.
const MISSING_SHOWN: usize = 6;

/// Reads every run of the benchmark from `out` without running anything (the merge of a
/// sharded benchmark): each must have finished with the settings `model` gives. Fails with one
/// line naming the runs that have not finished. Returns the results in run order and the
/// model's name as the runs' reports give it.
pub fn read_finished(
    config: &BenchConfig,
    out: &Path,
    model: &ModelRecord,
) -> Result<(Vec<RunResult>, String)> {
    let tasks = load_tasks(config)?;
    let runs = plan(config, &tasks, out, model);
    let missing: Vec<&PlannedRun> = runs
        .iter()
        .filter(|r| !r.dir.join(RESULT_FILE).is_file())
        .collect();
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
    let mut results = Vec::with_capacity(runs.len());
    let mut name = String::new();
    for run in &runs {
        let folder = RunFolder::open(&run.dir)?;
        check_settings(&folder, &run.settings)?;
        let report = read_report(&run.dir)?;
        if name.is_empty() {
            name = report.model.clone();
        }
        results.push(result_of(config, &tasks, run, &report)?);
    }
    Ok((results, name))
}

/// A finished run's result file.
const RESULT_FILE: &str = "result.json";

/// Reads a finished run's result.json.
fn read_report(dir: &Path) -> Result<Report> {
    let result = dir.join(RESULT_FILE);
    let text = std::fs::read_to_string(&result).map_err(|e| Error::read(&result, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Bench {
        path: result.clone(),
        message: format!("is not a promptevo result ({e}); delete it to redo the run"),
    })
}

/// Brings one run folder to a finished report: reads a finished one, resumes a started one,
/// or runs a fresh one. The folder's lock is taken before its state is read, so a second
/// process given the same run (the same shard started twice) never redoes it: while the run is
/// being written it fails naming the holder, and afterwards it reads the result.
fn run_one(
    settings: &RunSettings,
    task: &Task,
    scorer: &mut Scorer<'_>,
    model: &Model,
    dir: &Path,
    quiet: bool,
) -> Result<(Report, RunState)> {
    let folder = RunFolder::at(dir)?;
    let _lock = folder.lock()?;
    if dir.join(RESULT_FILE).is_file() {
        check_settings(&folder, settings)?;
        return Ok((read_report(dir)?, RunState::Finished));
    }
    let started = dir.join(EVALUATIONS_FILE).is_file();
    let (logged, state) = if started {
        let folder = RunFolder::open(dir)?;
        check_settings(&folder, settings)?;
        let (records, _) = EvaluationLog::recover(&folder.file(EVALUATIONS_FILE))?;
        (records, RunState::Resumed)
    } else {
        folder.write_json(CONFIG_FILE, settings)?;
        (Vec::new(), RunState::Fresh)
    };
    let mut generator = chat_generator(model, &settings.search)?;
    let report = execute(
        settings,
        task,
        scorer,
        generator.as_mut().map(|g| g as &mut dyn TextGenerator),
        &folder,
        logged,
        quiet,
    )?;
    Ok((report, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evals_to_95_reads_the_first_point_within_5_percent_of_the_final_best() {
        let curve = [(8, 0.5), (16, 0.5), (24, 0.76), (32, 0.8), (40, 0.8)];
        assert_eq!(evals_to_fraction(&curve, 0.95), 24);
        assert_eq!(evals_to_fraction(&curve, 1.0), 32);
        assert_eq!(evals_to_fraction(&[], 0.95), 0);
    }
}
