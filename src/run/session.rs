//! One run, end to end, as a library call: the resolved settings a run folder records, and
//! [`execute`], which searches (or resumes a search), scores the initial and best prompts on
//! test and writes the report. The CLI's `optimize`/`resume` and the benchmark harness both
//! call it, so every run is accounted and reported the same way.

use std::path::PathBuf;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::analysis;
use super::cost::CostMeter;
use super::evaluator::{PoolSizes, RunEvaluator};
use super::folder::{RunFolder, EVALUATIONS_FILE};
use super::length::{self, LengthPoint, LengthReport};
use super::log::{EvaluationLog, EvaluationRecord};
use super::report::{PromptResult, Report, SplitBalance};
use crate::error::{Error, Result};
use crate::evolve::strategies::{strategy_model_use, ModelUse};
use crate::evolve::{
    run_search, OperatorContext, PhrasePool, SearchConfig, TextGenerator, TrainExample, TrainPool,
};
use crate::model::generate::{ChatGenerator, GenerateOptions};
use crate::model::{Model, WeightFormat};
use crate::progress::{Event, Progress};
use crate::remote::chat::ServerChat;
use crate::remote::{Client, ServerConfig};
use crate::score::{BackendInfo, EngineOptions, Scorer};
use crate::task::{metrics, Split, Task};

/// Train examples offered to the demonstration genes (and probed by error-driven moves): enough
/// for a label-balanced choice on every shipped task.
pub(crate) const DEMO_POOL: usize = 64;

/// Validation examples the final choice scores each finalist on by default.
pub const DEFAULT_VALIDATION_LIMIT: usize = 100;

/// Train (input, target) pairs offered to instruction induction.
pub(crate) const TRAIN_PAIRS: usize = 32;

fn cpu() -> String {
    "cpu".into()
}

/// Everything a run needs, as `config.json` records it; `resume` reads it back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSettings {
    /// The task file.
    pub task: PathBuf,
    /// The scoring model file.
    pub model: PathBuf,
    /// The model that writes text for model-driven operators (None: the scoring model).
    #[serde(default)]
    pub mutator_model: Option<PathBuf>,
    /// The inference server that scores (None: the model file `model` runs in process; Some:
    /// `model` holds its URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerConfig>,
    /// The inference server model-driven operators write through (None: `mutator_model` is a
    /// file, or the scoring model writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutator_server: Option<ServerConfig>,
    /// How weights are held in memory.
    pub weights: WeightFormat,
    /// Where the model runs (`cpu`, `cuda`, `cuda:N`, `metal`).
    #[serde(default = "cpu")]
    pub device: String,
    /// Batching and prefix reuse.
    pub engine: EngineOptions,
    /// The strategy and its settings.
    pub search: SearchConfig,
    /// Seed of the run's one random stream.
    pub seed: u64,
    /// Dev examples per full evaluation.
    pub dev_limit: usize,
    /// Test examples scored for the report.
    pub test_limit: usize,
    /// Validation examples of the final choice (0: the answer is the best on dev; runs written
    /// before validation existed read as 0).
    #[serde(default)]
    pub validation_limit: usize,
    /// Whether fitness uses contextually calibrated scores.
    pub calibrate: bool,
    /// The phrase pool file.
    pub pool: PathBuf,
    /// promptevo version that wrote it.
    pub version: String,
    /// Only the task's first N initial prompts are used (benchmarks cap them so the initial
    /// population does not eat the budget); None: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_initial_prompts: Option<usize>,
}

/// Whether the strategy or an enabled operator asks a model for text.
pub(crate) fn needs_generator(search: &SearchConfig) -> Result<bool> {
    Ok(strategy_model_use(&search.strategy) != ModelUse::Never || operators_need_model(search)?)
}

/// Whether an enabled operator asks a model for text.
fn operators_need_model(search: &SearchConfig) -> Result<bool> {
    Ok(crate::evolve::strategies::check_operators(search)?
        .iter()
        .any(|name| crate::evolve::operator_by_name(name).is_some_and(|op| op.needs_model())))
}

/// How model-driven operators decode: the search's temperature, top-p and length limit.
fn operator_decoding(search: &SearchConfig) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: search.max_new_tokens,
        temperature: search.temperature,
        top_p: search.top_p,
        stop: Vec::new(),
    }
}

/// The text generator model-driven operators use when a server writes: its chat endpoint with
/// the search's decoding settings and a seed per request from the run's stream.
pub(crate) fn server_generator(client: Client, search: &SearchConfig) -> ServerChat {
    ServerChat::new(client, operator_decoding(search))
}

/// What [`chat_generator`] gives.
pub(crate) enum ChatWriter<'m> {
    /// Neither the strategy nor an enabled operator asks for text.
    NotNeeded,
    /// The model's chat template, with the search's decoding.
    Writes(Box<ChatGenerator<'m>>),
    /// The model cannot chat and the strategy can do without (the default skips its reflection
    /// stage): the warning to show.
    Skipped(String),
}

/// The text generator model-driven operators use: the model's own chat template and a seeded
/// sampler. An error when the strategy or an enabled operator needs the model and it cannot
/// chat (no chat template), unless the strategy can do without.
pub(crate) fn chat_generator<'m>(
    model: &'m Model,
    search: &SearchConfig,
) -> Result<ChatWriter<'m>> {
    let strategy_use = strategy_model_use(&search.strategy);
    let operators_ask = operators_need_model(search)?;
    if strategy_use == ModelUse::Never && !operators_ask {
        return Ok(ChatWriter::NotNeeded);
    }
    let options = operator_decoding(search);
    match ChatGenerator::new(model, options) {
        Ok(generator) => Ok(ChatWriter::Writes(Box::new(generator))),
        Err(e) if strategy_use == ModelUse::WhenItChats && !operators_ask => {
            Ok(ChatWriter::Skipped(format!(
                "{} cannot chat ({e}), so the {} strategy makes only the moves that need no model (its reflective rewrites are skipped); pass --mutator-model with an instruct GGUF to have them",
                model.name, search.strategy
            )))
        }
        Err(e) => Err(Error::Usage(format!(
            "the {} strategy's operators ask {} for text, but it cannot chat ({e}); pass --mutator-model with an instruct GGUF or disable the model-driven operators",
            search.strategy, model.name
        ))),
    }
}

/// The file a run through an inference server records its backend in.
pub(crate) const BACKEND_FILE: &str = "backend.json";

/// The backend's description when a server scores or writes (None for a run wholly in
/// process, whose folder stays as it was), with the generator's reproducibility note.
fn backend_info(scorer: &Scorer<'_>, mutator_note: &Option<String>) -> Option<BackendInfo> {
    let mut info = scorer.backend_info();
    if info.kind != "server" && mutator_note.is_none() {
        return None;
    }
    info.notes.extend(mutator_note.clone());
    Some(info)
}

/// The train pool operators read from a task: its first [`DEMO_POOL`] train examples, each
/// with its demonstration as the task renders it (completion text or chat turns), the first
/// [`TRAIN_PAIRS`] of them shown as input-output pairs.
pub(crate) fn train_pool(task: &Task) -> TrainPool {
    let examples = task
        .train
        .iter()
        .take(DEMO_POOL)
        .map(|e| TrainExample {
            input: e.input.clone(),
            target: e.target.clone(),
            demonstration: task.demonstration(e),
        })
        .collect();
    TrainPool::new(examples, TRAIN_PAIRS)
}

/// What operators may use from a task: the pool (plus the initial prompts' phrases), the
/// train pool, the task description, and the generator.
pub(crate) fn operator_context<'g>(
    task: &Task,
    initial_prompts: &[String],
    pool: PhrasePool,
    train: &'g TrainPool,
    generator: Option<&'g mut dyn TextGenerator>,
) -> OperatorContext<'g> {
    OperatorContext {
        pool: pool.with_prompts(initial_prompts),
        train,
        task_description: task.description.clone(),
        generator,
        ..OperatorContext::default()
    }
}

/// The initial prompts a run starts from: the task's, or its first `max_initial_prompts`.
pub fn initial_prompts<'t>(settings: &RunSettings, task: &'t Task) -> &'t [String] {
    let all = &task.initial_prompts;
    &all[..settings
        .max_initial_prompts
        .map_or(all.len(), |n| n.clamp(1, all.len()))]
}

/// Runs (or, with `logged` records of an interrupted run, replays and continues) the search in
/// `folder`, then scores the initial and best prompts on test and writes the report.
pub fn execute(
    settings: &RunSettings,
    task: &Task,
    scorer: &mut Scorer<'_>,
    generator: Option<&mut dyn TextGenerator>,
    folder: &RunFolder,
    logged: Vec<EvaluationRecord>,
    progress: &dyn Progress,
) -> Result<Report> {
    let pool = PhrasePool::load(&settings.pool)?;
    let (cfg, dev_n, test_n, calibrate) = (
        &settings.search,
        settings.dev_limit,
        settings.test_limit,
        settings.calibrate,
    );
    let expected_evaluations = cfg.max_evals.unwrap_or(
        ((initial_prompts(settings, task).len() + cfg.generations * cfg.population) * dev_n) as u64,
    );
    progress.event(&Event::SearchStarted {
        task: &task.name,
        strategy: &cfg.strategy,
        initial_prompts: initial_prompts(settings, task).len(),
        population: cfg.population,
        dev: dev_n,
        budget: cfg.max_evals,
        folder: folder.root(),
        expected_evaluations,
    });
    let log = EvaluationLog::open(&folder.file(EVALUATIONS_FILE))?;
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let prompts = initial_prompts(settings, task);
    // What a server backend chose and cannot promise, in the folder before the first request.
    let mutator_note = generator.as_deref().and_then(|g| g.reproducibility_note());
    let backend = backend_info(scorer, &mutator_note);
    if let Some(info) = &backend {
        folder.write_json(BACKEND_FILE, info)?;
    }
    let train = train_pool(task);
    // The generator, borrowed for as long as the train pool lives.
    let generator = generator.map(|g| g as &mut dyn TextGenerator);
    let ops = operator_context(task, prompts, pool, &train, generator);
    let meter = CostMeter::start();
    let (outcome, records, search_seconds) = {
        let sizes = PoolSizes {
            dev: dev_n,
            validation: settings.validation_limit,
            validation_capacity: if settings.validation_limit == 0 {
                0
            } else {
                task.validation.len()
            },
            train: DEMO_POOL,
        };
        let mut evaluator = RunEvaluator::new(scorer, log, sizes, calibrate, cfg.fitness, progress)
            .with_length_penalty(cfg.length_penalty, prompts)
            .with_logged(logged)
            .with_checkpoints(folder.clone());
        let outcome = run_search(cfg, prompts, ops, &mut evaluator, &mut rng)?;
        let secs = evaluator.elapsed();
        (outcome, std::mem::take(&mut evaluator.records), secs)
    };
    let cost = meter.finish();
    let forward_passes: u64 = records.iter().map(|r| r.forward_passes as u64).sum();
    progress.event(&Event::SearchDone {
        seconds: search_seconds,
        stop: &outcome.stop,
        test_examples: test_n,
    });
    let initial = outcome
        .initial
        .first()
        .ok_or_else(|| Error::Internal("the run has no initial prompt".into()))?;
    let gold_test = task.gold(Split::Test);
    let test_weights = (!task.is_generation()).then(|| {
        metrics::class_weights(
            &gold_test[..test_n.min(gold_test.len())],
            task.labels().len(),
        )
    });
    let mut result = |id: u64, prompt: &str| -> Result<(PromptResult, Vec<f64>)> {
        let dev = scorer.evaluate(prompt, Split::Dev, Some(dev_n), false)?;
        let dev_cal = scorer.evaluate(prompt, Split::Dev, Some(dev_n), true)?;
        let test = scorer.evaluate(prompt, Split::Test, Some(test_n), false)?;
        let test_cal = scorer.evaluate(prompt, Split::Test, Some(test_n), true)?;
        let correct = test.per_example.clone();
        let result = PromptResult {
            id,
            prompt: prompt.to_string(),
            dev_accuracy: dev.accuracy,
            dev_accuracy_calibrated: dev_cal.accuracy,
            test_accuracy: test.accuracy,
            test_macro_f1: test.macro_f1,
            test_accuracy_calibrated: test_cal.accuracy,
            test_ci: analysis::bootstrap_ci(&correct, settings.seed),
            test_balanced_accuracy: test_weights.as_ref().map(|w| {
                let weighted: Vec<f64> = correct
                    .iter()
                    .zip(&gold_test)
                    .map(|(c, g)| c * w.get(*g).copied().unwrap_or(0.0))
                    .collect();
                crate::stats::mean(&weighted)
            }),
        };
        Ok((result, correct))
    };
    let (initial_result, initial_correct) =
        result(initial.candidate.id, &initial.candidate.prompt())?;
    let (best_result, best_correct) =
        result(outcome.best.candidate.id, &outcome.best.candidate.prompt())?;
    let paired: Vec<f64> = best_correct
        .iter()
        .zip(&initial_correct)
        .map(|(b, i)| b - i)
        .collect();
    let mut report = Report {
        task: task.name.clone(),
        description: task.description.clone(),
        model: scorer.model_name(),
        seed: settings.seed,
        strategy: cfg.strategy.clone(),
        calibrate,
        dev_n,
        test_n,
        // Generation tasks have no label to always guess: their trivial baseline is 0.
        test_majority: if task.is_generation() {
            0.0
        } else {
            metrics::majority_rate(
                &gold_test[..test_n.min(gold_test.len())],
                task.labels().len(),
            )
        },
        candidates: records.len(),
        forward_passes,
        search_seconds,
        search_cpu_seconds: cost.cpu_seconds,
        peak_rss_mb: cost.peak_rss_mb,
        initial: initial_result,
        best: best_result,
        top: Vec::new(),
        test_change_ci: analysis::bootstrap_ci(&paired, settings.seed),
        generations: Vec::new(),
        operators: Vec::new(),
        lineage: Vec::new(),
        evals_used: outcome.evals_used,
        stop: outcome.stop.to_string(),
        model_replies: outcome.model_replies,
        rejected_replies: outcome.rejected_replies,
        fitness: cfg.fitness.to_string(),
        metric: task.metric_name().to_string(),
        screened_out: outcome.screened_out,
        validation_evals: outcome.validation_evals,
        dev_best_id: outcome.dev_best.candidate.id,
        final_choice: outcome.final_choice.clone(),
        headroom: None,
        length: Some(length_report(scorer, &records, dev_n, &outcome)),
        class_balance: class_balance(
            task,
            &[
                (Split::Dev, dev_n),
                (
                    Split::Validation,
                    outcome.final_choice.as_ref().map_or(0, |c| {
                        c.test
                            .as_ref()
                            .and_then(|t| t.looks.last().copied())
                            .unwrap_or(c.validation_n)
                    }),
                ),
                (Split::Test, test_n),
            ],
        ),
        // Re-read: counts such as labels outside the top log-probs grow during the run.
        backend: backend.and_then(|_| backend_info(scorer, &mutator_note)),
        move_families: None,
        stage_order: None,
    };
    report.write(folder, &records)?;
    // Shown even with --quiet: a mutator that writes nothing usable wastes the whole search.
    if let Some(warning) = report.rejected_replies_warning() {
        progress.event(&Event::Warning(&warning));
    }
    Ok(report)
}

/// Label counts of the first `n` examples of each split (nothing for generation tasks or an
/// unused split).
fn class_balance(task: &Task, splits: &[(Split, usize)]) -> Vec<SplitBalance> {
    if task.is_generation() {
        return Vec::new();
    }
    splits
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|&(split, n)| {
            let gold = task.gold(split);
            let gold = &gold[..n.min(gold.len())];
            SplitBalance {
                split: split.to_string(),
                n: gold.len(),
                counts: task
                    .labels()
                    .iter()
                    .cloned()
                    .zip(metrics::class_counts(gold, task.labels().len()))
                    .collect(),
            }
        })
        .collect()
}

/// The prompt-length section: fronts on dev (every fully scored candidate) and validation (the
/// finalists), and the shortest candidate within one standard error of the answer, judged on
/// validation when there was a final choice, else on dev.
fn length_report(
    scorer: &mut Scorer<'_>,
    records: &[EvaluationRecord],
    dev_n: usize,
    outcome: &crate::evolve::SearchOutcome,
) -> LengthReport {
    let mut counted = true;
    let mut tokens = |prompt: &str| {
        let (n, exact) = scorer.prompt_tokens(prompt);
        counted &= exact;
        n
    };
    let full: Vec<EvaluationRecord> = analysis::latest_per_candidate(records)
        .into_iter()
        .filter(|r| r.n >= dev_n)
        .collect();
    let dev_points: Vec<LengthPoint> = full
        .iter()
        .map(|r| LengthPoint {
            id: r.id,
            tokens: tokens(&r.prompt),
            score: r.accuracy,
        })
        .collect();
    let answer = &outcome.best.candidate;
    let (basis, n, points) = match &outcome.final_choice {
        Some(c) => (
            "validation",
            c.validation_n,
            c.finalists
                .iter()
                .map(|f| LengthPoint {
                    id: f.id,
                    tokens: tokens(&f.prompt),
                    score: f.validation_accuracy,
                })
                .collect::<Vec<_>>(),
        ),
        None => ("dev", dev_n, dev_points.clone()),
    };
    let chosen = points
        .iter()
        .find(|p| p.id == answer.id)
        .cloned()
        .unwrap_or_else(|| LengthPoint {
            id: answer.id,
            tokens: tokens(&answer.prompt()),
            score: outcome.best.accuracy,
        });
    let best_short = length::shortest_within(&points, &chosen, n);
    let best_short_prompt = full
        .iter()
        .find(|r| r.id == best_short.id)
        .map(|r| r.prompt.clone())
        .or_else(|| {
            outcome.final_choice.as_ref().and_then(|c| {
                c.finalists
                    .iter()
                    .find(|f| f.id == best_short.id)
                    .map(|f| f.prompt.clone())
            })
        })
        .unwrap_or_else(|| answer.prompt());
    LengthReport {
        counted,
        dev_front: length::front(&dev_points),
        validation_front: if basis == "validation" {
            length::front(&points)
        } else {
            Vec::new()
        },
        basis: basis.to_string(),
        n,
        tolerance: length::standard_error(chosen.score, n),
        chosen,
        best_short,
        best_short_prompt,
    }
}
