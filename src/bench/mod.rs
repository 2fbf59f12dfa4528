//! Benchmarks: every arm (strategy or operator set) x task x seed at the same budget of example
//! evaluations, with one opened backend (a model loaded once, or an inference server),
//! resumable, summarised with paired statistics, and splittable across machines.
//!
//! [`config`] reads the benchmark file, [`runner`] brings every run folder to a result,
//! [`shard`] splits the runs across machines, [`crate::stats`] holds the statistics and
//! [`report`] writes `results.csv`, `results.json`, `bench.md` and the plots; [`run`],
//! [`run_shard`] and [`merge`] tie them together.

pub mod config;
pub mod peer;
pub mod report;
pub mod runner;
pub mod shard;

use std::path::{Path, PathBuf};

pub use config::{Arm, BenchConfig};
pub use runner::{RunResult, RunRow, Selection};
pub use shard::Shard;

use crate::error::Result;
use crate::run::{Backends, ModelSettings, RunFolder};

/// Folder (inside the benchmark's output folder) holding each shard's own tables.
pub(crate) const SHARDS_DIR: &str = "shards";

/// Where `shard` writes its own `results.csv` / `results.json`: `<out>/shards/<K>-of-<N>/`.
pub fn shard_dir(out: &Path, shard: Shard) -> PathBuf {
    out.join(SHARDS_DIR).join(shard.folder_name())
}

fn write_rows(folder: &RunFolder, results: &[RunResult]) -> Result<()> {
    let rows: Vec<RunRow> = results.iter().map(|r| r.row.clone()).collect();
    folder.write("results.csv", report::to_csv(&rows).as_bytes())?;
    folder.write("results.json", report::to_json(&rows).as_bytes())
}

/// Writes the whole benchmark's tables, plots and `bench.md` into `folder`; `model` is what
/// scored (named `model_name`).
fn write_all(
    folder: &RunFolder,
    config: &BenchConfig,
    results: &[RunResult],
    model_name: &str,
    model: &ModelSettings,
) -> Result<()> {
    write_rows(folder, results)?;
    let rows: Vec<RunRow> = results.iter().map(|r| r.row.clone()).collect();
    report::write_plots(folder.root(), config, results)?;
    let backend = report::backend_line(model, results);
    folder.write(
        "bench.md",
        report::to_markdown(config, &rows, model_name, &backend).as_bytes(),
    )
}

/// Runs (or finishes) the benchmark into `out`, scored and written by `backends` (whose
/// progress hears of every run), and writes its results; returns every run's result. The
/// tables, plots and `bench.md` (which says how many runs have finished) are rewritten after
/// every run, so a benchmark that spans days shows its comparisons so far, and an interrupted
/// one still leaves its finished runs tabulated. `arms`, when given, limits the invocation to
/// those arms (see [`Selection::arms`]).
pub fn run(
    config: &BenchConfig,
    out: &Path,
    backends: &Backends,
    arms: Option<Vec<String>>,
) -> Result<Vec<RunResult>> {
    let folder = RunFolder::create(out)?;
    let _lock = folder.lock()?;
    let select = Selection { shard: None, arms };
    let name = backends.model_name()?;
    let record = runner::record(backends)?;
    let results = runner::run_all(config, out, backends, &select, |r| {
        write_all(&folder, config, r, &name, &record)
    })?;
    write_all(&folder, config, &results, &name, &record)?;
    Ok(results)
}

/// Runs (or finishes) only `shard`'s share of the benchmark: its run folders go to the usual
/// `<out>/runs/<arm>/<task>/seed<k>/`, and its own rows to `results.csv` / `results.json` in
/// [`shard_dir`], rewritten after every run. Nothing is written at the top of `out`, so no file
/// there claims a complete benchmark; [`merge`] writes those once every shard has finished.
/// Shards of one benchmark may run at the same time on the same `out` (each run folder has its
/// own lock).
pub fn run_shard(
    config: &BenchConfig,
    out: &Path,
    backends: &Backends,
    shard: Shard,
    arms: Option<Vec<String>>,
) -> Result<Vec<RunResult>> {
    let folder = RunFolder::create(&shard_dir(out, shard))?;
    let _lock = folder.lock()?;
    let select = Selection {
        shard: Some(shard),
        arms,
    };
    runner::run_all(config, out, backends, &select, |r| write_rows(&folder, r))
}

/// Reads every finished run of the benchmark in `out` (typically written by its shards) and
/// writes `results.csv`, `results.json`, `bench.md` and the plots, as an unsharded run of the
/// same benchmark would. Runs nothing and loads no model; fails with one line naming the runs
/// that have not finished, or a run whose config.json disagrees with `model` and the file
/// (or, through a server, runs scored by different served models or methods).
pub fn merge(config: &BenchConfig, out: &Path, model: &ModelSettings) -> Result<Vec<RunResult>> {
    let (results, name) = runner::read_finished(config, out, model)?;
    let folder = RunFolder::create(out)?;
    let _lock = folder.lock()?;
    write_all(&folder, config, &results, &name, model)?;
    Ok(results)
}
