//! Exports of a benchmark, as pure functions returning text, plus its SVG plots: `results.csv`,
//! `results.json`, `bench.md`, a test-accuracy box plot and mean convergence curves per task.

use std::path::Path;

use plotters::prelude::*;

use super::config::BenchConfig;
use super::runner::{RunResult, RunRow, CONVERGED_FRACTION};
use crate::error::Result;
use crate::run::plots::accuracy_chart;
use crate::run::ModelSettings;
use crate::stats;

/// Columns of `results.csv`, in order.
pub(crate) const CSV_COLUMNS: [&str; 17] = [
    "arm",
    "strategy",
    "task",
    "seed",
    "initial_dev",
    "initial_test",
    "best_dev",
    "best_test",
    "evals_used",
    "candidates",
    "seconds",
    "evals_to_95",
    "status",
    "cpu_seconds",
    "peak_rss_mb",
    "peer_test",
    "note",
];

/// Seed of the paired bootstrap (fixed, so bench.md is reproducible).
pub(crate) const BOOTSTRAP_SEED: u64 = 0;

/// Points of the convergence curves along the evaluation axis.
const CURVE_POINTS: usize = 60;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `results.csv`: a header and one row per run.
pub(crate) fn to_csv(rows: &[RunRow]) -> String {
    let mut s = CSV_COLUMNS.join(",") + "\n";
    // Empty where there is no figure (a peer's missing answer, our arms' peer-only columns).
    let num = |x: f64| {
        if x.is_nan() {
            String::new()
        } else {
            x.to_string()
        }
    };
    let opt =
        |x: Option<f64>, digits: usize| x.map_or_else(String::new, |x| format!("{x:.digits$}"));
    for r in rows {
        s += &format!(
            "{},{},{},{},{},{},{},{},{},{},{:.3},{},{},{},{},{},{}\n",
            csv_field(&r.arm),
            csv_field(&r.strategy),
            csv_field(&r.task),
            r.seed,
            r.initial_dev,
            r.initial_test,
            num(r.best_dev),
            num(r.best_test),
            r.evals_used,
            r.candidates,
            r.seconds,
            r.evals_to_95,
            csv_field(&r.status),
            opt(r.cpu_seconds, 1),
            opt(r.peak_rss_mb, 1),
            r.peer_test.map_or_else(String::new, |x| x.to_string()),
            csv_field(r.note.as_deref().unwrap_or(""))
        );
    }
    s
}

/// `results.json`: the rows as a pretty JSON array.
pub(crate) fn to_json(rows: &[RunRow]) -> String {
    serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// One arm compared with the baseline over paired runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The arm.
    pub arm: String,
    /// Pairs (same task and seed).
    pub n: usize,
    /// Mean of (arm - baseline) test accuracy.
    pub mean_diff: f64,
    /// 95% paired bootstrap interval of the mean difference.
    pub ci: (f64, f64),
    /// Two-sided Wilcoxon signed-rank p-value.
    pub p: f64,
}

/// Compares `arm` with `baseline` on test accuracy over the (task, seed) pairs both have, among
/// rows of the tasks `task` selects (a peer run without an answer pairs with nothing).
pub fn compare(rows: &[RunRow], arm: &str, baseline: &str, task: Option<&str>) -> Comparison {
    let keep = |r: &&RunRow| task.is_none_or(|t| r.task == t) && r.is_ok();
    let diffs: Vec<f64> = rows
        .iter()
        .filter(keep)
        .filter(|r| r.arm == arm)
        .filter_map(|a| {
            rows.iter()
                .find(|b| b.arm == baseline && b.task == a.task && b.seed == a.seed && b.is_ok())
                .map(|b| a.best_test - b.best_test)
        })
        .collect();
    Comparison {
        arm: arm.to_string(),
        n: diffs.len(),
        mean_diff: stats::mean(&diffs),
        ci: stats::bootstrap_ci(&diffs, BOOTSTRAP_SEED),
        p: stats::wilcoxon_signed_rank(&diffs),
    }
}

fn tasks_of(rows: &[RunRow]) -> Vec<String> {
    let mut t: Vec<String> = Vec::new();
    for r in rows {
        if !t.contains(&r.task) {
            t.push(r.task.clone());
        }
    }
    t
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * x)
    }
}

fn pts(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:+.1}", 100.0 * x)
    }
}

/// File names of a task's plots: (box plot of test accuracy, convergence curves).
pub(crate) fn plot_names(task: &str) -> (String, String) {
    (
        format!("{task}-test.svg"),
        format!("{task}-convergence.svg"),
    )
}

/// Which backend scored the benchmark, for `bench.md`: in process (weights, device, batch
/// size), or a server (its URL, the served model, and the scoring method of each task's runs,
/// as their reports record them).
pub fn backend_line(model: &ModelSettings, results: &[RunResult]) -> String {
    let Some(server) = &model.server else {
        let weights = clap::ValueEnum::to_possible_value(&model.weights).map_or_else(
            || format!("{:?}", model.weights),
            |v| v.get_name().to_string(),
        );
        return format!(
            "in process (weights `{weights}`, device `{}`, batch size {}{})",
            model.device,
            model.engine.batch_size,
            if model.engine.prefix_reuse {
                ""
            } else {
                ", no prefix reuse"
            }
        );
    };
    let infos = results
        .iter()
        .filter_map(|r| r.backend.as_ref().map(|b| (r, b)));
    let served = server
        .model
        .clone()
        .or_else(|| infos.clone().next().map(|(_, b)| b.model.clone()))
        .unwrap_or_default();
    // Each method with the tasks scored by it, in task order.
    let mut methods: Vec<(String, Vec<String>)> = Vec::new();
    for (r, b) in infos {
        let method = b.method().to_string();
        match methods.iter_mut().find(|(m, _)| *m == method) {
            Some((_, tasks)) if tasks.contains(&r.row.task) => {}
            Some((_, tasks)) => tasks.push(r.row.task.clone()),
            None => methods.push((method, vec![r.row.task.clone()])),
        }
    }
    let how = match methods.as_slice() {
        [] => String::new(),
        [(m, _)] => format!(", scoring method `{m}`"),
        many => format!(
            ", scoring methods {}",
            many.iter()
                .map(|(m, tasks)| format!("`{m}` ({})", tasks.join(", ")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!("server `{}` (served model `{served}`){how}", server.url)
}

/// `bench.md`: per-task tables, paired comparisons with the baseline, plots and methods;
/// `backend` is [`backend_line`]'s.
pub(crate) fn to_markdown(
    config: &BenchConfig,
    rows: &[RunRow],
    model: &str,
    backend: &str,
) -> String {
    let baseline = config.baseline();
    let arms: Vec<&str> = config.arms.iter().map(|a| a.name.as_str()).collect();
    let budget = config.arms[0].search.max_evals.unwrap_or(0);
    // A skipped peer's row is shown (as skipped) but is not a finished run.
    let finished = rows.iter().filter(|r| !r.is_skipped()).count();
    let mut s = format!("# promptevo benchmark: {}\n\n", config.name);
    s += &format!(
        "- config: `{}`\n- model: `{model}`\n- backend: {backend}\n- arms: {}; tasks: {}; seeds: {:?}; {} of {} runs finished\n- budget: {budget} example evaluations per run (one per dev example a candidate is scored on); dev_limit {}, test_limit {}{}\n\n",
        config.path.display(),
        arms.join(", "),
        tasks_of(rows).join(", "),
        config.seeds,
        finished,
        config.run_count(),
        config.dev_limit,
        config.test_limit,
        config
            .max_initial_prompts
            .map(|n| format!(", first {n} initial prompts of each task"))
            .unwrap_or_default()
    );
    if finished < config.run_count() {
        s += &format!(
            "**In progress: {} of {} runs have finished.** Every table and comparison below covers the finished runs only (pairs are matched by task and seed), and is rewritten as each run finishes.\n\n",
            finished,
            config.run_count()
        );
    }
    s += "## Per task\n\nTest accuracy of each run's best prompt (best on dev), over seeds.\n\n";
    for task in tasks_of(rows) {
        let of_task: Vec<&RunRow> = rows.iter().filter(|r| r.task == task).collect();
        let initial: Vec<f64> = of_task.iter().map(|r| r.initial_test).collect();
        s += &format!(
            "### {task}\n\nInitial prompt (the task's first): test accuracy {}.\n\n",
            pct(stats::mean(&initial))
        );
        s += "| arm | strategy | runs | test acc mean ± std | test acc median | best dev mean | evals to 95% (mean) | wall s (mean) | CPU s (mean) | peak memory MB (max) |\n|---|---|---|---|---|---|---|---|---|---|\n";
        for arm in &config.arms {
            let all = of_task.iter().filter(|r| r.arm == arm.name).count();
            let r: Vec<&&RunRow> = of_task
                .iter()
                .filter(|r| r.arm == arm.name && r.is_ok())
                .collect();
            if r.is_empty() {
                if all > 0 {
                    s += &format!(
                        "| {} | {} | 0 of {all} (see Peers) | - | - | - | - | - | - | - |\n",
                        arm.name,
                        arm.strategy()
                    );
                }
                continue;
            }
            let runs = if r.len() == all {
                all.to_string()
            } else {
                format!("{} of {all} (see Peers)", r.len())
            };
            let test: Vec<f64> = r.iter().map(|r| r.best_test).collect();
            let dev: Vec<f64> = r.iter().map(|r| r.best_dev).collect();
            let to95: Vec<f64> = r.iter().map(|r| r.evals_to_95 as f64).collect();
            let secs: Vec<f64> = r.iter().map(|r| r.seconds).collect();
            // Runs made before cost was recorded have none; "-" when no run has it.
            let cpu: Vec<f64> = r.iter().filter_map(|r| r.cpu_seconds).collect();
            let peak = r.iter().filter_map(|r| r.peak_rss_mb).reduce(f64::max);
            s += &format!(
                "| {} | {} | {runs} | {} ± {:.1} | {} | {} | {:.0} | {:.1} | {} | {} |\n",
                arm.name,
                arm.strategy(),
                pct(stats::mean(&test)),
                100.0 * stats::std_dev(&test),
                pct(stats::median(&test)),
                pct(stats::mean(&dev)),
                stats::mean(&to95),
                stats::mean(&secs),
                if cpu.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.0}", stats::mean(&cpu))
                },
                peak.map_or_else(|| "-".to_string(), |m| format!("{m:.0}"))
            );
        }
        let (boxes, curves) = plot_names(&task);
        s += &format!("\n![{boxes}]({boxes})\n\n![{curves}]({curves})\n\n");
    }
    s += &format!(
        "## Paired comparison with `{baseline}`\n\nDifference in test accuracy (arm - {baseline}, percentage points) over runs with the same task and seed.\n\n| task | arm | pairs | mean difference | 95% bootstrap CI | Wilcoxon p |\n|---|---|---|---|---|---|\n"
    );
    let mut scopes: Vec<Option<String>> = tasks_of(rows).into_iter().map(Some).collect();
    scopes.push(None);
    for scope in &scopes {
        for arm in arms.iter().filter(|a| **a != baseline) {
            let c = compare(rows, arm, baseline, scope.as_deref());
            if c.n == 0 {
                continue;
            }
            s += &format!(
                "| {} | {arm} | {} | {} | [{}, {}] | {:.4} |\n",
                scope.as_deref().unwrap_or("**all tasks (pooled)**"),
                c.n,
                pts(c.mean_diff),
                pts(c.ci.0),
                pts(c.ci.1),
                c.p
            );
        }
    }
    s += &compared_arms_sections(config, rows);
    s += &initial_section(config, rows);
    s += &peers_section(config, rows);
    s += &format!(
        "\n## Methods\n\n\
- Every arm gets the same budget of example evaluations; the initial population is charged too. `evals to 95%` is the number of evaluations spent when the best full-dev score so far first reached {:.0}% of the run's final best.\n\
- Runs of a task share one scorer and its cache, so a prompt already scored (e.g. the initial prompts, scored again by every run) costs no wall time the second time. The budget is unaffected (every evaluation is charged, cached or not), but wall seconds are: later runs look faster, so compare wall time with care.\n\
- Wall seconds are the search's (result.json `search_seconds`), without the final test scoring.\n\
- 95% CI: percentile paired bootstrap of the mean difference, {} resamples of the (task, seed) pairs, seeded ({BOOTSTRAP_SEED}).\n\
- Wilcoxon signed-rank test, two-sided: zero differences are dropped, tied |differences| get their average rank; the p-value is exact (all sign assignments counted) for at most {} non-zero differences, else the tie- and continuity-corrected normal approximation. With 5 seeds the smallest possible p is 0.0625, so per-task tests cannot reach 0.05; read the pooled row and the intervals.\n\
- Standard deviations use n - 1. Results per run: `results.csv` / `results.json`; every run is an ordinary run folder under `runs/<arm>/<task>/seed<k>/` (`promptevo show`, `report`, `resume` work on it).\n",
        100.0 * CONVERGED_FRACTION,
        stats::RESAMPLES,
        stats::WILCOXON_EXACT_MAX
    );
    s
}

/// Mean of `f` over the (task, seed) pairs where both `arm` and `other` have an answer and the
/// figure, as (arm's mean, other's mean); None without such a pair.
fn paired_means(
    rows: &[RunRow],
    arm: &str,
    other: &str,
    f: impl Fn(&RunRow) -> Option<f64>,
) -> Option<(f64, f64)> {
    let (a, b): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .filter(|r| r.arm == arm && r.is_ok())
        .filter_map(|a| {
            let b = rows
                .iter()
                .find(|b| b.arm == other && b.task == a.task && b.seed == a.seed && b.is_ok())?;
            Some((f(a)?, f(b)?))
        })
        .unzip();
    (!a.is_empty()).then(|| (stats::mean(&a), stats::mean(&b)))
}

/// `bench.md`'s comparisons of each arm the file's `compare` names (by default its first arm,
/// the candidate a benchmark is about, e.g. a new default) with every other arm.
fn compared_arms_sections(config: &BenchConfig, rows: &[RunRow]) -> String {
    config
        .compare
        .iter()
        .map(|arm| arm_section(config, rows, arm))
        .collect()
}

/// `bench.md`'s comparison of `first` with every other arm, peers included: paired differences
/// per task and pooled, and what the other arm cost beside it on the same pairs. Empty with
/// fewer than three arms (the baseline comparison already says it) or when `first` is the
/// baseline.
fn arm_section(config: &BenchConfig, rows: &[RunRow], first: &str) -> String {
    if config.arms.len() < 3 || first == config.baseline() {
        return String::new();
    }
    let mut s = format!(
        "\n## Paired comparison of `{first}` with every other arm\n\nDifference in test accuracy ({first} - arm, percentage points) over runs with the same task and seed; an interval that lies below 0 means `{first}` loses to that arm there. Cost: the other arm's mean CPU seconds and peak memory divided by `{first}`'s, over the same pairs (runs with both figures).\n\n| task | arm | pairs | mean difference | 95% bootstrap CI | Wilcoxon p | CPU s (arm / {first}) | peak MB (arm / {first}) |\n|---|---|---|---|---|---|---|---|\n"
    );
    let mut scopes: Vec<Option<String>> = tasks_of(rows).into_iter().map(Some).collect();
    scopes.push(None);
    for scope in &scopes {
        let of_scope: Vec<RunRow> = rows
            .iter()
            .filter(|r| scope.as_deref().is_none_or(|t| r.task == t))
            .cloned()
            .collect();
        for other in config
            .arms
            .iter()
            .map(|a| a.name.as_str())
            .filter(|a| *a != first)
        {
            let c = compare(&of_scope, first, other, None);
            if c.n == 0 {
                continue;
            }
            let ratio = |f: fn(&RunRow) -> Option<f64>| {
                paired_means(&of_scope, first, other, f)
                    .filter(|(a, _)| *a > 0.0)
                    .map_or_else(|| "-".to_string(), |(a, b)| format!("{:.2}x", b / a))
            };
            s += &format!(
                "| {} | {other} | {} | {} | [{}, {}] | {:.4} | {} | {} |\n",
                scope.as_deref().unwrap_or("**all tasks (pooled)**"),
                c.n,
                pts(c.mean_diff),
                pts(c.ci.0),
                pts(c.ci.1),
                c.p,
                ratio(|r| r.cpu_seconds),
                ratio(|r| r.peak_rss_mb)
            );
        }
    }
    s
}

/// `bench.md`'s count of answers below the task's first prompt on test: per arm and task, the
/// runs whose answer scores below it and the mean difference (answer - first prompt), then per
/// arm over every task, then over the whole benchmark.
fn initial_section(config: &BenchConfig, rows: &[RunRow]) -> String {
    let mut s = String::from(
        "\n## Against the initial prompt\n\nRuns whose answer scores below the task's first prompt on the same test examples, and the mean difference (answer - first prompt, percentage points) with its 95% bootstrap interval.\n\n| arm | task | runs | below the initial prompt | mean difference | 95% bootstrap CI |\n|---|---|---|---|---|---|\n",
    );
    let line = |arm: &str, task: &str, of: &[&RunRow]| {
        let diffs: Vec<f64> = of.iter().map(|r| r.best_test - r.initial_test).collect();
        let below = diffs.iter().filter(|d| **d < -1e-9).count();
        let (lo, hi) = stats::bootstrap_ci(&diffs, BOOTSTRAP_SEED);
        format!(
            "| {arm} | {task} | {} | {below} | {} | [{}, {}] |\n",
            diffs.len(),
            pts(stats::mean(&diffs)),
            pts(lo),
            pts(hi)
        )
    };
    let ok: Vec<&RunRow> = rows.iter().filter(|r| r.is_ok()).collect();
    for arm in config.arms.iter().map(|a| a.name.as_str()) {
        let of_arm: Vec<&RunRow> = ok.iter().copied().filter(|r| r.arm == arm).collect();
        if of_arm.is_empty() {
            continue;
        }
        for task in tasks_of(rows) {
            let of: Vec<&RunRow> = of_arm.iter().copied().filter(|r| r.task == task).collect();
            if !of.is_empty() {
                s += &line(arm, &task, &of);
            }
        }
        s += &line(arm, "**all tasks**", &of_arm);
    }
    if !ok.is_empty() {
        s += &line("**every arm**", "**all tasks**", &ok);
    }
    s
}

/// `bench.md`'s section on the peer arms (empty without one): every peer run with its status
/// (and why it failed or was skipped), our test accuracy of its answer beside the peer's own,
/// its budget spent, CPU seconds and peak memory.
fn peers_section(config: &BenchConfig, rows: &[RunRow]) -> String {
    let peers: Vec<&str> = config
        .arms
        .iter()
        .filter(|a| a.peer.is_some())
        .map(|a| a.name.as_str())
        .collect();
    if peers.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## Peers\n\nExternal optimisers run by `experiments/peers/driver.py` on the same task, model, dev / validation / test examples, seed and budget; `test (ours)` is our scorer's accuracy of the prompt each returned, on the same test examples as every arm (as `promptevo eval` scores it), `test (peer's)` the peer's own score of it (its own prompt format and answer extraction). CPU seconds and peak memory are the driver's plus the llama.cpp server's it started, during the search. Settings and errors: each run folder's `peer-result.json`; how to install and run: experiments/peers/README.md.\n\n| arm | task | seed | status | test (ours) | test (peer's) | initial test | evals used | candidates | wall s | CPU s | peak RSS MB | note |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| peers.contains(&r.arm.as_str())) {
        let opt = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{x:.0}"));
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |\n",
            r.arm,
            r.task,
            r.seed,
            r.status,
            pct(r.best_test),
            pct(r.peer_test.unwrap_or(f64::NAN)),
            pct(r.initial_test),
            r.evals_used,
            r.candidates,
            r.seconds,
            opt(r.cpu_seconds),
            opt(r.peak_rss_mb),
            r.note
                .as_deref()
                .unwrap_or("")
                .replace('|', "\\|")
                .replace('\n', " ")
        );
    }
    s
}

/// Box plot of best-prompt test accuracy per arm (box: quartiles, line: median, whiskers:
/// min and max, dots: runs).
pub(crate) fn box_plot(path: &Path, task: &str, arms: &[&str], values: &[Vec<f64>]) -> Result<()> {
    let lo = values.iter().flatten().copied().fold(1.0, f64::min);
    let n = arms.len().max(1);
    let caption = format!("{task}: test accuracy of the best prompt");
    accuracy_chart(path, &caption, 0f64..n as f64, lo - 0.05, false, |chart| {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    arms.get(i as usize)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("test accuracy")
            .draw()?;
        for (i, v) in values.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
            let color = COLORS[i % COLORS.len()];
            let x = i as f64 + 0.5;
            let (q1, q2, q3) = (
                stats::quantile(v, 0.25),
                stats::median(v),
                stats::quantile(v, 0.75),
            );
            let (min, max) = (stats::quantile(v, 0.0), stats::quantile(v, 1.0));
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x - 0.25, q1), (x + 0.25, q3)],
                color.mix(0.3).filled(),
            )))?;
            // Median, whiskers and their caps.
            let lines = [
                vec![(x - 0.25, q2), (x + 0.25, q2)],
                vec![(x, q3), (x, max)],
                vec![(x, q1), (x, min)],
                vec![(x - 0.1, max), (x + 0.1, max)],
                vec![(x - 0.1, min), (x + 0.1, min)],
            ];
            chart.draw_series(
                lines
                    .into_iter()
                    .map(|pts| PathElement::new(pts, color.stroke_width(2))),
            )?;
            chart.draw_series(v.iter().map(|&y| Circle::new((x, y), 3, color.filled())))?;
        }
        Ok(())
    })
}

/// The best-so-far value of a step curve at `x` evaluations (None before its first point).
fn at(curve: &[(u64, f64)], x: f64) -> Option<f64> {
    curve
        .iter()
        .take_while(|p| p.0 as f64 <= x)
        .last()
        .map(|p| p.1)
        .filter(|y| y.is_finite())
}

/// Mean (over seeds) best dev accuracy so far against evaluations spent, one line per arm with
/// a ±1 std band.
pub(crate) fn convergence_plot(
    path: &Path,
    task: &str,
    arms: &[&str],
    curves: &[Vec<&[(u64, f64)]>],
    budget: u64,
) -> Result<()> {
    let max_x = curves
        .iter()
        .flatten()
        .filter_map(|c| c.last().map(|p| p.0))
        .max()
        .unwrap_or(budget)
        .max(budget)
        .max(1) as f64;
    let xs: Vec<f64> = (0..=CURVE_POINTS)
        .map(|i| max_x * i as f64 / CURVE_POINTS as f64)
        .collect();
    // (x, mean, std) per arm where at least one run has a value.
    let series: Vec<Vec<(f64, f64, f64)>> = curves
        .iter()
        .map(|runs| {
            xs.iter()
                .filter_map(|&x| {
                    let ys: Vec<f64> = runs.iter().filter_map(|c| at(c, x)).collect();
                    (!ys.is_empty()).then(|| (x, stats::mean(&ys), stats::std_dev(&ys)))
                })
                .collect()
        })
        .collect();
    let lo = series
        .iter()
        .flatten()
        .map(|p| p.1 - p.2)
        .fold(1.0, f64::min);
    let caption = format!("{task}: best dev accuracy so far (mean ± 1 std over seeds)");
    accuracy_chart(path, &caption, 0f64..max_x, lo - 0.02, true, |chart| {
        chart
            .configure_mesh()
            .x_desc("example evaluations")
            .y_desc("best dev accuracy")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        for (i, (arm, pts)) in arms.iter().zip(&series).enumerate() {
            if pts.is_empty() {
                continue;
            }
            let color = COLORS[i % COLORS.len()];
            let band: Vec<(f64, f64)> = pts
                .iter()
                .map(|p| (p.0, (p.1 + p.2).min(1.0)))
                .chain(pts.iter().rev().map(|p| (p.0, (p.1 - p.2).max(0.0))))
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(
                band,
                color.mix(0.15).filled(),
            )))?;
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))?
                .label(*arm)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        Ok(())
    })
}

/// Writes both plots of every task into `out`.
pub(crate) fn write_plots(out: &Path, config: &BenchConfig, results: &[RunResult]) -> Result<()> {
    let arms: Vec<&str> = config.arms.iter().map(|a| a.name.as_str()).collect();
    let rows: Vec<RunRow> = results.iter().map(|r| r.row.clone()).collect();
    let budget = config.arms[0].search.max_evals.unwrap_or(1);
    for task in tasks_of(&rows) {
        let of = |arm: &str| -> Vec<&RunResult> {
            results
                .iter()
                .filter(|r| r.row.task == task && r.row.arm == arm)
                .collect()
        };
        let values: Vec<Vec<f64>> = arms
            .iter()
            .map(|a| {
                of(a)
                    .iter()
                    .map(|r| r.row.best_test)
                    .filter(|x| x.is_finite())
                    .collect()
            })
            .collect();
        let curves: Vec<Vec<&[(u64, f64)]>> = arms
            .iter()
            .map(|a| of(a).iter().map(|r| r.curve.as_slice()).collect())
            .collect();
        let (boxes, lines) = plot_names(&task);
        box_plot(&out.join(boxes), &task, &arms, &values)?;
        convergence_plot(&out.join(lines), &task, &arms, &curves, budget)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(arm: &str, task: &str, seed: u64, test: f64) -> RunRow {
        RunRow {
            arm: arm.into(),
            strategy: arm.into(),
            task: task.into(),
            seed,
            initial_dev: 0.5,
            initial_test: 0.5,
            best_dev: 0.6,
            best_test: test,
            evals_used: 48,
            candidates: 6,
            seconds: 1.0,
            evals_to_95: 16,
            status: "ok".into(),
            cpu_seconds: None,
            peak_rss_mb: None,
            peer_test: None,
            note: None,
        }
    }

    #[test]
    fn comparisons_pair_runs_by_task_and_seed() {
        let rows = vec![
            row("ga", "a", 0, 0.7),
            row("random", "a", 0, 0.6),
            row("ga", "a", 1, 0.8),
            row("random", "a", 1, 0.6),
            row("ga", "b", 0, 0.5),
            row("random", "b", 0, 0.6),
        ];
        let c = compare(&rows, "ga", "random", Some("a"));
        assert_eq!(c.n, 2);
        assert!((c.mean_diff - 0.15).abs() < 1e-12);
        let pooled = compare(&rows, "ga", "random", None);
        assert_eq!(pooled.n, 3);
        assert!((pooled.mean_diff - (0.1 + 0.2 - 0.1) / 3.0).abs() < 1e-12);
        let csv = to_csv(&rows);
        assert_eq!(csv.lines().count(), 7);
        assert_eq!(csv.lines().next().unwrap(), CSV_COLUMNS.join(","));
    }

    #[test]
    fn the_compared_arms_are_paired_with_every_arm_and_answers_are_counted_against_the_initial() {
        let text = "name = \"t\"\ntasks = [\"../tasks/sst2.toml\"]\nseeds = [0, 1]\ndev_limit = 8\ntest_limit = 8\npool = \"../pools/phrases.toml\"\n[search]\nmax_evals = 48\n[[arm]]\nname = \"new\"\n[arm.search]\nstrategy = \"adaptive\"\n[[arm]]\nname = \"old\"\n[arm.search]\nstrategy = \"fewshot\"\n[[arm]]\nname = \"random\"\n[arm.search]\nstrategy = \"random\"\n";
        let config = BenchConfig::parse(text, Path::new("b/x.toml")).unwrap();
        let cost = |mut r: RunRow, cpu: f64, mb: f64| {
            r.cpu_seconds = Some(cpu);
            r.peak_rss_mb = Some(mb);
            r
        };
        let rows = vec![
            cost(row("new", "a", 0, 0.7), 100.0, 300.0),
            cost(row("old", "a", 0, 0.6), 50.0, 300.0),
            cost(row("random", "a", 0, 0.4), 400.0, 600.0),
            cost(row("new", "a", 1, 0.5), 100.0, 300.0),
            cost(row("old", "a", 1, 0.55), 50.0, 300.0),
            cost(row("random", "a", 1, 0.5), 400.0, 600.0),
        ];
        let first = compared_arms_sections(&config, &rows);
        // new - old: +10 and -5 points; old cost half the CPU, the same memory.
        assert!(
            first.contains("| a | old | 2 | +2.5 |") && first.contains("| 0.50x | 1.00x |"),
            "{first}"
        );
        assert!(
            first.contains("| **all tasks (pooled)** | random | 2 | +15.0 |"),
            "{first}"
        );
        assert!(first.contains("| 4.00x | 2.00x |"), "{first}");
        let initial = initial_section(&config, &rows);
        // Initial test is 0.5 everywhere: random is below it once (0.4) and equal once.
        assert!(
            initial.contains("| random | a | 2 | 1 | -5.0 |"),
            "{initial}"
        );
        assert!(
            initial.contains("| new | **all tasks** | 2 | 0 | +10.0 |"),
            "{initial}"
        );
        assert!(
            initial.contains("| **every arm** | **all tasks** | 6 | 1 |"),
            "{initial}"
        );
        // Two arms: the baseline comparison says it all.
        let two = BenchConfig::parse(
            &text.replace(
                "[[arm]]\nname = \"old\"\n[arm.search]\nstrategy = \"fewshot\"\n",
                "",
            ),
            Path::new("b/x.toml"),
        )
        .unwrap();
        assert_eq!(compared_arms_sections(&two, &rows), "");
        // `compare` names the arms that get a section: old - new is the negation of new - old.
        let both = BenchConfig::parse(
            &format!("compare = [\"new\", \"old\"]\n{text}"),
            Path::new("b/x.toml"),
        )
        .unwrap();
        let sections = compared_arms_sections(&both, &rows);
        assert!(sections.starts_with(&first), "{sections}");
        assert!(
            sections.contains("## Paired comparison of `old` with every other arm")
                && sections.contains("| a | new | 2 | -2.5 |")
                && sections.contains("| 2.00x | 1.00x |"),
            "{sections}"
        );
        let bad = BenchConfig::parse(
            &format!("compare = [\"nwe\"]\n{text}"),
            Path::new("b/x.toml"),
        );
        let message = bad.unwrap_err().to_string();
        assert!(
            message.contains("`compare` names arm `nwe`") && message.contains("new, old, random"),
            "{message}"
        );
    }

    /// A run of `task` scored through a server by `method`.
    fn scored(task: &str, method: &str) -> RunResult {
        RunResult {
            row: row("ga", task, 0, 0.5),
            curve: Vec::new(),
            backend: Some(crate::score::BackendInfo {
                kind: "server".into(),
                model: "served.gguf".into(),
                url: Some("http://127.0.0.1:8000/v1".into()),
                scoring_method: format!("{method}: the reason it was chosen"),
                notes: Vec::new(),
            }),
        }
    }

    #[test]
    fn the_backend_line_names_the_server_its_model_and_each_tasks_method() {
        let mut model = ModelSettings {
            model: "http://127.0.0.1:8000/v1".into(),
            server: Some(crate::remote::ServerConfig::new("http://127.0.0.1:8000/v1")),
            mutator_model: None,
            mutator_server: None,
            weights: crate::model::WeightFormat::Bf16,
            device: "cpu".into(),
            engine: crate::score::EngineOptions {
                batch_size: 8,
                prefix_reuse: true,
            },
        };
        // The served model from the runs when the settings do not name it (a merge).
        let one = [scored("a", "top_logprobs"), scored("a", "top_logprobs")];
        assert_eq!(
            backend_line(&model, &one),
            "server `http://127.0.0.1:8000/v1` (served model `served.gguf`), scoring method `top_logprobs`"
        );
        let mixed = [
            scored("a", "echo"),
            scored("b", "generation task"),
            scored("c", "echo"),
        ];
        assert!(
            backend_line(&model, &mixed)
                .ends_with("scoring methods `echo` (a, c), `generation task` (b)"),
            "{}",
            backend_line(&model, &mixed)
        );
        model.server = None;
        model.engine.prefix_reuse = false;
        assert_eq!(
            backend_line(&model, &[]),
            "in process (weights `bf16`, device `cpu`, batch size 8, no prefix reuse)"
        );
    }
}
