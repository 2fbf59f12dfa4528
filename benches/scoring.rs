//! Scoring-throughput benchmark, side by side in one run: candle-transformers' `quantized_llama`
//! with a fresh forward per example (the naive baseline), promptevo's engine fresh, with prefix
//! reuse and batched (bf16, and int8 with `--weights int8`'s VNNI kernel), and llama.cpp through llama-cpp-python with prefix reuse (the peer).
//!
//! Workload: the first 64 SST-2 test sentences rendered into the sst2 task's template with a fixed
//! prompt; labels " negative"/" positive". Each row runs in its own process so that its peak RSS
//! is its own.
//!
//! `cargo bench --bench scoring [-- --json] [-- --examples N] [-- --device cuda] [-- --model gemma|PATH] [-- --no-fair-peer]`
//!
//! Two llama.cpp rows: the old one (llama-cpp-python's own build with its extra buffer types
//! off, which also turns off its repacked kernels; kept for history) and the fair one, the same
//! scorer on llama.cpp built for this CPU by `benches/peers/build-llama-cpp.sh` (AVX-512, VNNI,
//! BF16 as the CPU has them, repacked kernels on, AMX off; built on first use), loaded through
//! `LLAMA_CPP_LIB_PATH` with the extra buffer types on. "x llama.cpp" is against the fair row.
//!
//! `--model gemma` benchmarks `models/gemma-3-270m-q4_k_m.gguf` (./models/fetch-gemma.sh), any
//! other value a GGUF path; the naive candle row exists for the default (llama) model only, so
//! for others the differences are measured against llama.cpp. The llama.cpp peer runs under
//! `$PROMPTEVO_LLAMA_PYTHON` (as for the server test and bench; `$PROMPTEVO_PYTHON` still read; default `python3`). GFLOP/s counts the matrix products of the blocks
//! for every token run plus one output projection per example (attention's own products and the
//! element-wise steps are left out), the same work for every row.
//!
//! With `--device cuda` (a build with `--features cuda`) the naive baseline and promptevo's rows
//! run on the GPU (after one untimed warm-up that loads the kernels); llama.cpp stays on the CPU.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use promptevo::model::{Model, WeightFormat};
use promptevo::score::{Engine, EngineOptions};
use promptevo::task::{Split, Task};
use serde::{Deserialize, Serialize};

const PROMPT: &str = "Is the sentiment of this movie review positive or negative?";
const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA: &str = "models/gemma-3-270m-q4_k_m.gguf";

/// The model file `--model` names (relative to the crate root unless absolute).
fn model_file(flag: Option<&str>) -> String {
    match flag {
        None => MODEL.to_string(),
        Some("gemma") => GEMMA.to_string(),
        Some(p) => p.to_string(),
    }
}

/// Multiply-adds of the blocks' matrix products per token, and of the output projection per
/// scored row, from the file's tensor shapes.
fn macs(model: &str) -> Result<(f64, f64)> {
    let gguf = promptevo::model::gguf::GgufFile::open(&root().join(model))?;
    let mut per_token = 0f64;
    let mut vocab_row = 0f64;
    for name in gguf.tensor_names() {
        let dims = gguf.tensor_dims(&name).unwrap_or(&[]);
        let n: f64 = dims.iter().map(|&d| d as f64).product();
        if name.starts_with("blk.") && dims.len() == 2 {
            per_token += n;
        } else if name == "output.weight" || (name == "token_embd.weight" && vocab_row == 0.0) {
            vocab_row = n;
        }
    }
    Ok((per_token, vocab_row))
}
const TASK: &str = "experiments/tasks/sst2.toml";

/// The bf16 and int8 kernels' own throughput, GFLOP/s (best of 10 each, every core): the
/// model's first feed-forward up-projection applied to 256 activation rows. The engine's
/// GFLOP/s is read as a fraction of the bf16 ceiling, measured in the same run.
fn kernel_peaks_gflops(model: &str) -> Result<(f64, f64)> {
    let gguf = promptevo::model::gguf::GgufFile::open(&root().join(model))?;
    let Some(&[k, n]) = gguf.tensor_dims("blk.0.ffn_up.weight") else {
        bail!("{model}: no 2-D blk.0.ffn_up.weight to measure the kernels' peaks on");
    };
    let m = 256;
    // Deterministic values in [-0.05, 0.05): the kernels' speed does not depend on them.
    let fill = |len: usize, salt: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + salt) % 1000) as f32 / 10_000.0 - 0.05)
            .collect()
    };
    let w = fill(n * k, 1);
    let bf16 = promptevo::model::kernels::Bf16Matrix::from_f32(&w, n, k);
    let mut int8 = promptevo::model::kernels::Int8Builder::new(k);
    int8.push_f32(&w);
    let int8 = int8.build();
    let x = fill(m * k, 2);
    let (mut best_bf16, mut best_int8) = (f64::MAX, f64::MAX);
    for _ in 0..10 {
        let start = Instant::now();
        std::hint::black_box(bf16.matmul(&x, m));
        best_bf16 = best_bf16.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        std::hint::black_box(int8.matmul(&x, m));
        best_int8 = best_int8.min(start.elapsed().as_secs_f64());
    }
    let flops = 2.0 * (m * k * n) as f64;
    Ok((flops / best_bf16 / 1e9, flops / best_int8 / 1e9))
}

/// What one row measured.
#[derive(Serialize, Deserialize, Clone)]
struct RowResult {
    /// Engine and settings.
    engine: String,
    /// Tokens run through the transformer (shared prefixes counted once).
    tokens: u64,
    /// Examples scored.
    examples: usize,
    /// Wall-clock seconds of the scoring (model load excluded).
    seconds: f64,
    /// Peak resident set size of the row's process, MB.
    peak_rss_mb: f64,
    /// Per example, the log-probability of each label.
    scores: Vec<Vec<f64>>,
    /// For promptevo's rows: where a second, accounted pass over the same work spent its
    /// threads' time (`promptevo::model::profile::Breakdown`), its wall seconds and threads.
    #[serde(default)]
    breakdown: Option<serde_json::Value>,
}

/// The rows promptevo runs itself on the CPU: (weights, prefix reuse, batch size).
const CPU_ROWS: &[(WeightFormat, bool, usize)] = &[
    (WeightFormat::Bf16, false, 1),
    (WeightFormat::Bf16, true, 1),
    (WeightFormat::Bf16, true, 4),
    (WeightFormat::Bf16, true, 8),
    (WeightFormat::Bf16, true, 16),
    (WeightFormat::F32, true, 8),
    (WeightFormat::Native, true, 8),
    (WeightFormat::Int8, true, 8),
];

/// The rows promptevo runs itself on a GPU: larger batches pay there.
const GPU_ROWS: &[(WeightFormat, bool, usize)] = &[
    (WeightFormat::Bf16, false, 1),
    (WeightFormat::Bf16, true, 1),
    (WeightFormat::Bf16, true, 16),
    (WeightFormat::Bf16, true, 64),
    (WeightFormat::F32, true, 64),
    (WeightFormat::Native, true, 16),
];

fn our_rows(device: &Device) -> &'static [(WeightFormat, bool, usize)] {
    if device.is_cpu() {
        CPU_ROWS
    } else {
        GPU_ROWS
    }
}

/// The row's name: what the weights are on this device, prefix reuse and batch size.
fn row_name(device: &Device, (format, prefix_reuse, batch): (WeightFormat, bool, usize)) -> String {
    let weights = match (format, device.is_cpu()) {
        (WeightFormat::Bf16, true) => "bf16",
        (WeightFormat::Bf16, false) => "f16 (candle)",
        (WeightFormat::F32, true) => "f32 (candle gemm)",
        (WeightFormat::F32, false) => "f32 (candle)",
        (WeightFormat::F16, _) => "f16",
        (WeightFormat::Q8_0, _) => "Q8_0",
        (WeightFormat::Native, _) => "file quantisation (candle)",
        (WeightFormat::Int8, true) => "int8",
        (WeightFormat::Int8, false) => "Q8_0 (candle, int8 elsewhere)",
    };
    let reuse = if prefix_reuse {
        "prefix reuse"
    } else {
        "fresh"
    };
    format!("promptevo {weights}, {reuse}, batch {batch}")
}

const NAIVE: &str = "candle-transformers quantized_llama, Q4_1, fresh forward (naive)";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn peak_rss_mb() -> f64 {
    promptevo::run::cost::peak_rss_mb().unwrap_or(0.0)
}

fn workload(n: usize) -> Result<(Task, Vec<String>)> {
    let task = Task::load(&root().join(TASK))?;
    let texts = task.examples(Split::Test)[..n]
        .iter()
        .map(|e| e.input.clone())
        .collect();
    Ok((task, texts))
}

fn run_naive(n: usize, device: &Device) -> Result<RowResult> {
    let (task, inputs) = workload(n)?;
    let path = root().join(MODEL);
    let mut file = std::fs::File::open(&path)?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let mut model = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content, &mut file, device,
    )?;
    let ours = Model::load(&path, WeightFormat::Native, &Device::Cpu)?; // tokenizer only
    let labels: Vec<u32> = task
        .verbalizers()
        .iter()
        .map(|v| Ok(ours.encode(v)?[0]))
        .collect::<Result<_>>()?;
    let mut score = |input: &str| -> Result<(u64, Vec<f64>)> {
        let ids = ours.encode(&task.template.render(PROMPT, input))?;
        let x = Tensor::new(ids.as_slice(), device)?.unsqueeze(0)?;
        let logits = model.forward(&x, 0)?.squeeze(0)?;
        let lp: Vec<f32> = candle_nn::ops::log_softmax(&logits, 0)?.to_vec1()?;
        let scores = labels.iter().map(|&l| lp[l as usize] as f64).collect();
        Ok((ids.len() as u64, scores))
    };
    if !device.is_cpu() {
        score(&inputs[0])?; // loads the GPU kernels outside the timed part
    }
    let start = Instant::now();
    let (mut tokens, mut scores) = (0u64, Vec::new());
    for input in &inputs {
        let (t, s) = score(input)?;
        tokens += t;
        scores.push(s);
    }
    Ok(RowResult {
        engine: if device.is_cpu() {
            NAIVE.into()
        } else {
            format!("{NAIVE} on {}", device_label(device))
        },
        tokens,
        examples: n,
        seconds: start.elapsed().as_secs_f64(),
        peak_rss_mb: peak_rss_mb(),
        scores,
        breakdown: None,
    })
}

/// `cpu` or `cuda`, for row names.
fn device_label(device: &Device) -> &'static str {
    if device.is_cpu() {
        "cpu"
    } else if device.is_cuda() {
        "cuda"
    } else {
        "metal"
    }
}

fn run_ours(n: usize, row: usize, device: &Device, model_file: &str) -> Result<RowResult> {
    let spec = our_rows(device)[row];
    let (format, prefix_reuse, batch_size) = spec;
    let (task, inputs) = workload(n)?;
    let model = Model::load(&root().join(model_file), format, device)?;
    let labels: Vec<Vec<u32>> = task
        .verbalizers()
        .iter()
        .map(|v| model.encode(v))
        .collect::<promptevo::Result<_>>()?;
    let (before, after) = task.template.split(PROMPT);
    let suffixes: Vec<String> = inputs.iter().map(|i| format!("{i}{after}")).collect();
    let mut engine = Engine::new(
        &model,
        EngineOptions {
            batch_size,
            prefix_reuse,
        },
    );
    if !device.is_cpu() {
        // Loads the GPU kernels outside the timed part; a fresh engine keeps the count clean.
        Engine::new(
            &model,
            EngineOptions {
                batch_size,
                prefix_reuse,
            },
        )
        .score(&before, &suffixes[..batch_size.min(n)], &labels)?;
    }
    let start = Instant::now();
    let scores = engine.score(&before, &suffixes, &labels)?;
    let seconds = start.elapsed().as_secs_f64();
    // The same work again on a fresh engine, with the time accounting on (kept out of the
    // timed pass above, whose figures the table reports).
    let mut fresh = Engine::new(
        &model,
        EngineOptions {
            batch_size,
            prefix_reuse,
        },
    );
    promptevo::model::profile::start();
    let start = Instant::now();
    fresh.score(&before, &suffixes, &labels)?;
    let wall = start.elapsed().as_secs_f64();
    let accounted = promptevo::model::profile::finish();
    let breakdown = serde_json::json!({
        "wall_seconds": wall,
        "threads": rayon::current_num_threads(),
        "products": accounted.products,
        "parts": accounted.parts,
    });
    Ok(RowResult {
        engine: if device.is_cpu() {
            row_name(device, spec)
        } else {
            format!("{} on {}", row_name(device, spec), device_label(device))
        },
        tokens: engine.tokens_processed,
        examples: n,
        seconds,
        peak_rss_mb: peak_rss_mb(),
        scores: scores
            .into_iter()
            .map(|s| s.into_iter().map(f64::from).collect())
            .collect(),
        breakdown: Some(breakdown),
    })
}

/// Where the fair llama.cpp build is (`benches/peers/build-llama-cpp.sh` prints it, building it
/// on first use) and the feature set it was built for; None (said on stderr) when it cannot be.
fn fair_build() -> Option<(PathBuf, String)> {
    eprintln!("locating the fair llama.cpp build (benches/peers/build-llama-cpp.sh; builds it on first use, tens of minutes)");
    let out = Command::new(root().join("benches/peers/build-llama-cpp.sh"))
        .stderr(std::process::Stdio::inherit())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            let features = bin
                .parent()
                .and_then(|b| b.parent())
                .and_then(|d| d.file_name())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some((bin, features))
        }
        _ => {
            eprintln!("fair llama.cpp peer skipped: benches/peers/build-llama-cpp.sh failed");
            None
        }
    }
}

/// The llama.cpp peer through llama-cpp-python: its own build with the extra buffer types off
/// (`fair` None: the old row, kept for history), or the fair build's libraries loaded through
/// `LLAMA_CPP_LIB_PATH` with the extra buffer types (repacked kernels) on.
fn run_peer(
    n: usize,
    model_file: &str,
    fair: Option<&(PathBuf, String)>,
) -> Result<Option<RowResult>> {
    // The same variable as the server test and bench (PROMPTEVO_PYTHON is the older name).
    let python = std::env::var("PROMPTEVO_LLAMA_PYTHON")
        .or_else(|_| std::env::var("PROMPTEVO_PYTHON"))
        .unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import llama_cpp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("llama.cpp peer skipped: `{python} -c \"import llama_cpp\"` failed; install it with `pip install llama-cpp-python==0.3.36 numpy` or point $PROMPTEVO_LLAMA_PYTHON at a Python that has it");
        return Ok(None);
    }
    let (task, _) = workload(n)?;
    let data = task
        .path
        .parent()
        .unwrap_or(Path::new("."))
        .join("../data/sst2/test.jsonl");
    let mut cmd = Command::new(&python);
    cmd.arg(root().join("benches/peers/llama_cpp_score.py"))
        .args([
            "--model",
            model_file,
            "--n",
            &n.to_string(),
            "--prompt",
            PROMPT,
            "--template",
            task.template.as_str(),
            "--threads",
            "2",
            "--json",
            "--labels",
        ])
        .args(task.verbalizers())
        .arg("--data")
        .arg(&data)
        .current_dir(root());
    match fair {
        Some((bin, features)) => {
            cmd.env("LLAMA_CPP_LIB_PATH", bin)
                .arg("--extra-bufts")
                .arg("--label")
                .arg(format!("llama.cpp fair build [{features}, AMX off]"));
        }
        None => {
            cmd.arg("--label").arg("llama.cpp old row, stock build");
        }
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "llama.cpp peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("peer output is not JSON")?;
    Ok(Some(RowResult {
        engine: v["engine"].as_str().unwrap_or("llama.cpp").to_string(),
        tokens: v["tokens"].as_u64().unwrap_or(0),
        examples: n,
        seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
        peak_rss_mb: v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
        scores: serde_json::from_value(v["scores"].clone())?,
        breakdown: None,
    }))
}

/// Runs one row in a child process (this same binary with `--row`).
fn child(row: &str, n: usize, device: &str, model_file: &str) -> Result<RowResult> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args([
            "--row",
            row,
            "--examples",
            &n.to_string(),
            "--device",
            device,
            "--model",
            model_file,
        ])
        .output()?;
    if !out.status.success() {
        bail!("row {row} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = flag("--examples")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(64);
    let device_name = flag("--device").unwrap_or_else(|| "cpu".into());
    let device = promptevo::model::parse_device(&device_name)?;
    let model_file = model_file(flag("--model").as_deref());
    if let Some(row) = flag("--row") {
        let result = if row == "naive" {
            run_naive(n, &device)?
        } else {
            run_ours(n, row.parse()?, &device, &model_file)?
        };
        println!("{}", serde_json::to_string(&result)?);
        return Ok(());
    }
    let json = args.iter().any(|a| a == "--json");
    if !root().join(&model_file).is_file() {
        bail!(
            "{model_file} is missing: run ./models/fetch-default.sh (or ./models/fetch-gemma.sh)"
        );
    }
    let with_naive = model_file == MODEL;
    let mut rows = Vec::new();
    if with_naive {
        rows.push(child("naive", n, &device_name, &model_file)?);
    }
    for (i, &spec) in our_rows(&device).iter().enumerate() {
        eprintln!("running {}", row_name(&device, spec));
        rows.push(child(&i.to_string(), n, &device_name, &model_file)?);
    }
    // The old peer row (stock llama-cpp-python, extra buffer types off) is kept for history;
    // the "x llama.cpp" column is against the fair build when it is there.
    rows.extend(run_peer(n, &model_file, None)?);
    let fair = if args.iter().any(|a| a == "--no-fair-peer") {
        None
    } else {
        fair_build()
    };
    if let Some(fair) = &fair {
        rows.extend(run_peer(n, &model_file, Some(fair))?);
    }
    let peer = rows
        .iter()
        .find(|r| r.engine.contains("fair build"))
        .or_else(|| rows.iter().find(|r| r.engine.contains("llama.cpp")))
        .cloned();
    // Differences are measured against the naive row, or llama.cpp where there is none.
    let Some(naive) = (if with_naive {
        rows.first().cloned()
    } else {
        peer.clone()
    }) else {
        bail!("no reference row: the llama.cpp peer is needed for models other than the default");
    };
    let reference = if with_naive { "naive" } else { "llama.cpp" };
    let (per_token, vocab_row) = macs(&model_file)?;
    let gflops = |r: &RowResult| {
        2.0 * (per_token * r.tokens as f64 + vocab_row * r.examples as f64) / r.seconds / 1e9
    };
    let eps = |r: &RowResult| r.examples as f64 / r.seconds;
    let (peak, int8_peak) = kernel_peaks_gflops(&model_file)?;
    let diff = |r: &RowResult| {
        r.scores
            .iter()
            .flatten()
            .zip(naive.scores.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    };
    let agree = |r: &RowResult| {
        let pred = |s: &Vec<f64>| if s[1] > s[0] { 1 } else { 0 };
        r.scores
            .iter()
            .zip(&naive.scores)
            .filter(|(a, b)| pred(a) == pred(b))
            .count()
    };
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"engine": r.engine, "tokens_per_s": r.tokens as f64 / r.seconds, "examples_per_s": eps(r), "gflop_per_s": gflops(r), "fraction_of_kernel_peak": gflops(r) / peak, "peak_rss_mb": r.peak_rss_mb, "max_abs_diff_nats": diff(r), "reference": reference, "breakdown": r.breakdown}))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "bf16_kernel_peak_gflop_per_s": peak, "int8_kernel_peak_gflop_per_s": int8_peak, "rows": out })
        );
        return Ok(());
    }
    println!(
        "workload: {n} SST-2 test sentences, model {model_file}, prompt {PROMPT:?}, labels {:?}",
        [" negative", " positive"]
    );
    let speedups = if with_naive {
        "x naive | x llama.cpp"
    } else {
        "x llama.cpp"
    };
    let bars = if with_naive { "---|---" } else { "---" };
    println!("bf16 kernel peak (its own product on the model's feed-forward shape, 256 rows, every core): {peak:.1} GFLOP/s");
    println!("int8 kernel peak (the same product with --weights int8's kernel, activations quantised included): {int8_peak:.1} GFLOP/s");
    println!("| engine | tokens/s | examples/s | GFLOP/s | of bf16 peak | peak RSS MB | {speedups} | max abs diff to {reference} (nats) | same label as {reference} |");
    println!("|---|---|---|---|---|---|{bars}|---|---|");
    for r in &rows {
        let vs_peer = peer
            .as_ref()
            .map_or("n/a".to_string(), |p| format!("{:.2}", eps(r) / eps(p)));
        let ratios = if with_naive {
            format!("{:.2} | {vs_peer}", eps(r) / eps(&naive))
        } else {
            vs_peer
        };
        println!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.0}% | {:.0} | {ratios} | {:.4} | {}/{} |",
            r.engine,
            r.tokens as f64 / r.seconds,
            eps(r),
            gflops(r),
            100.0 * gflops(r) / peak,
            r.peak_rss_mb,
            diff(r),
            agree(r),
            r.examples
        );
    }
    for r in &rows {
        if let Some(b) = &r.breakdown {
            print_breakdown(&r.engine, b, peak, int8_peak);
        }
    }
    Ok(())
}

/// One row's breakdown as a table: each matrix product shape, the other parts, and the rest of
/// the threads' time, in core-seconds, with the products' GFLOP/s at the rate all cores would
/// reach spending that time (comparable with the kernel peaks, also measured on every core:
/// int8 products against the int8 kernel's, the others against bf16's).
fn print_breakdown(engine: &str, b: &serde_json::Value, peak: f64, int8_peak: f64) {
    let wall = b["wall_seconds"].as_f64().unwrap_or(f64::NAN);
    let threads = b["threads"].as_f64().unwrap_or(1.0);
    let total = wall * threads;
    let products = b["products"].as_array().cloned().unwrap_or_default();
    let parts = b["parts"].as_array().cloned().unwrap_or_default();
    println!();
    println!(
        "Where the time of `{engine}` goes (a second pass over the same work with accounting on: {wall:.2} s wall x {threads} threads = {total:.2} core-s):"
    );
    if !products
        .iter()
        .any(|p| p["kernel"] == "bf16" || p["kernel"] == "int8")
    {
        println!("(candle's path: its block products, norms and activations are not accounted, so they are in the rest; only the output projection, attention and the tokenizer are)");
    }
    println!("| part | core-s | share | GFLOP/s (all cores) | of its kernel's peak |");
    println!("|---|---|---|---|---|");
    let mut accounted = 0.0;
    for p in &products {
        let secs = p["seconds"].as_f64().unwrap_or(0.0);
        let (k, n) = (
            p["k"].as_f64().unwrap_or(0.0),
            p["n"].as_f64().unwrap_or(0.0),
        );
        let flops = 2.0 * p["rows"].as_f64().unwrap_or(0.0) * k * n;
        let rate = flops / (secs / threads) / 1e9;
        // The Q8_0 output projection has no peak of its own measured.
        let of_peak = match p["kernel"].as_str() {
            Some("int8") => format!("{:.0}%", 100.0 * rate / int8_peak),
            Some("bf16") => format!("{:.0}%", 100.0 * rate / peak),
            _ => "-".to_string(),
        };
        accounted += secs;
        println!(
            "| {} product {k} -> {n} ({} rows in {} calls) | {secs:.3} | {:.1}% | {rate:.1} | {of_peak} |",
            p["kernel"].as_str().unwrap_or("?"),
            p["rows"],
            p["calls"],
            100.0 * secs / total,
        );
    }
    for part in &parts {
        let name = part[0].as_str().unwrap_or("?");
        let secs = part[1].as_f64().unwrap_or(0.0);
        accounted += secs;
        println!("| {name} | {secs:.3} | {:.1}% | | |", 100.0 * secs / total);
    }
    let rest = total - accounted;
    println!(
        "| rest: serial work between steps (allocation, KV-cache copies, batching), waiting, scheduling | {rest:.3} | {:.1}% | | |",
        100.0 * rest / total
    );
}
