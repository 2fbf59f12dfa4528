//! How often does the final choice hand back a prompt worse than the user's own, and what does
//! a stricter choice cost? Replays finished runs' final choices from their logs: the finalists'
//! dev and validation results are in `evaluations.jsonl`; the best initial prompt and the
//! challenger are scored on the rest of the task's validation split (what the final choice may
//! grow to) and the answer's test accuracy is looked up in `result.json` or scored. Then the
//! old rule (any validation lead wins) and the paired tests at a grid of levels, with growth,
//! are applied to the same evidence through the library's own `sequential_test`.
//!
//! `cargo bench --bench final_choice -- RUN_DIR... [--cache FILE] [--json]`
//!
//! RUN_DIR may hold run folders at any depth (a benchmark's `runs/`). `--cache FILE` keeps the
//! scores it computes (JSON lines), so a second call scores nothing again.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use promptevo::evolve::choice::{
    challenger_index, paired_diffs, paired_diffs_below, sequential_test, Criterion, Levels, LEVELS,
};
use promptevo::evolve::{ExampleResult, Pool, Results};
use promptevo::model::{Model, WeightFormat};
use promptevo::run::{EvaluationLog, Report, RunSettings};
use promptevo::score::Scorer;
use promptevo::task::{Split, Task};
use serde::{Deserialize, Serialize};

/// Level pairs (validation, pooled) of the sensitivity table.
const GRID: [(f64, f64); 7] = [
    (0.05, 0.01),
    (0.05, 0.0),
    (0.10, 0.0),
    (0.01, 0.0),
    (0.05, 0.05),
    (0.10, 0.01),
    (0.01, 0.01),
];

/// One cached score: a validation example of a run's candidate, or a prompt's test accuracy.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Cached {
    Validation {
        run: String,
        id: u64,
        example: ExampleResult,
    },
    Test {
        task: String,
        prompt: String,
        test_n: usize,
        accuracy: f64,
    },
}

/// The evidence of one run.
struct Run {
    settings: RunSettings,
    task: Task,
    initial_id: u64,
    initial_prompt: String,
    challenger_id: u64,
    challenger_prompt: String,
    path: String,
    arm: String,
    /// Test accuracy of the task's first prompt (the report's "initial").
    first_test: f64,
    /// Test accuracy of the best initial prompt.
    best_initial_test: f64,
    /// Test accuracy of the challenger (NaN when the old rule kept the initial prompt: no rule
    /// tried here accepts a challenger without a validation lead, so it is never needed).
    challenger_test: f64,
    /// What the old rule chose: true when the challenger replaced the initial prompt.
    old_accepted: bool,
    dev_diffs: Vec<f64>,
    /// The challenger's validation results: the log's, then what the rules asked for.
    validation: Results,
    initial_validation: Results,
    n: usize,
    capacity: usize,
}

/// A summary of one rule over a set of runs.
#[derive(Serialize, Clone)]
struct Summary {
    rule: String,
    runs: usize,
    kept_initial: usize,
    grew: usize,
    validation_evals_added: usize,
    mean_test: f64,
    mean_change_vs_best_initial: f64,
    below_first_prompt: usize,
    below_best_initial: usize,
}

fn find_runs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if dir.join("result.json").is_file() && dir.join("evaluations.jsonl").is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for e in entries {
        find_runs(&e, out)?;
    }
    Ok(())
}

struct Scoring {
    models: BTreeMap<PathBuf, Model>,
    cache: HashMap<String, Cached>,
    cache_file: Option<std::fs::File>,
}

impl Scoring {
    fn remember(&mut self, key: String, value: Cached) -> Result<()> {
        if let Some(f) = &mut self.cache_file {
            writeln!(f, "{}", serde_json::to_string(&value)?)?;
        }
        self.cache.insert(key, value);
        Ok(())
    }

    fn model(&mut self, path: &Path) -> Result<&Model> {
        if !self.models.contains_key(path) {
            let m = Model::load(path, WeightFormat::Bf16, &candle_core::Device::Cpu)?;
            self.models.insert(path.to_path_buf(), m);
        }
        Ok(&self.models[path])
    }
}

fn val_key(run: &str, id: u64, example: usize) -> String {
    format!("v\u{1}{run}\u{1}{id}\u{1}{example}")
}

fn test_key(task: &str, prompt: &str, n: usize) -> String {
    format!("t\u{1}{task}\u{1}{n}\u{1}{prompt}")
}

/// Validation results of `id` on examples 0..capacity: the log's, the cache's, then scored.
/// One prompt of one run: the candidate whose validation results are completed.
struct Who<'a> {
    settings: &'a RunSettings,
    task: &'a Task,
    run: &'a str,
    id: u64,
    prompt: &'a str,
}

fn complete_validation(
    s: &mut Scoring,
    who: Who<'_>,
    mut have: Results,
    capacity: usize,
) -> Result<Results> {
    let Who {
        settings,
        task,
        run,
        id,
        prompt,
    } = who;
    let mut missing = Vec::new();
    for e in 0..capacity {
        if have.contains(e) {
            continue;
        }
        match s.cache.get(&val_key(run, id, e)) {
            Some(Cached::Validation { example, .. }) => have.extend([example.clone()]),
            _ => missing.push(e),
        }
    }
    if !missing.is_empty() {
        let fitness = settings.search.fitness;
        let scores = {
            let model = s.model(&settings.model)?;
            let mut scorer = Scorer::new(model, task, settings.engine)?;
            scorer
                .example_scores(
                    prompt,
                    Split::Validation,
                    &missing,
                    settings.calibrate,
                    fitness,
                )?
                .0
        };
        for sc in scores {
            let r = ExampleResult {
                example: sc.example,
                fitness: sc.fitness,
                metric: sc.metric,
                predicted: sc.predicted,
            };
            s.remember(
                val_key(run, id, r.example),
                Cached::Validation {
                    run: run.to_string(),
                    id,
                    example: r.clone(),
                },
            )?;
            have.extend([r]);
        }
    }
    Ok(have)
}

/// Test accuracy of `prompt` on the run's test examples: the report's, the cache's, or scored.
fn test_accuracy(
    s: &mut Scoring,
    settings: &RunSettings,
    task: &Task,
    prompt: &str,
    report: &Report,
) -> Result<f64> {
    for r in [&report.initial, &report.best] {
        if r.prompt == prompt {
            return Ok(r.test_accuracy);
        }
    }
    let key = test_key(&task.name, prompt, report.test_n);
    if let Some(Cached::Test { accuracy, .. }) = s.cache.get(&key) {
        return Ok(*accuracy);
    }
    let accuracy = {
        let model = s.model(&settings.model)?;
        let mut scorer = Scorer::new(model, task, settings.engine)?;
        scorer
            .evaluate(prompt, Split::Test, Some(report.test_n), false)?
            .accuracy
    };
    s.remember(
        key,
        Cached::Test {
            task: task.name.clone(),
            prompt: prompt.to_string(),
            test_n: report.test_n,
            accuracy,
        },
    )?;
    Ok(accuracy)
}

fn load_run(s: &mut Scoring, dir: &Path) -> Result<Option<Run>> {
    let settings: RunSettings =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)
            .with_context(|| dir.join("config.json").display().to_string())?;
    let report: Report = serde_json::from_str(&std::fs::read_to_string(dir.join("result.json"))?)
        .with_context(|| dir.join("result.json").display().to_string())?;
    let Some(choice) = &report.final_choice else {
        return Ok(None);
    };
    if choice.finalists.len() < 2 {
        return Ok(None);
    }
    let task = Task::load(&settings.task)?;
    let records = EvaluationLog::read(&dir.join("evaluations.jsonl"))?;
    let mut dev: HashMap<u64, Results> = HashMap::new();
    let mut val: HashMap<u64, Results> = HashMap::new();
    for r in &records {
        let map = match r.pool {
            Pool::Dev => &mut dev,
            Pool::Validation => &mut val,
            Pool::Train => continue,
        };
        map.entry(r.id)
            .or_default()
            .extend(r.results.iter().cloned());
    }
    let n = choice.validation_n;
    let initial = &choice.finalists[0];
    // The challenger as the final choice picks it.
    let c = &choice.finalists[challenger_index(&choice.finalists, Criterion::Metric)];
    let capacity = task.validation.len();
    let run = dir.display().to_string();
    let initial_validation = val.remove(&initial.id).unwrap_or_default();
    let validation = val.remove(&c.id).unwrap_or_default();
    let dev_diffs = match (dev.get(&c.id), dev.get(&initial.id)) {
        (Some(ch), Some(i)) => paired_diffs(ch, i, Criterion::Metric),
        _ => Vec::new(),
    };
    let best_initial_test = test_accuracy(s, &settings, &task, &initial.prompt, &report)?;
    let challenger_test = if choice.kept_initial {
        f64::NAN
    } else {
        test_accuracy(s, &settings, &task, &c.prompt, &report)?
    };
    let parts: Vec<&str> = run.rsplit('/').collect();
    Ok(Some(Run {
        initial_id: initial.id,
        initial_prompt: initial.prompt.clone(),
        challenger_id: c.id,
        challenger_prompt: c.prompt.clone(),
        arm: parts.get(2).copied().unwrap_or("?").to_string(),
        first_test: report.initial.test_accuracy,
        settings,
        task,
        best_initial_test,
        challenger_test,
        old_accepted: !choice.kept_initial,
        dev_diffs,
        validation,
        initial_validation,
        n,
        capacity,
        path: run,
    }))
}

/// Applies a rule to every run: None is the old rule (any validation lead wins).
fn summarise(
    s: &mut Scoring,
    name: &str,
    runs: &mut [&mut Run],
    levels: Option<Levels>,
) -> Result<Summary> {
    let mut kept = 0;
    let mut grew = 0;
    let mut added = 0;
    let mut tests = Vec::new();
    let mut change = Vec::new();
    let (mut below_first, mut below_best) = (0, 0);
    for r in runs.iter_mut() {
        let accepted = match levels {
            None => r.old_accepted,
            Some(levels) => {
                let seq = sequential_test(&r.dev_diffs.clone(), r.n, r.capacity, levels, |upto| {
                    let have = std::mem::take(&mut r.initial_validation);
                    r.initial_validation = complete_validation(
                        s,
                        Who {
                            settings: &r.settings,
                            task: &r.task,
                            run: &r.path,
                            id: r.initial_id,
                            prompt: &r.initial_prompt,
                        },
                        have,
                        upto,
                    )?;
                    let have = std::mem::take(&mut r.validation);
                    r.validation = complete_validation(
                        s,
                        Who {
                            settings: &r.settings,
                            task: &r.task,
                            run: &r.path,
                            id: r.challenger_id,
                            prompt: &r.challenger_prompt,
                        },
                        have,
                        upto,
                    )?;
                    Ok::<_, anyhow::Error>(paired_diffs_below(
                        &r.validation,
                        &r.initial_validation,
                        Criterion::Metric,
                        upto,
                    ))
                })?;
                let last = *seq.looks.last().unwrap_or(&r.n);
                if seq.looks.len() > 1 {
                    grew += 1;
                    added += 2 * (last - r.n);
                }
                seq.accepted
            }
        };
        let test = if accepted {
            r.challenger_test
        } else {
            kept += 1;
            r.best_initial_test
        };
        tests.push(test);
        change.push(test - r.best_initial_test);
        below_first += usize::from(test < r.first_test);
        below_best += usize::from(test < r.best_initial_test);
    }
    Ok(Summary {
        rule: name.to_string(),
        runs: runs.len(),
        kept_initial: kept,
        grew,
        validation_evals_added: added,
        mean_test: promptevo::stats::mean(&tests),
        mean_change_vs_best_initial: promptevo::stats::mean(&change),
        below_first_prompt: below_first,
        below_best_initial: below_best,
    })
}

fn rule_name(levels: Levels) -> String {
    if levels.pooled == 0.0 {
        format!("validation p < {}", levels.validation)
    } else {
        format!(
            "validation p < {} or pooled p < {}",
            levels.validation, levels.pooled
        )
    }
}

fn print_table(title: &str, rows: &[Summary]) {
    println!("\n{title}\n");
    println!("| rule | runs | kept initial | grew | validation evals added | mean test | vs best initial | below first prompt | below best initial |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.1}% | {:+.2} pts | {} | {} |",
            r.rule,
            r.runs,
            r.kept_initial,
            r.grew,
            r.validation_evals_added,
            100.0 * r.mean_test,
            100.0 * r.mean_change_vs_best_initial,
            r.below_first_prompt,
            r.below_best_initial
        );
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let cache_path = args
        .iter()
        .position(|a| a == "--cache")
        .map(|i| {
            args.get(i + 1)
                .map(PathBuf::from)
                .context("--cache needs a file")
        })
        .transpose()?;
    let dirs: Vec<PathBuf> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !(a.starts_with("--") || *i > 0 && args[i - 1] == "--cache"))
        .map(|(_, a)| PathBuf::from(a))
        .collect();
    if dirs.is_empty() {
        bail!("usage: cargo bench --bench final_choice -- RUN_DIR... [--cache FILE] [--json]");
    }
    let mut cache = HashMap::new();
    if let Some(p) = &cache_path {
        if p.exists() {
            for (k, line) in std::fs::read_to_string(p)?.lines().enumerate() {
                let Ok(c) = serde_json::from_str::<Cached>(line) else {
                    eprintln!("{}:{}: unreadable cache line skipped", p.display(), k + 1);
                    continue;
                };
                let key = match &c {
                    Cached::Validation { run, id, example } => val_key(run, *id, example.example),
                    Cached::Test {
                        task,
                        prompt,
                        test_n,
                        ..
                    } => test_key(task, prompt, *test_n),
                };
                cache.insert(key, c);
            }
        }
    }
    let cache_file = cache_path
        .as_ref()
        .map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| p.display().to_string())
        })
        .transpose()?;
    let mut scoring = Scoring {
        models: BTreeMap::new(),
        cache,
        cache_file,
    };
    let mut paths = Vec::new();
    for d in &dirs {
        find_runs(d, &mut paths)?;
    }
    let mut runs = Vec::new();
    for (k, p) in paths.iter().enumerate() {
        eprintln!("[{}/{}] {}", k + 1, paths.len(), p.display());
        if let Some(r) = load_run(&mut scoring, p)? {
            runs.push(r);
        }
    }
    let mut all: Vec<&mut Run> = runs.iter_mut().collect();
    let mut overall = vec![summarise(
        &mut scoring,
        "old: any validation lead",
        &mut all,
        None,
    )?];
    overall.push(summarise(
        &mut scoring,
        &format!("{} (the product)", rule_name(LEVELS)),
        &mut all,
        Some(LEVELS),
    )?);
    for (v, p) in GRID.iter().skip(1) {
        let levels = Levels {
            validation: *v,
            pooled: *p,
        };
        overall.push(summarise(
            &mut scoring,
            &rule_name(levels),
            &mut all,
            Some(levels),
        )?);
    }
    let mut groups: BTreeMap<(String, String), Vec<&mut Run>> = BTreeMap::new();
    for r in runs.iter_mut() {
        groups
            .entry((r.arm.clone(), r.task.name.clone()))
            .or_default()
            .push(r);
    }
    let mut by_group = Vec::new();
    let mut changed = Vec::new();
    for ((arm, task), rs) in groups.iter_mut() {
        for (name, levels) in [("old", None), ("new", Some(LEVELS))] {
            let mut sm = summarise(&mut scoring, name, rs, levels)?;
            sm.rule = format!("{arm} / {task}: {name}");
            by_group.push(sm);
        }
        for r in rs.iter_mut() {
            let old_accepted = r.old_accepted;
            let (challenger_test, best_initial_test, path) =
                (r.challenger_test, r.best_initial_test, r.path.clone());
            let new = summarise(&mut scoring, "", &mut [&mut **r], Some(LEVELS))?;
            if old_accepted && new.kept_initial == 1 {
                changed.push(format!(
                    "{path}: challenger test {:.1}% -> best initial {:.1}%",
                    100.0 * challenger_test,
                    100.0 * best_initial_test
                ));
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "overall": overall,
                "by_arm_and_task": by_group,
                "changed_to_initial": changed,
            }))?
        );
        return Ok(());
    }
    print_table(
        "All runs: the answer's test accuracy under each rule",
        &overall,
    );
    print_table("By arm and task (old rule vs the product's)", &by_group);
    println!("\nRuns whose answer becomes the best initial prompt under the product's rule:\n");
    for c in &changed {
        println!("- {c}");
    }
    Ok(())
}
