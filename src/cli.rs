//! Command-line interface: `promptevo optimize` evolves a prompt for a task, `promptevo eval`
//! scores one prompt. Progress goes to stderr, results to stdout and the run folder.
//!
//! Exit codes: 0 success, 2 bad input or failure (the message names the file and the fix).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use promptevo::evolve::strategies::strategy_summary;

use crate::stderr_progress::StderrProgress;
use promptevo::evolve::strategies::{Replacement, SelectionKind};
use promptevo::evolve::{PhrasePool, SearchConfig, TextGenerator, OPERATORS, STRATEGY_NAMES};
use promptevo::model::{ModelSpec, WeightFormat};
use promptevo::remote::ServerConfig;
use promptevo::run::checkpoint::Checkpoint;
use promptevo::run::folder::{RunFolder, CONFIG_FILE, EVALUATIONS_FILE, REPORT_FILE, RESULT_FILE};
use promptevo::run::{
    Backends, EvaluationLog, EvaluationRecord, ModelSettings, Report, RunSettings,
};
use promptevo::score::{EngineOptions, Scorer};
use promptevo::task::{metrics, Split, Task};

/// `println!` that hands the write's error back (a closed stdout, e.g. piped into `head`, is
/// then a quiet exit in `main`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

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
    Optimize(Box<OptimizeArgs>),
    /// Score one prompt on a split of a task.
    Eval(EvalArgs),
    /// Print a run's summary (finished or not) in the terminal.
    Show(ReportArgs),
    /// Rebuild a finished run's report.md, result.json and plots from its evaluation log.
    Report(ReportArgs),
    /// Continue an interrupted `optimize` run from its folder: logged evaluations are replayed,
    /// not re-scored, and the run ends as the uninterrupted run would have.
    Resume(ResumeArgs),
    /// Run every arm x task x seed of a benchmark file with the same budget, one loaded model
    /// (or one inference server), and write results.csv, results.json, bench.md and plots;
    /// rerunning it skips finished runs and resumes half-finished ones.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Benchmark file (TOML), e.g. experiments/benches/strategies.toml.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Output folder (default: runs/bench-<name>); runs go to <DIR>/runs/<arm>/<task>/seed<k>/.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Run only shard K of N (1 <= K <= N): run i of the grid (in run order: seed, task, arm)
    /// belongs to shard i % N + 1. Its run folders go under --out as usual, its own rows to
    /// <DIR>/shards/<K>-of-<N>/results.csv; no bench.md is written. Start every shard on the
    /// same --out (a shared folder), then `--merge`.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Run only these arms now (names from the benchmark file, comma-separated), e.g. the
    /// quick arms before slow peers; the other arms' finished runs still count in the tables,
    /// and their unfinished ones wait for an invocation without --arms.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    arms: Option<Vec<String>>,
    /// Run nothing: read the finished runs in --out (e.g. written by shards) and write
    /// results.csv, results.json, bench.md and plots as an unsharded run would; fails naming
    /// the runs that have not finished. Give the same model flags as the shards (a server is
    /// not asked: its runs name the served model).
    #[arg(long)]
    merge: bool,
    /// No per-candidate progress on stderr (the one line per run stays).
    #[arg(long, short)]
    quiet: bool,
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
    /// For a run through an inference server that came back at another address: its new base
    /// URL (it must serve the same model; config.json keeps the URL the run started with).
    #[arg(long, value_name = "URL")]
    server_url: Option<String>,
    /// No per-candidate progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// Which model to load and how to run it.
#[derive(Args, Clone)]
struct ModelArgs {
    /// Model: a GGUF path, hf:OWNER/REPO[:FILE.gguf], or an OpenAI-compatible server's base
    /// URL (http://127.0.0.1:8000/v1: vLLM, SGLang, llama.cpp's server; several servers of the
    /// same model separated by commas share the requests; the API key, if any,
    /// from $PROMPTEVO_API_KEY or $OPENAI_API_KEY). Default: $PROMPTEVO_MODEL, else
    /// models/SmolLM2-135M-Instruct.Q4_1.gguf (fetch it with ./models/fetch-default.sh).
    #[arg(long, value_name = "M")]
    model: Option<String>,
    /// With a server URL: the served model's name (default: the first /v1/models lists).
    #[arg(long, value_name = "NAME")]
    server_model: Option<String>,
    /// With a server URL: where the served model's chat template is read for chat tasks (its
    /// GGUF, model folder, tokenizer_config.json or a Jinja file); promptevo renders the chat and
    /// scores it through /completions. Default: the server's /props (llama.cpp's llama-server).
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    /// With a server URL: requests in flight at once, so its continuous batching is fed.
    #[arg(long, value_name = "N", default_value_t = 8)]
    concurrency: usize,
    /// With a server URL: seconds one request may take before it is retried.
    #[arg(long, value_name = "S", default_value_t = promptevo::remote::DEFAULT_TIMEOUT_S)]
    server_timeout: f64,
    /// With a server URL: attempts per request (429, 5xx and connection errors are retried
    /// with exponential backoff and jitter) before the run stops.
    #[arg(long, value_name = "N", default_value_t = promptevo::remote::DEFAULT_ATTEMPTS)]
    server_attempts: u32,
    /// How weights are held in memory: bf16 runs promptevo's own CPU kernel; int8 the same
    /// native path with 8-bit weights times Q8_1-quantised activations (integer dot products,
    /// llama.cpp's arithmetic; the fastest here); native keeps the file's quantisation; q8-0
    /// re-quantises; f16/f32 use candle's gemm.
    #[arg(long, value_enum, default_value = "bf16")]
    weights: WeightFormat,
    /// Examples per forward pass [default: 8 on the CPU, where batches are packed without
    /// padding and 4-16 run at the same speed; 64 on a GPU, which needs wide batches to be busy].
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Where the model runs: cpu, cuda, cuda:N (build with --features cuda) or metal.
    #[arg(long, default_value = "cpu", value_name = "DEV")]
    device: String,
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
    /// Search strategy. The default, fewshot-gepa, at 3,000 evaluations beat random search on
    /// each of sst2, subj, trec and agnews with a paired 95% interval above 0 (+3.0 to +17.2
    /// test points, 5 seeds each; experiments/results/2026-12-03-default), the only strategy
    /// that did.
    #[arg(long, value_name = "NAME", value_parser = strategy_values(), default_value = STRATEGY_NAMES[0])]
    strategy: String,
    /// Prompts per generation (neighbours per step for hillclimb).
    #[arg(long, value_name = "N", default_value_t = defaults().population)]
    population: usize,
    /// Generations after the initial population (an upper bound when a budget is set)
    ///.
    #[arg(long, value_name = "N", default_value_t = defaults().generations)]
    generations: usize,
    /// Best prompts kept unchanged each generation.
    #[arg(long, value_name = "N", default_value_t = defaults().elite)]
    elite: usize,
    /// Parent selection.
    #[arg(long, value_enum, default_value_t = defaults().selection)]
    selection: SelectionKind,
    /// Tournament size for choosing parents.
    #[arg(long, value_name = "K", default_value_t = defaults().tournament_k)]
    tournament_k: usize,
    /// Survivors: plus = (mu+lambda), parents and children compete; comma = (mu,lambda), only
    /// children survive besides the elite.
    #[arg(long, value_enum, default_value_t = defaults().replacement)]
    replacement: Replacement,
    /// Probability that a child is a crossover of two parents rather than an edit of one
    ///.
    #[arg(long, value_name = "P", default_value_t = defaults().crossover_rate)]
    crossover_rate: f64,
    // Help from the operator registry: see `operators_help`.
    #[arg(long, value_name = "NAME=W,...", value_parser = parse_weights, help = operators_help())]
    operators: Option<std::collections::BTreeMap<String, f64>>,
    /// Per-example fitness the search maximises: accuracy (0/1), margin (gold label log-prob
    /// minus the best other, clipped to +-5 nats) or prob (gold label probability over the
    /// labels), or balanced (balanced accuracy: 0/1 weighted by the inverse of each class's
    /// share of the pool, for dev/validation splits not balanced like the data the prompt will
    /// meet; the final choice then compares finalists by it too). accuracy is the default: over
    /// three SST-2 searches' candidates, dev accuracy ranked them closest to their validation
    /// accuracy (benches/fitness.rs). Reports keep accuracy as the headline (and show test
    /// balanced accuracy and each split's class balance); generation tasks use their metric.
    #[arg(long, value_enum, default_value_t = defaults().fitness)]
    fitness: promptevo::task::Fitness,
    /// Paired screening: score a child on N dev examples its best parent was scored on first,
    /// and on the rest of dev only if it is not worse there (0 turns it off).
    #[arg(long, value_name = "N", default_value_t = defaults().screen)]
    screen: usize,
    /// Race new candidates: score a quarter, then half of dev first, and stop those that
    /// cannot reach the top --racing-top (evaluations saved are reported).
    #[arg(long)]
    racing: bool,
    /// How many of the best dev scores racing compares with.
    #[arg(long, value_name = "N", default_value_t = defaults().racing_top)]
    racing_top: usize,
    /// Candidates (the best on dev) re-scored on validation, with the best initial prompt, for
    /// the final choice.
    #[arg(long, value_name = "N", default_value_t = defaults().finalists)]
    finalists: usize,
    /// Prompt length as a second objective (CAPO's): each example's fitness loses L x (prompt
    /// tokens / the longest initial prompt's tokens); 0 (default) is off. The headline metric
    /// and the final choice stay unpenalised; every report shows the accuracy-vs-tokens front
    /// and writes best-short.txt either way.
    #[arg(long, value_name = "L", default_value_t = 0.0)]
    length_penalty: f64,
    /// Budget: stop before the search spends more than N example evaluations (one per dev
    /// example a candidate is scored on, counted the same for every strategy).
    #[arg(long, value_name = "N")]
    max_evals: Option<u64>,
    /// Budget: stop after S seconds of search.
    #[arg(long, value_name = "S")]
    max_seconds: Option<f64>,
    /// Stop after N generations without a better best dev score.
    #[arg(long, value_name = "N")]
    patience: Option<usize>,
    /// Model that writes text for model-driven operators (default: the scoring model); a GGUF
    /// path, hf:OWNER/REPO[:FILE.gguf], or a server's base URL (its /chat/completions is used).
    #[arg(long, value_name = "M")]
    mutator_model: Option<String>,
    /// Sampling temperature of model-driven operators.
    #[arg(long, value_name = "T", default_value_t = defaults().temperature)]
    temperature: f64,
    /// Nucleus sampling threshold of model-driven operators.
    #[arg(long, value_name = "P", default_value_t = defaults().top_p)]
    top_p: f64,
    /// Longest reply (tokens) a model-driven operator may generate.
    #[arg(long, value_name = "N", default_value_t = defaults().max_new_tokens)]
    max_new_tokens: usize,
    /// Start from only the task's first N initial prompts (each costs a full dev evaluation of
    /// the budget).
    #[arg(long, value_name = "N")]
    max_initial_prompts: Option<usize>,
    /// Score candidates on the first N dev examples (keeps the default run within minutes on a
    /// 2-core CPU; raise it for less noisy fitness).
    #[arg(long, default_value_t = 100, value_name = "N")]
    dev_limit: usize,
    /// Score the initial and best prompts on the first N test examples for the report.
    #[arg(long, default_value_t = 500, value_name = "N")]
    test_limit: usize,
    /// Choose the answer among the finalists on the first N validation examples (the task's
    /// `validation` file, else carved from train, disjoint from every demonstration); 0 returns
    /// the best on dev. The best initial prompt stays unless the challenger beats it by a
    /// paired sign test (validation p < 0.05, or dev and validation pooled p < 0.01); a close
    /// lead grows validation (doubling, up to the whole split) before deciding.
    #[arg(long, default_value_t = promptevo::run::session::DEFAULT_VALIDATION_LIMIT, value_name = "N")]
    validation_limit: usize,
    /// Seed of the run's one random stream: the same seed and inputs give the same run.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
    /// Use contextually calibrated scores as fitness (overrides the task's `calibrate`).
    #[arg(long)]
    calibrate: bool,
    /// Phrase pool for the insert, persona and constraint operators (a TOML file; the default
    /// is experiments/pools/phrases.toml, compiled into the binary).
    #[arg(
        long,
        value_name = "FILE",
        default_value = promptevo::evolve::pool::BUILTIN_POOL
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
    /// With --json: add `labels` and `examples`, one entry per example in split order: `index`,
    /// `target`, `predicted`, `score` (1/0) and `label_logprobs` (one per label in `labels`
    /// order, uncalibrated; with calibration also `calibrated_logprobs`, whose argmax is
    /// `predicted`); generation tasks give `targets`, `output`, `score` (the task's `metric`)
    /// and `fitness` (its partial credit) instead of the label fields.
    #[arg(long)]
    per_example: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// `--strategy`'s values, each with its summary from the strategy registry.
fn strategy_values() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(STRATEGY_NAMES.map(|name| {
        clap::builder::PossibleValue::new(name).help(strategy_summary(name).unwrap_or_default())
    }))
}

/// The search settings' defaults: the one source of `optimize`'s flag defaults.
fn defaults() -> SearchConfig {
    SearchConfig::default()
}

/// `--operators`' help, naming every registered operator (no final period: clap drops it
/// from doc-comment help, and the text stays what it was).
fn operators_help() -> String {
    format!(
        "Operator weights, e.g. `paraphrase=1,evo-ga=1,persona=0` (0 disables; others keep the strategy's defaults). Names: {}",
        OPERATORS.join(" ")
    )
}

/// Parses `name=weight,name=weight`.
fn parse_weights(text: &str) -> Result<std::collections::BTreeMap<String, f64>> {
    let mut out = std::collections::BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, w) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("`{part}` is not NAME=WEIGHT (e.g. swap=1)"))?;
        let w: f64 = w
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("weight of `{name}` is not a number: `{w}`"))?;
        out.insert(name.trim().to_string(), w);
    }
    Ok(out)
}

/// Parses the command line and runs the command.
pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Optimize(a) => optimize(*a),
        Command::Eval(a) => eval(a),
        Command::Resume(a) => resume(a),
        Command::Report(a) => report(a),
        Command::Show(a) => show(a),
        Command::Bench(a) => bench(a),
    }
}

fn bench(args: BenchArgs) -> Result<ExitCode> {
    let shard = args
        .shard
        .as_deref()
        .map(promptevo::bench::Shard::parse)
        .transpose()?;
    if args.merge && shard.is_some() {
        anyhow::bail!("--merge reads every shard's runs; drop --shard");
    }
    if args.merge && args.arms.is_some() {
        anyhow::bail!("--merge reads every arm's runs; drop --arms");
    }
    let config = promptevo::bench::BenchConfig::load(&args.config)?;
    let model = model_settings(&args.model)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("bench-{}", config.name)));
    // Tasks, pool and arm names are checked before the model is loaded or the server asked.
    promptevo::bench::Selection {
        shard,
        arms: args.arms.clone(),
    }
    .check(&config)?;
    promptevo::bench::runner::load_tasks(&config)?;
    PhrasePool::load(&config.pool)?;
    if args.merge {
        let results = promptevo::bench::merge(&config, &out, &model)?;
        eprintln!("merged {} finished runs", results.len());
        out!("{}", out.join("bench.md").display());
        return Ok(ExitCode::SUCCESS);
    }
    let backends = Backends::open(&model, StderrProgress::new(args.quiet))?;
    let start = Instant::now();
    let (results, written) = match shard {
        Some(s) => (
            promptevo::bench::run_shard(&config, &out, &backends, s, args.arms.clone())?,
            promptevo::bench::shard_dir(&out, s).join("results.csv"),
        ),
        None => (
            promptevo::bench::run(&config, &out, &backends, args.arms.clone())?,
            out.join("bench.md"),
        ),
    };
    eprintln!(
        "{} runs in {:.0} s",
        results.len(),
        start.elapsed().as_secs_f64()
    );
    if let Some(s) = shard {
        eprintln!(
            "shard {s} done; once every shard is, write the tables with: promptevo bench --config {} --out {} --merge (and the same model flags)",
            args.config.display(),
            out.display()
        );
    }
    out!("{}", written.display());
    Ok(ExitCode::SUCCESS)
}

/// The server `--model` names (None: a model file), with the server flags checked.
fn server_config(args: &ModelArgs) -> Result<Option<ServerConfig>> {
    let Some(url) = args
        .model
        .clone()
        .or_else(|| std::env::var("PROMPTEVO_MODEL").ok())
        .filter(|m| promptevo::remote::is_server_url(m))
    else {
        if args.server_model.is_some() {
            anyhow::bail!("--server-model names a served model; give --model a server URL too (e.g. http://127.0.0.1:8000/v1)");
        }
        if args.chat_template.is_some() {
            anyhow::bail!("--chat-template is for a served model (an in-process model's own template is used); give --model a server URL too, or drop --chat-template");
        }
        return Ok(None);
    };
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    if args.server_attempts == 0 {
        anyhow::bail!("--server-attempts must be at least 1");
    }
    if !(args.server_timeout.is_finite() && args.server_timeout > 0.0) {
        anyhow::bail!("--server-timeout must be a positive number of seconds");
    }
    Ok(Some(ServerConfig {
        model: args.server_model.clone(),
        chat_template: args.chat_template.as_deref().map(absolute),
        concurrency: args.concurrency,
        timeout_s: args.server_timeout,
        attempts: args.server_attempts,
        ..ServerConfig::new(&url)
    }))
}

/// The model flags as settings: the server `--model` names, else the model file (found as
/// [`model_path`] finds it); no mutator (optimize adds its own).
fn model_settings(args: &ModelArgs) -> Result<ModelSettings> {
    let server = server_config(args)?;
    let model = match &server {
        Some(config) => PathBuf::from(&config.url),
        None => model_path(args)?,
    };
    Ok(ModelSettings {
        model,
        server,
        mutator_model: None,
        mutator_server: None,
        weights: args.weights,
        device: args.device.clone(),
        engine: engine_options(args),
    })
}

/// Checks the model flags and finds the model file (`--model`, `$PROMPTEVO_MODEL`, the default).
fn model_path(args: &ModelArgs) -> Result<PathBuf> {
    if args.batch_size == Some(0) {
        anyhow::bail!("--batch-size must be at least 1");
    }
    Ok(ModelSpec::resolve_default(args.model.as_deref())?.local_path()?)
}

/// Default examples per forward pass on the CPU (bench: batch 4-8 is the sweet spot).
const CPU_BATCH: usize = 8;
/// Default examples per forward pass on a GPU (bench on an H100: batch 64 is 2.5x batch 16).
const GPU_BATCH: usize = 64;

fn engine_options(args: &ModelArgs) -> EngineOptions {
    EngineOptions {
        batch_size: args.batch_size.unwrap_or(if args.device.trim() == "cpu" {
            CPU_BATCH
        } else {
            GPU_BATCH
        }),
        prefix_reuse: !args.no_prefix_reuse,
    }
}

fn eval(args: EvalArgs) -> Result<ExitCode> {
    if args.per_example && !args.json {
        anyhow::bail!("--per-example lists the examples in the JSON output; add --json");
    }
    let task = Task::load(&args.task)?;
    let backends = Backends::open(&model_settings(&args.model)?, StderrProgress::new(false))?;
    let prompt = args
        .prompt
        .clone()
        .unwrap_or_else(|| task.initial_prompts[0].clone());
    let calibrate = args.calibrate || task.calibrates();
    let mut scorer = backends.scorer(&task)?;
    let start = Instant::now();
    let ev = scorer.evaluate(&prompt, args.split, args.limit, calibrate)?;
    let seconds = start.elapsed().as_secs_f64();
    // Always answering the most frequent label is the baseline of classification only.
    let majority = (!task.is_generation()).then(|| {
        let gold = task.gold(args.split);
        metrics::majority_rate(&gold[..ev.n.min(gold.len())], task.labels().len())
    });
    if args.json {
        let mut out = serde_json::json!({
            "task": task.name,
            "prompt": prompt,
            "split": args.split.to_string(),
            "n": ev.n,
            "accuracy": ev.accuracy,
            "macro_f1": ev.macro_f1,
            "calibrated": ev.calibrated,
            "majority_rate": majority,
            "metric": task.metric_name(),
            "outputs": ev.outputs,
            "model": scorer.model_name(),
            "backend": scorer.backend_info(),
            "seconds": seconds,
            "examples_per_s": ev.n as f64 / seconds.max(1e-9),
        });
        if args.per_example {
            if !task.is_generation() {
                // The order of every example's `label_logprobs`.
                out["labels"] = serde_json::json!(task.labels());
            }
            out["examples"] = per_example(&mut scorer, &task, &prompt, args.split, &ev)?;
        }
        out!("{out}");
    } else {
        match (task.generation(), majority) {
            (Some(g), _) => out!(
                "{} {} n={} {}={:.4} in {:.1} s",
                task.name,
                args.split,
                ev.n,
                g.metric,
                ev.accuracy,
                seconds
            ),
            (None, majority) => out!(
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

/// `eval --per-example`: one JSON entry per example of `ev`, in split order (`index` is the
/// example's position in the split, as `--limit` counts). The label
/// log-probs come from the scorer's cache (filled by the evaluation), so nothing is recomputed.
fn per_example(
    scorer: &mut Scorer<'_>,
    task: &Task,
    prompt: &str,
    split: Split,
    ev: &promptevo::score::Evaluation,
) -> Result<serde_json::Value> {
    let examples = &task.examples(split)[..ev.n];
    if task.is_generation() {
        let entries = examples
            .iter()
            .zip(&ev.outputs)
            .zip(ev.per_example.iter().zip(&ev.fitness))
            .enumerate()
            .map(|(i, ((e, output), (score, fitness)))| {
                serde_json::json!({
                    "index": i,
                    "target": e.target,
                    "targets": e.targets,
                    "output": output,
                    "score": score,
                    "fitness": fitness,
                })
            })
            .collect();
        return Ok(serde_json::Value::Array(entries));
    }
    let (logprobs, _) = scorer.label_logprobs(prompt, split, Some(ev.n))?;
    let content_free = if ev.calibrated {
        Some(scorer.content_free_logprobs(prompt)?)
    } else {
        None
    };
    let entries = examples
        .iter()
        .zip(&logprobs)
        .zip(ev.predictions.iter().zip(&ev.per_example))
        .enumerate()
        .map(|(i, ((e, lp), (&p, score)))| {
            let mut entry = serde_json::json!({
                "index": i,
                "target": e.target,
                "predicted": task.labels()[p],
                "score": score,
                "label_logprobs": lp,
            });
            if let Some(cf) = &content_free {
                entry["calibrated_logprobs"] =
                    serde_json::json!(promptevo::score::calibrate(lp, cf));
            }
            entry
        })
        .collect();
    Ok(serde_json::Value::Array(entries))
}

fn default_out(task: &Task, seed: u64) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{}-s{seed}-{secs}", task.name))
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn optimize(args: OptimizeArgs) -> Result<ExitCode> {
    let task = Task::load(&args.task)?;
    let search = SearchConfig {
        strategy: args.strategy.clone(),
        population: args.population,
        generations: args.generations,
        tournament_k: args.tournament_k,
        elite: args.elite,
        crossover_rate: args.crossover_rate,
        selection: args.selection,
        replacement: args.replacement,
        operators: args.operators.clone().unwrap_or_default(),
        racing: args.racing,
        racing_top: args.racing_top,
        screen: args.screen,
        fitness: args.fitness,
        finalists: args.finalists,
        max_evals: args.max_evals,
        max_seconds: args.max_seconds,
        patience: args.patience,
        temperature: args.temperature,
        top_p: args.top_p,
        max_new_tokens: args.max_new_tokens,
        length_penalty: args.length_penalty,
    };
    search.validate()?;
    promptevo::evolve::strategies::check_operators(&search)?;
    if args.dev_limit == 0 {
        anyhow::bail!("--dev-limit must be at least 1");
    }
    if args.max_initial_prompts == Some(0) {
        anyhow::bail!("--max-initial-prompts must be at least 1");
    }
    PhrasePool::load(&args.pool)?;
    let ModelSettings {
        model,
        server,
        weights,
        device,
        engine,
        ..
    } = model_settings(&args.model)?;
    let model_path = match &server {
        Some(_) => model,
        None => absolute(&model),
    };
    promptevo::model::parse_device(&device)?;
    let (mutator_model, mutator_server) = match &args.mutator_model {
        Some(m) if promptevo::remote::is_server_url(m) => {
            let config = ServerConfig {
                // The served model is named for the scoring server; the same URL serves it.
                model: server
                    .as_ref()
                    .filter(|s| s.url == ServerConfig::new(m).url)
                    .and_then(|s| s.model.clone()),
                timeout_s: args.model.server_timeout,
                attempts: args.model.server_attempts,
                ..ServerConfig::new(m)
            };
            (Some(PathBuf::from(&config.url)), Some(config))
        }
        Some(m) => (
            Some(absolute(
                &ModelSpec::resolve_default(Some(m))?.local_path()?,
            )),
            None,
        ),
        None => (None, None),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&task, args.seed));
    let folder = RunFolder::create(&out)?;
    let _lock = folder.lock()?;
    let settings = RunSettings {
        task: absolute(&args.task),
        model: model_path,
        mutator_model,
        server,
        mutator_server,
        weights,
        device,
        engine,
        search,
        seed: args.seed,
        dev_limit: args.dev_limit.min(task.dev.len()),
        test_limit: args.test_limit.min(task.test.len()),
        validation_limit: args.validation_limit.min(task.validation.len()),
        calibrate: args.calibrate || task.calibrates(),
        pool: absolute(&args.pool),
        max_initial_prompts: args.max_initial_prompts,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    folder.write_json(CONFIG_FILE, &settings)?;
    search_and_report(&settings, &task, &folder, Vec::new(), args.quiet)
}

fn resume(args: ResumeArgs) -> Result<ExitCode> {
    let folder = RunFolder::open(&args.run_dir)?;
    let _lock = folder.lock()?;
    let mut settings: RunSettings = folder
        .read_json(
            CONFIG_FILE,
            "a promptevo run configuration",
            "restore it, or start a new run with `promptevo optimize`",
        )?
        .with_context(|| format!("cannot read {}", folder.file(CONFIG_FILE).display()))?;
    if let Some(url) = &args.server_url {
        if !promptevo::remote::is_server_url(url) {
            anyhow::bail!(
                "--server-url must be a server's base URL, like http://127.0.0.1:8000/v1"
            );
        }
        let new = ServerConfig::new(url).url;
        let Some(old) = settings.server.as_ref().map(|s| s.url.clone()) else {
            anyhow::bail!(
                "{} was not scored through a server; drop --server-url",
                folder.root().display()
            );
        };
        for server in [&mut settings.server, &mut settings.mutator_server]
            .into_iter()
            .flatten()
        {
            if server.url == old {
                server.url = new.clone();
            }
        }
        settings.model = PathBuf::from(&new);
    }
    let task = Task::load(&settings.task)?;
    let (records, dropped) = EvaluationLog::recover(&folder.file(EVALUATIONS_FILE))?;
    // The log is what resume replays; the checkpoint only says where the run stood, so a
    // damaged one is reported and set aside rather than blocking the resume.
    let (at, lost) = match Checkpoint::read(&folder) {
        Ok(Some(checkpoint)) => {
            let (at, lost) = checkpoint.describe(records.len());
            (format!("; {at}"), lost)
        }
        Ok(None) => ("; no generation had finished".to_string(), None),
        Err(reason) => (
            String::new(),
            Some(format!(
                "{reason}; it is ignored (the evaluation log is the record)"
            )),
        ),
    };
    eprintln!(
        "resuming {}: {} evaluations logged{}{at}",
        folder.root().display(),
        records.len(),
        if dropped {
            " (a half-written last line was dropped)"
        } else {
            ""
        }
    );
    if let Some(warning) = lost {
        eprintln!("warning: {warning}");
    }
    search_and_report(&settings, &task, &folder, records, args.quiet)
}

fn report(args: ReportArgs) -> Result<ExitCode> {
    let folder = RunFolder::open(&args.run_dir)?;
    let mut report = Report::read(&folder)?.with_context(|| {
        format!(
            "cannot read {}: the run has not finished (use `promptevo resume`)",
            folder.file(RESULT_FILE).display()
        )
    })?;
    let records = EvaluationLog::read(&folder.file(EVALUATIONS_FILE))?;
    report.write(&folder, &records)?;
    out!("{}", folder.file(REPORT_FILE).display());
    Ok(ExitCode::SUCCESS)
}

/// `show` of a benchmark's peer run: what the peer returned and what it cost.
fn show_peer(dir: &Path) -> Result<ExitCode> {
    let r = promptevo::bench::peer::read(dir)?;
    let pct = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{:.1}%", 100.0 * x));
    let num = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{x:.0}"));
    out!("peer run {}", dir.display());
    out!(
        "peer {} | {} | {} evaluations, {} candidates, {:.0} s, CPU {} s, peak memory {} MB",
        r.peer,
        r.status.name(),
        r.evals_used,
        r.candidates,
        r.search_seconds,
        num(r.cpu_seconds),
        num(r.peak_rss_mb)
    );
    out!(
        "initial  dev {}  test {}",
        pct(Some(r.initial_dev)),
        pct(Some(r.initial_test))
    );
    match &r.prompt {
        Some(prompt) => out!(
            "answer   dev {}  test {} (the peer's own: {})  {prompt}",
            pct(r.best_dev),
            pct(r.best_test),
            pct(r.peer_test)
        ),
        None => out!(
            "no answer: {}",
            r.reason.as_deref().unwrap_or("no reason given")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: ReportArgs) -> Result<ExitCode> {
    if args
        .run_dir
        .join(promptevo::bench::peer::PEER_RESULT_FILE)
        .is_file()
    {
        return show_peer(&args.run_dir);
    }
    let folder = RunFolder::open(&args.run_dir)?;
    let records = EvaluationLog::read(&folder.file(EVALUATIONS_FILE))?;
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    out!("run {}", folder.root().display());
    if let Some(r) = Report::read(&folder)? {
        out!(
            "task {} | model {} | {} seed {} | {} candidates, {} forward passes, {:.0} s",
            r.task,
            r.model,
            r.strategy,
            r.seed,
            r.candidates,
            r.forward_passes,
            r.search_seconds
        );
        for (name, p) in [("initial", &r.initial), ("best", &r.best)] {
            out!(
                "{name:<8} #{:<4} dev {}  test {} [{}, {}]  {}",
                p.id,
                pct(p.dev_accuracy),
                pct(p.test_accuracy),
                pct(p.test_ci.0),
                pct(p.test_ci.1),
                p.prompt
            );
        }
        out!(
            "test change {:+.1} pts, 95% CI [{:+.1}, {:+.1}]",
            100.0 * (r.best.test_accuracy - r.initial.test_accuracy),
            100.0 * r.test_change_ci.0,
            100.0 * r.test_change_ci.1
        );
        out!("report: {}", folder.file(REPORT_FILE).display());
    } else {
        let (best, generation) = promptevo::run::analysis::best_so_far(&records);
        out!(
            "unfinished: {} candidates logged, up to generation {generation}",
            records.len()
        );
        if let Some(b) = best {
            out!(
                "best so far #{} dev {} (fitness {:.3})  {}",
                b.id,
                pct(b.accuracy),
                b.score,
                b.prompt
            );
        }
        out!(
            "continue it with: promptevo resume {}",
            folder.root().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the backends, runs (or replays, then continues) the search and writes the report.
fn search_and_report(
    settings: &RunSettings,
    task: &Task,
    folder: &RunFolder,
    logged: Vec<EvaluationRecord>,
    quiet: bool,
) -> Result<ExitCode> {
    let backends = Backends::open(&ModelSettings::of_run(settings), StderrProgress::new(quiet))?;
    // The writer first: with both on servers, the operators' server is asked before scoring's.
    let mut generator = backends.generator(&settings.search)?;
    let mut scorer = backends.scorer(task)?;
    let report = promptevo::run::execute(
        settings,
        task,
        &mut scorer,
        generator
            .as_mut()
            .map(|g| g.as_mut() as &mut dyn TextGenerator),
        folder,
        logged,
        backends.progress(),
    )?;
    eprintln!(
        "{}: initial dev {:.1}% test {:.1}%  |  best (#{}): dev {:.1}% test {:.1}%",
        task.metric_name(),
        100.0 * report.initial.dev_accuracy,
        100.0 * report.initial.test_accuracy,
        report.best.id,
        100.0 * report.best.dev_accuracy,
        100.0 * report.best.test_accuracy
    );
    out!("{}", folder.file(REPORT_FILE).display());
    Ok(ExitCode::SUCCESS)
}
