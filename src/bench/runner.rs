//! Runs every arm x task x seed of a benchmark with one loaded model, one scorer per task, and
//! ordinary run folders; finished runs are skipped and half-finished ones resumed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::BenchConfig;
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

/// The scoring model, loaded once for the whole benchmark, and how it is run.
pub struct BenchModel<'m> {
    /// The loaded model.
    pub model: &'m Model,
    /// Its file (recorded in every run's config.json).
    pub path: PathBuf,
    /// How its weights are held.
    pub weights: WeightFormat,
    /// Where it runs (`cpu`, `cuda:N`, ...), recorded in every run's config.json.
    pub device: String,
    /// Batching and prefix reuse.
    pub engine: EngineOptions,
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

/// Runs (or skips, or resumes) every run of the benchmark into `out`, calling `each` after each
/// run with the results so far; returns every run's result in run order (seed, task, arm).
pub fn run_all(
    config: &BenchConfig,
    out: &Path,
    model: &BenchModel<'_>,
    quiet: bool,
    mut each: impl FnMut(&[RunResult]) -> Result<()>,
) -> Result<Vec<RunResult>> {
    PhrasePool::from_toml_file(&config.pool)?;
    let tasks = load_tasks(config)?;
    // One scorer per task, shared by every run of it: its cache makes repeated prompts free in
    // wall time; the budget still charges every evaluation.
    let mut scorers = tasks
        .iter()
        .map(|t| Scorer::new(model.model, t, model.engine))
        .collect::<Result<Vec<_>>>()?;
    let total = config.run_count();
    let mut results = Vec::with_capacity(total);
    for &seed in &config.seeds {
        for (ti, (task, task_path)) in tasks.iter().zip(&config.tasks).enumerate() {
            for arm in &config.arms {
                let settings = RunSettings {
                    task: absolute(task_path),
                    model: absolute(&model.path),
                    mutator_model: None,
                    weights: model.weights,
                    device: model.device.clone(),
                    engine: model.engine,
                    search: arm.search.clone(),
                    seed,
                    dev_limit: config.dev_limit.min(task.dev.len()),
                    test_limit: config.test_limit.min(task.test.len()),
                    validation_limit: config.validation_limit.min(task.validation.len()),
                    calibrate: config.calibrate || task.calibrate,
                    pool: absolute(&config.pool),
                    version: env!("CARGO_PKG_VERSION").into(),
                    max_initial_prompts: config.max_initial_prompts,
                };
                let dir = run_dir(out, &arm.name, &task.name, seed);
                let start = Instant::now();
                let (report, state) =
                    run_one(&settings, task, &mut scorers[ti], model.model, &dir, quiet)?;
                let records = EvaluationLog::read(&dir.join(EVALUATIONS_FILE))?;
                let curve = analysis::progress(&records);
                let row = RunRow {
                    arm: arm.name.clone(),
                    strategy: arm.search.strategy.clone(),
                    task: task.name.clone(),
                    seed,
                    initial_dev: report.initial.dev_accuracy,
                    initial_test: report.initial.test_accuracy,
                    best_dev: report.best.dev_accuracy,
                    best_test: report.best.test_accuracy,
                    evals_used: report.evals_used,
                    candidates: report.candidates,
                    seconds: report.search_seconds,
                    evals_to_95: evals_to_fraction(&curve, CONVERGED_FRACTION),
                };
                eprintln!(
                    "[{}/{total}] {} {} seed {seed}: dev {:.1}% test {:.1}% {}",
                    results.len() + 1,
                    arm.name,
                    task.name,
                    100.0 * row.best_dev,
                    100.0 * row.best_test,
                    match state {
                        RunState::Finished => "(finished earlier, skipped)".to_string(),
                        RunState::Resumed =>
                            format!("in {:.0} s (resumed)", start.elapsed().as_secs_f64()),
                        RunState::Fresh => format!("in {:.0} s", start.elapsed().as_secs_f64()),
                    }
                );
                results.push(RunResult { row, curve });
                each(&results)?;
            }
        }
    }
    Ok(results)
}

/// Brings one run folder to a finished report: reads a finished one, resumes a started one,
/// or runs a fresh one.
fn run_one(
    settings: &RunSettings,
    task: &Task,
    scorer: &mut Scorer<'_>,
    model: &Model,
    dir: &Path,
    quiet: bool,
) -> Result<(Report, RunState)> {
    let result = dir.join("result.json");
    if result.is_file() {
        let folder = RunFolder::open(dir)?;
        check_settings(&folder, settings)?;
        let text = std::fs::read_to_string(&result).map_err(|e| Error::read(&result, e))?;
        let report: Report = serde_json::from_str(&text).map_err(|e| Error::Bench {
            path: result.clone(),
            message: format!("is not a promptevo result ({e}); delete it to redo the run"),
        })?;
        return Ok((report, RunState::Finished));
    }
    let started = dir.join(EVALUATIONS_FILE).is_file();
    let (folder, logged, state) = if started {
        let folder = RunFolder::open(dir)?;
        check_settings(&folder, settings)?;
        let (records, _) = EvaluationLog::recover(&folder.file(EVALUATIONS_FILE))?;
        (folder, records, RunState::Resumed)
    } else {
        (RunFolder::create(dir)?, Vec::new(), RunState::Fresh)
    };
    let _lock = folder.lock()?;
    if !started {
        folder.write_json(CONFIG_FILE, settings)?;
    }
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
