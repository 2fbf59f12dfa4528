//! Benchmarks: every arm (strategy or operator set) x task x seed at the same budget of example
//! evaluations, with one loaded model, resumable, summarised with paired statistics.
//!
//! [`config`] reads the benchmark file, [`runner`] brings every run folder to a result,
//! [`crate::stats`] holds the statistics and [`report`] writes `results.csv`, `results.json`,
//! `bench.md` and the plots; [`run`] ties them together.

pub mod config;
pub mod report;
pub mod runner;

use std::path::Path;

pub use config::{Arm, BenchConfig};
pub use runner::{BenchModel, RunResult, RunRow};

use crate::error::Result;
use crate::run::RunFolder;

/// Runs (or finishes) the benchmark into `out` and writes its results; returns every run's
/// result. `results.csv` and `results.json` are rewritten after every run, so an interrupted
/// benchmark still leaves its finished runs tabulated.
pub fn run(
    config: &BenchConfig,
    out: &Path,
    model: &BenchModel<'_>,
    quiet: bool,
) -> Result<Vec<RunResult>> {
    let folder = RunFolder::create(out)?;
    let _lock = folder.lock()?;
    let write_rows = |results: &[RunResult]| -> Result<()> {
        let rows: Vec<RunRow> = results.iter().map(|r| r.row.clone()).collect();
        folder.write("results.csv", report::to_csv(&rows).as_bytes())?;
        folder.write("results.json", report::to_json(&rows).as_bytes())
    };
    let results = runner::run_all(config, out, model, quiet, write_rows)?;
    let rows: Vec<RunRow> = results.iter().map(|r| r.row.clone()).collect();
    report::write_plots(out, config, &results)?;
    folder.write(
        "bench.md",
        report::to_markdown(config, &rows, &model.model.name).as_bytes(),
    )?;
    Ok(results)
}
