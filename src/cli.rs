//! Command-line interface: `promptevo optimize` evolves a prompt for a task, `promptevo eval`
//! scores one prompt. Progress goes to stderr, results to stdout and the run folder.
//!
//! Exit codes: 0 success, 2 bad input or failure (the message names the file and the fix).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Args, Parser, Subcommand};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use promptevo::evolve::{GaConfig, GeneticAlgorithm, PhrasePool};
use promptevo::model::{Model, ModelSpec, WeightFormat};
use promptevo::run::analysis;
use promptevo::run::evaluator::RunEvaluator;
use promptevo::run::folder::{RunFolder, CONFIG_FILE, EVALUATIONS_FILE};
use promptevo::run::{EvaluationLog, EvaluationRecord, PromptResult, Report};
use promptevo::score::{EngineOptions, Scorer};
use promptevo::task::{metrics, Split, Task};

/// Evolve better prompts for a task, scored by a local language model (no cloud API).
///
/// Start with `promptevo optimize --task experiments/tasks/sst2.toml` after fetching the default
/// model with `./models/fetch-default.sh`.
#[derive(Parser)]
#[command(name = "promptevo", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evolve prompts for a task and write a run folder with a report.
    Optimize(OptimizeArgs),
    /// Score one prompt on a split of a task.
    Eval(EvalArgs),
    /// Print a run's summary (finished or not) in the terminal.
    Show(ReportArgs),
    /// Rebuild a finished run's report.md, result.json and plots from its evaluation log.
    Report(ReportArgs),
    /// Continue an interrupted `optimize` run from its folder: logged evaluations are replayed,
    /// not re-scored, and the run ends as the uninterrupted run would have.
    Resume(ResumeArgs),
}

#[derive(Args)]
struct ReportArgs {
    /// The run folder (holding evaluations.jsonl and the result.json of a finished run).
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
}

#[derive(Args)]
struct ResumeArgs {
    /// The run folder (holding config.json and evaluations.jsonl).
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
    /// No per-candidate progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// Which model to load and how to run it.
#[derive(Args, Clone)]
struct ModelArgs {
    /// Model: a GGUF path, or hf:OWNER/REPO[:FILE.gguf]. Default: $PROMPTEVO_MODEL, else
    /// models/SmolLM2-135M-Instruct.Q4_1.gguf (fetch it with ./models/fetch-default.sh).
    #[arg(long, value_name = "M")]
    model: Option<String>,
    /// How weights are held in memory: bf16 runs promptevo's own CPU kernel (the fastest here);
    /// native keeps the file's quantisation; q8-0 re-quantises; f16/f32 use candle's gemm.
    #[arg(long, value_enum, default_value = "bf16")]
    weights: WeightFormat,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 8, value_name = "N")]
    batch_size: usize,
    /// Recompute the prompt for every example instead of reusing its KV cache (slower; for checks).
    #[arg(long)]
    no_prefix_reuse: bool,
}

#[derive(Args)]
struct OptimizeArgs {
    /// Task file (TOML), e.g. experiments/tasks/sst2.toml.
    #[arg(long, value_name = "FILE")]
    task: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Prompts per generation.
    #[arg(long, default_value_t = 8, value_name = "N")]
    population: usize,
    /// Generations after the initial population.
    #[arg(long, default_value_t = 5, value_name = "N")]
    generations: usize,
    /// Best prompts kept unchanged each generation.
    #[arg(long, default_value_t = 2, value_name = "N")]
    elite: usize,
    /// Tournament size for choosing parents.
    #[arg(long, default_value_t = 2, value_name = "K")]
    tournament_k: usize,
    /// Probability that a child is a crossover of two parents rather than an edit of one.
    #[arg(long, default_value_t = 0.5, value_name = "P")]
    crossover_rate: f64,
    /// Score candidates on the first N dev examples (keeps the default run within minutes on a
    /// 2-core CPU; raise it for less noisy fitness).
    #[arg(long, default_value_t = 100, value_name = "N")]
    dev_limit: usize,
    /// Score the initial and best prompts on the first N test examples for the report.
    #[arg(long, default_value_t = 500, value_name = "N")]
    test_limit: usize,
    /// Seed of the run's one random stream: the same seed and inputs give the same run.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
    /// Use contextually calibrated scores as fitness (overrides the task's `calibrate`).
    #[arg(long)]
    calibrate: bool,
    /// Phrase pool for the insert operator.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "experiments/pools/phrases.toml"
    )]
    pool: PathBuf,
    /// Run folder (default: runs/<task>-<seed>-<time>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// No per-candidate progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Task file (TOML).
    #[arg(long, value_name = "FILE")]
    task: PathBuf,
    /// The prompt to score (default: the task's first initial prompt).
    #[arg(long, value_name = "TEXT")]
    prompt: Option<String>,
    /// Split to score.
    #[arg(long, value_enum, default_value = "dev")]
    split: Split,
    /// Score only the first N examples.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Apply contextual calibration (overrides the task's `calibrate`).
    #[arg(long)]
    calibrate: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// Parses the command line and runs the command.
pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Optimize(a) => optimize(a),
        Command::Eval(a) => eval(a),
        Command::Resume(a) => resume(a),
        Command::Report(a) => report(a),
        Command::Show(a) => show(a),
    }
}

/// Checks the model flags and finds the model file (`--model`, `$PROMPTEVO_MODEL`, the default).
fn model_path(args: &ModelArgs) -> Result<PathBuf> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    Ok(ModelSpec::resolve_default(args.model.as_deref())?.local_path()?)
}

/// Loads a model onto the CPU, reporting the load time on stderr.
fn load_model(path: &Path, weights: WeightFormat) -> Result<Model> {
    let start = Instant::now();
    let model = Model::load(path, weights, &Device::Cpu)?;
    eprintln!(
        "loaded {} in {:.2} s",
        model.name,
        start.elapsed().as_secs_f64()
    );
    Ok(model)
}

fn engine_options(args: &ModelArgs) -> EngineOptions {
    EngineOptions {
        batch_size: args.batch_size,
        prefix_reuse: !args.no_prefix_reuse,
    }
}

fn eval(args: EvalArgs) -> Result<ExitCode> {
    let task = Task::load(&args.task)?;
    let model = load_model(&model_path(&args.model)?, args.model.weights)?;
    let prompt = args
        .prompt
        .clone()
        .unwrap_or_else(|| task.initial_prompts[0].clone());
    let calibrate = args.calibrate || task.calibrate;
    let mut scorer = Scorer::new(&model, &task, engine_options(&args.model))?;
    let start = Instant::now();
    let ev = scorer.evaluate(&prompt, args.split, args.limit, calibrate)?;
    let seconds = start.elapsed().as_secs_f64();
    // Always answering the most frequent label is the baseline of classification only.
    let majority = (!task.is_generation()).then(|| {
        let gold = task.gold(args.split);
        metrics::majority_rate(&gold[..ev.n.min(gold.len())], task.labels.len())
    });
    if args.json {
        let out = serde_json::json!({
            "task": task.name,
            "prompt": prompt,
            "split": args.split.to_string(),
            "n": ev.n,
            "accuracy": ev.accuracy,
            "macro_f1": ev.macro_f1,
            "calibrated": ev.calibrated,
            "majority_rate": majority,
            "metric": task.generation.as_ref().map(|g| g.metric.to_string()),
            "outputs": ev.outputs,
            "model": model.name,
            "seconds": seconds,
            "examples_per_s": ev.n as f64 / seconds.max(1e-9),
        });
        println!("{out}");
    } else {
        match (&task.generation, majority) {
            (Some(g), _) => println!(
                "{} {} n={} {}={:.4} in {:.1} s",
                task.name, args.split, ev.n, g.metric, ev.accuracy, seconds
            ),
            (None, majority) => println!(
                "{} {} n={} accuracy={:.4} macro_f1={:.4}{} (majority rate {:.4}) in {:.1} s",
                task.name,
                args.split,
                ev.n,
                ev.accuracy,
                ev.macro_f1,
                if ev.calibrated { " calibrated" } else { "" },
                majority.unwrap_or(0.0),
                seconds
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn default_out(task: &Task, seed: u64) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{}-s{seed}-{secs}", task.name))
}

/// Everything a run needs, as `config.json` records it; `resume` reads it back.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunSettings {
    task: PathBuf,
    model: PathBuf,
    weights: WeightFormat,
    engine: EngineOptions,
    strategy: String,
    ga: GaConfig,
    seed: u64,
    dev_limit: usize,
    test_limit: usize,
    calibrate: bool,
    pool: PathBuf,
    version: String,
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn optimize(args: OptimizeArgs) -> Result<ExitCode> {
    let task = Task::load(&args.task)?;
    let ga = GaConfig {
        population: args.population,
        generations: args.generations,
        tournament_k: args.tournament_k,
        elite: args.elite,
        crossover_rate: args.crossover_rate,
    };
    ga.validate()?;
    if args.dev_limit == 0 {
        anyhow::bail!("--dev-limit must be at least 1");
    }
    PhrasePool::from_toml_file(&args.pool)?;
    let model_path = model_path(&args.model)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&task, args.seed));
    let folder = RunFolder::create(&out)?;
    let _lock = folder.lock()?;
    let settings = RunSettings {
        task: absolute(&args.task),
        model: absolute(&model_path),
        weights: args.model.weights,
        engine: engine_options(&args.model),
        strategy: "ga".into(),
        ga,
        seed: args.seed,
        dev_limit: args.dev_limit.min(task.dev.len()),
        test_limit: args.test_limit.min(task.test.len()),
        calibrate: args.calibrate || task.calibrate,
        pool: absolute(&args.pool),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    folder.write_json(CONFIG_FILE, &settings)?;
    search_and_report(&settings, &task, &folder, Vec::new(), args.quiet)
}

fn resume(args: ResumeArgs) -> Result<ExitCode> {
    let folder = RunFolder::open(&args.run_dir)?;
    let _lock = folder.lock()?;
    let config = folder.file(CONFIG_FILE);
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let settings: RunSettings = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a promptevo run configuration", config.display()))?;
    let task = Task::load(&settings.task)?;
    let (records, dropped) = EvaluationLog::recover(&folder.file(EVALUATIONS_FILE))?;
    eprintln!(
        "resuming {}: {} evaluations logged{}",
        folder.root().display(),
        records.len(),
        if dropped {
            " (a half-written last line was dropped)"
        } else {
            ""
        }
    );
    search_and_report(&settings, &task, &folder, records, args.quiet)
}

fn report(args: ReportArgs) -> Result<ExitCode> {
    let folder = RunFolder::open(&args.run_dir)?;
    let result = folder.file("result.json");
    let text = std::fs::read_to_string(&result).with_context(|| {
        format!(
            "cannot read {}: the run has not finished (use `promptevo resume`)",
            result.display()
        )
    })?;
    let mut report: Report = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a promptevo result", result.display()))?;
    let records = EvaluationLog::read(&folder.file(EVALUATIONS_FILE))?;
    report.write(&folder, &records)?;
    println!("{}", folder.file("report.md").display());
    Ok(ExitCode::SUCCESS)
}

fn show(args: ReportArgs) -> Result<ExitCode> {
    let folder = RunFolder::open(&args.run_dir)?;
    let records = EvaluationLog::read(&folder.file(EVALUATIONS_FILE))?;
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    println!("run {}", folder.root().display());
    let result = folder.file("result.json");
    if let Ok(text) = std::fs::read_to_string(&result) {
        let r: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a promptevo result", result.display()))?;
        println!(
            "task {} | model {} | {} seed {} | {} candidates, {} forward passes, {:.0} s",
            r.task, r.model, r.strategy, r.seed, r.candidates, r.forward_passes, r.search_seconds
        );
        for (name, p) in [("initial", &r.initial), ("best", &r.best)] {
            println!(
                "{name:<8} #{:<4} dev {}  test {} [{}, {}]  {}",
                p.id,
                pct(p.dev_accuracy),
                pct(p.test_accuracy),
                pct(p.test_ci.0),
                pct(p.test_ci.1),
                p.prompt
            );
        }
        println!(
            "test change {:+.1} pts, 95% CI [{:+.1}, {:+.1}]",
            100.0 * (r.best.test_accuracy - r.initial.test_accuracy),
            100.0 * r.test_change_ci.0,
            100.0 * r.test_change_ci.1
        );
        println!("report: {}", folder.file("report.md").display());
    } else {
        let best = records
            .iter()
            .max_by(|a, b| a.dev_score.total_cmp(&b.dev_score).then(b.id.cmp(&a.id)));
        let generation = records.iter().map(|r| r.generation).max().unwrap_or(0);
        println!(
            "unfinished: {} candidates logged, up to generation {generation}",
            records.len()
        );
        if let Some(b) = best {
            println!(
                "best so far #{} dev {}  {}",
                b.id,
                pct(b.dev_score),
                b.prompt
            );
        }
        println!(
            "continue it with: promptevo resume {}",
            folder.root().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs (or replays, then continues) the search and writes the report.
fn search_and_report(
    settings: &RunSettings,
    task: &Task,
    folder: &RunFolder,
    logged: Vec<EvaluationRecord>,
    quiet: bool,
) -> Result<ExitCode> {
    let pool = PhrasePool::from_toml_file(&settings.pool)?.with_prompts(&task.initial_prompts);
    let model = load_model(&settings.model, settings.weights)?;
    let (ga, dev_n, test_n, calibrate) = (
        &settings.ga,
        settings.dev_limit,
        settings.test_limit,
        settings.calibrate,
    );
    eprintln!(
        "optimising {} ({} initial prompts, population {}, {} generations, {} dev examples) -> {}",
        task.name,
        task.initial_prompts.len(),
        ga.population,
        ga.generations,
        dev_n,
        folder.root().display()
    );
    let mut scorer = Scorer::new(&model, task, settings.engine)?;
    let log = EvaluationLog::open(&folder.file(EVALUATIONS_FILE))?;
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let (outcome, records, search_seconds) = {
        let mut evaluator = RunEvaluator::new(&mut scorer, log, Some(dev_n), calibrate, quiet)
            .with_logged(logged)
            .with_checkpoints(folder.clone())
            .with_progress(
                ((task.initial_prompts.len() + ga.generations * (ga.population - ga.elite)) * dev_n)
                    as u64,
            );
        let outcome = GeneticAlgorithm::new(ga.clone()).run(
            &task.initial_prompts,
            &pool,
            &mut evaluator,
            &mut rng,
        )?;
        let secs = evaluator.elapsed();
        (outcome, std::mem::take(&mut evaluator.records), secs)
    };
    let forward_passes: u64 = records.iter().map(|r| r.forward_passes as u64).sum();
    eprintln!("search done in {search_seconds:.1} s; scoring the initial and best prompts on {test_n} test examples");

    let initial = outcome
        .initial
        .first()
        .context("the run has no initial prompt")?;
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
        model: model.name.clone(),
        seed: settings.seed,
        strategy: settings.strategy.clone(),
        calibrate,
        dev_n,
        test_n,
        // Generation tasks have no label to always guess: their trivial baseline is 0.
        test_majority: if task.is_generation() {
            0.0
        } else {
            let gold_test = task.gold(Split::Test);
            metrics::majority_rate(&gold_test[..test_n.min(gold_test.len())], task.labels.len())
        },
        candidates: records.len(),
        forward_passes,
        search_seconds,
        initial: initial_result,
        best: best_result,
        top: Vec::new(),
        test_change_ci: analysis::bootstrap_ci(&paired, settings.seed),
        generations: Vec::new(),
        operators: Vec::new(),
        lineage: Vec::new(),
    };
    report.write(folder, &records)?;
    eprintln!(
        "initial: dev {:.1}% test {:.1}%  |  best (#{}): dev {:.1}% test {:.1}%",
        100.0 * report.initial.dev_accuracy,
        100.0 * report.initial.test_accuracy,
        report.best.id,
        100.0 * report.best.dev_accuracy,
        100.0 * report.best.test_accuracy
    );
    println!("{}", folder.file("report.md").display());
    Ok(ExitCode::SUCCESS)
}
