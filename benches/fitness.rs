//! Which fitness predicts held-out accuracy? Takes the fully scored candidates of finished run
//! folders, scores every prompt on the run's dev examples and on validation examples the search
//! never saw, computes each fitness (accuracy, margin, prob) on dev from the label log-probs, and
//! reports per fitness: the Spearman rank correlation of dev fitness with validation accuracy,
//! and the validation accuracy of the best and of the top 5 candidates by that dev fitness (what
//! a search choosing by it would hand over). The default `--fitness` is chosen from this table.
//!
//! `cargo bench --bench fitness -- RUN_DIR [RUN_DIR ...] [--validation N] [--json]`

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use promptevo::model::{Model, WeightFormat};
use promptevo::run::{EvaluationLog, RunSettings};
use promptevo::score::{EngineOptions, Scorer};
use promptevo::stats;
use promptevo::task::{Fitness, Split, Task};
use serde::Serialize;

/// The fitnesses compared.
const FITNESSES: [Fitness; 3] = [Fitness::Accuracy, Fitness::Margin, Fitness::Prob];

/// Top candidates whose mean validation accuracy is reported.
const TOP: usize = 5;

/// One fitness's row for one run.
#[derive(Serialize)]
struct Row {
    /// The run folder.
    run: String,
    /// Fitness name.
    fitness: String,
    /// Fully scored candidates compared.
    candidates: usize,
    /// Spearman correlation of dev fitness with validation accuracy.
    spearman: f64,
    /// Validation accuracy of the best candidate by dev fitness (ties: earliest id).
    best_validation: f64,
    /// Mean validation accuracy of the top 5 by dev fitness.
    top5_validation: f64,
}

/// Pearson correlation of two equally long series.
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (stats::mean(a), stats::mean(b));
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Mean fitness of `prompt` on the first `n` examples of `split`, and the per-example gold.
fn mean_fitness(
    scorer: &mut Scorer<'_>,
    task: &Task,
    prompt: &str,
    split: Split,
    n: usize,
    fitness: Fitness,
) -> Result<f64> {
    let ids: Vec<usize> = (0..n).collect();
    let (logprobs, _) = scorer.label_logprobs_of(prompt, split, &ids)?;
    let gold = task.gold(split);
    let values: Vec<f64> = logprobs
        .iter()
        .zip(&gold)
        .map(|(lp, &g)| fitness.of(lp, g))
        .collect();
    Ok(stats::mean(&values))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let validation_n: usize = match args.iter().position(|a| a == "--validation") {
        Some(i) => args
            .get(i + 1)
            .context("--validation needs a number")?
            .parse()?,
        None => 100,
    };
    let runs: Vec<PathBuf> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with("--") && *a != "--bench" && !(i > &0 && args[i - 1] == "--validation")
        })
        .map(|(_, a)| PathBuf::from(a))
        .collect();
    if runs.is_empty() {
        bail!(
            "usage: cargo bench --bench fitness -- RUN_DIR [RUN_DIR ...] [--validation N] [--json]"
        );
    }
    let mut rows = Vec::new();
    let mut models: BTreeMap<PathBuf, Model> = BTreeMap::new();
    for run in &runs {
        let config = run.join("config.json");
        let settings: RunSettings = serde_json::from_str(
            &std::fs::read_to_string(&config).with_context(|| format!("{}", config.display()))?,
        )?;
        let task = Task::load(&settings.task)?;
        if task.is_generation() {
            bail!(
                "{}: a generation task has no label log-probs",
                run.display()
            );
        }
        if !models.contains_key(&settings.model) {
            let m = Model::load(
                &settings.model,
                WeightFormat::Bf16,
                &candle_core::Device::Cpu,
            )?;
            models.insert(settings.model.clone(), m);
        }
        let model = &models[&settings.model];
        let mut scorer = Scorer::new(model, &task, EngineOptions::default())?;
        let records = EvaluationLog::read(&run.join("evaluations.jsonl"))?;
        let mut prompts: Vec<(u64, String)> = records
            .iter()
            .filter(|r| r.is_dev() && r.n >= settings.dev_limit)
            .map(|r| (r.id, r.prompt.clone()))
            .collect();
        prompts.sort();
        prompts.dedup();
        let val_n = validation_n.min(task.validation.len());
        let mut validation = Vec::with_capacity(prompts.len());
        for (_, p) in &prompts {
            validation.push(mean_fitness(
                &mut scorer,
                &task,
                p,
                Split::Validation,
                val_n,
                Fitness::Accuracy,
            )?);
        }
        for fitness in FITNESSES {
            let mut dev = Vec::with_capacity(prompts.len());
            for (_, p) in &prompts {
                dev.push(mean_fitness(
                    &mut scorer,
                    &task,
                    p,
                    Split::Dev,
                    settings.dev_limit,
                    fitness,
                )?);
            }
            let spearman = pearson(
                &stats::average_ranks(&dev),
                &stats::average_ranks(&validation),
            );
            let mut order: Vec<usize> = (0..dev.len()).collect();
            order.sort_by(|&a, &b| dev[b].total_cmp(&dev[a]).then(a.cmp(&b)));
            let top: Vec<f64> = order.iter().take(TOP).map(|&i| validation[i]).collect();
            rows.push(Row {
                run: run.display().to_string(),
                fitness: fitness.to_string(),
                candidates: prompts.len(),
                spearman,
                best_validation: validation[order[0]],
                top5_validation: stats::mean(&top),
            });
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("| run | fitness | candidates | Spearman (dev fitness, validation acc) | validation acc of the best | of the top {TOP} |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.3} | {:.1}% | {:.1}% |",
            r.run,
            r.fitness,
            r.candidates,
            r.spearman,
            100.0 * r.best_validation,
            100.0 * r.top5_validation
        );
    }
    Ok(())
}
