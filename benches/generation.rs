//! Generation-throughput benchmark, side by side in one run: greedy answers decoded one at a
//! time after the shared prompt prefix's cached KV (promptevo's path before batching), decoded
//! many at once ([`Generator::generate_batch`], the scorer's path now), and llama.cpp's own
//! `llama-server` from the fair build (`benches/peers/build-llama-cpp.sh`: this CPU's
//! AVX-512/VNNI/BF16, repacked kernels on, AMX off) with parallel slots and `cache_prompt`, so
//! it batches the slots' decoding and reuses each slot's prompt prefix itself.
//!
//! Workloads (the same prompt texts for every engine):
//! - `larger_animal`: the first 64 test inputs of `experiments/tasks/larger_animal.toml`, its
//!   first initial prompt, at most 16 new tokens, stop at "\n";
//! - `chat`: the same inputs as chat-form answers (`benches/tasks/larger_animal-chat.toml`: the
//!   prompt as the system message, rendered through the model's own chat template), at most 24
//!   new tokens, ending at the end-of-turn token.
//!
//! `cargo bench --bench generation [-- --json] [-- --examples N] [-- --rows R] [-- --slots S]
//! [-- --no-peer]`. Rows per pass of the batched decoder default to the scorer's 64; slots of the
//! server to 16 (both engines on every core). The peer is built on first use (tens of minutes);
//! `--no-peer` leaves it out. Timings include the prefix prefill and exclude model loading; each
//! engine gets one untimed warm-up answer.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use promptevo::model::generate_batch::DEFAULT_ROWS;
use promptevo::model::{GenerateOptions, Generation, Generator, Model, WeightFormat};
use promptevo::score::{EngineOptions, LocalBackend, Scorer};
use promptevo::task::{Split, Task};

const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const WORKLOADS: [(&str, &str); 2] = [
    ("larger_animal", "experiments/tasks/larger_animal.toml"),
    ("chat", "benches/tasks/larger_animal-chat.toml"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One engine's run of one workload.
struct Row {
    workload: &'static str,
    engine: String,
    answers: usize,
    tokens_generated: u64,
    seconds: f64,
    outputs: Vec<String>,
}

/// The prompt texts of a workload: the shared prefix, the per-example suffixes, and the options.
struct Job {
    before: String,
    suffixes: Vec<String>,
    options: GenerateOptions,
}

fn job(model: &Model, task: &Task, n: usize) -> Result<Job> {
    let scorer = Scorer::with_backend(
        task,
        Box::new(LocalBackend::new(model, EngineOptions::default())),
    )?;
    let prompt = &task.initial_prompts[0];
    let (before, after) = scorer.split(prompt)?;
    let examples = task.examples(Split::Test);
    if examples.len() < n {
        bail!(
            "{} has {} test examples, fewer than {n}",
            task.path.display(),
            examples.len()
        );
    }
    let suffixes = examples[..n]
        .iter()
        .map(|e| format!("{}{after}", e.input))
        .collect();
    let spec = task.generation().context("not a generation task")?;
    Ok(Job {
        before,
        suffixes,
        options: GenerateOptions {
            max_new_tokens: spec.max_new_tokens,
            temperature: 0.0,
            top_p: 1.0,
            stop: spec.stop.clone(),
        },
    })
}

/// Token ids as the scorer makes them: the prefix (trailing whitespace trimmed) and each
/// example's ids after it (every example here shares the prefix's tokens).
fn token_ids(model: &Model, job: &Job) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
    let lead = model.leading_ids();
    let mut prefix = lead.clone();
    prefix.extend(model.encode(job.before.trim_end())?);
    let mut suffixes = Vec::new();
    for s in &job.suffixes {
        let mut ids = lead.clone();
        ids.extend(model.encode(&format!("{}{s}", job.before))?);
        if !ids.starts_with(&prefix) || ids.len() == prefix.len() {
            bail!("an example does not continue the prefix's tokens: {s:?}");
        }
        suffixes.push(ids[prefix.len()..].to_vec());
    }
    Ok((prefix, suffixes))
}

/// promptevo's rows: one at a time, then batched (`rows` per pass).
fn ours(model: &Model, workload: &'static str, job: &Job, rows: usize) -> Result<Vec<Row>> {
    let (prefix_ids, suffixes) = token_ids(model, job)?;
    let mut g = Generator::new(model);
    // Warm-up (untimed): one answer.
    let mut warm = model.arch.new_cache();
    g.prefill(&mut warm, &prefix_ids)?;
    g.generate_after(&mut warm, &suffixes[0], &job.options, None)?;
    let row = |engine: String, gens: Vec<Generation>, seconds: f64| Row {
        workload,
        engine,
        answers: gens.len(),
        tokens_generated: gens.iter().map(|g| g.new_tokens as u64).sum(),
        seconds,
        outputs: gens.into_iter().map(|g| g.text).collect(),
    };
    let start = Instant::now();
    let mut prefix = model.arch.new_cache();
    g.prefill(&mut prefix, &prefix_ids)?;
    let mut one = Vec::new();
    for ids in &suffixes {
        let mut cache = prefix.clone();
        one.push(g.generate_after(&mut cache, ids, &job.options, None)?);
    }
    let sequential = row(
        "promptevo bf16, one answer at a time, prefix KV reused".into(),
        one,
        start.elapsed().as_secs_f64(),
    );
    let start = Instant::now();
    let mut prefix = model.arch.new_cache();
    g.prefill(&mut prefix, &prefix_ids)?;
    let batched = g.generate_batch(&prefix, &suffixes, &job.options, rows)?;
    let batched = row(
        format!("promptevo bf16, batched ({rows} rows per pass), prefix KV reused"),
        batched,
        start.elapsed().as_secs_f64(),
    );
    Ok(vec![sequential, batched])
}

/// The fair llama.cpp build's folder (built on first use).
fn fair_build() -> Result<PathBuf> {
    eprintln!("locating the fair llama.cpp build (benches/peers/build-llama-cpp.sh; builds it on first use, tens of minutes)");
    let out = Command::new(root().join("benches/peers/build-llama-cpp.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("run benches/peers/build-llama-cpp.sh")?;
    if !out.status.success() {
        bail!("benches/peers/build-llama-cpp.sh failed (see above); or run with --no-peer");
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// The flags the fair build used (its `flags` file), for the row name.
fn fair_flags(bin: &std::path::Path) -> String {
    let sig = bin
        .parent()
        .and_then(|b| b.parent())
        .and_then(|d| d.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{sig}, repack on, AMX off")
}

fn peer(bin: &std::path::Path, workload: &'static str, job: &Job, slots: usize) -> Result<Row> {
    let prompts: Vec<String> = job
        .suffixes
        .iter()
        .map(|s| format!("{}{s}", job.before))
        .collect();
    let input = serde_json::json!({
        "prompts": prompts,
        "max_new_tokens": job.options.max_new_tokens,
        "stop": job.options.stop,
        "warmup": prompts[0],
    });
    let mut child = Command::new("python3")
        .arg(root().join("benches/peers/llama_server_generate.py"))
        .arg("--server")
        .arg(bin.join("llama-server"))
        .arg("--model")
        .arg(root().join(MODEL))
        .args(["--slots", &slots.to_string(), "--threads"])
        .arg(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .to_string(),
        )
        .args([
            "--label",
            &format!("llama.cpp llama-server (fair build: {})", fair_flags(bin)),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start python3 benches/peers/llama_server_generate.py")?;
    child
        .stdin
        .take()
        .context("peer stdin")?
        .write_all(input.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("the llama-server peer failed (see above)");
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("peer output")?;
    Ok(Row {
        workload,
        engine: v["engine"].as_str().unwrap_or("llama-server").to_string(),
        answers: v["answers"].as_u64().unwrap_or(0) as usize,
        tokens_generated: v["tokens_generated"].as_u64().unwrap_or(0),
        seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
        outputs: serde_json::from_value(v["outputs"].clone())?,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str, default: usize| -> Result<usize> {
        Ok(flag(name)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let n = number("--examples", 64)?;
    let rows = number("--rows", DEFAULT_ROWS)?;
    let slots = number("--slots", 16)?;
    let json = args.iter().any(|a| a == "--json");
    let with_peer = !args.iter().any(|a| a == "--no-peer");
    let model_path = root().join(MODEL);
    if !model_path.is_file() {
        bail!("{MODEL} is missing: run ./models/fetch-default.sh");
    }
    let bin = if with_peer { Some(fair_build()?) } else { None };
    let model = Model::load(&model_path, WeightFormat::Bf16, &Device::Cpu)?;
    let mut results = Vec::new();
    for (name, file) in WORKLOADS {
        let task = Task::load(&root().join(file))?;
        let job = job(&model, &task, n)?;
        eprintln!("running {name}");
        results.extend(ours(&model, name, &job, rows)?);
        if let Some(bin) = &bin {
            results.push(peer(bin, name, &job, slots)?);
        }
    }
    let per_s = |r: &Row| r.answers as f64 / r.seconds;
    let tok_s = |r: &Row| r.tokens_generated as f64 / r.seconds;
    // Answers equal to the one-at-a-time row's of the same workload.
    let same = |r: &Row| {
        let seq = results
            .iter()
            .find(|s| s.workload == r.workload)
            .map(|s| &s.outputs);
        seq.map_or(0, |s| {
            r.outputs
                .iter()
                .zip(s)
                .filter(|(a, b)| a.trim() == b.trim())
                .count()
        })
    };
    let vs_peer = |r: &Row| {
        results
            .iter()
            .find(|p| p.workload == r.workload && p.engine.contains("llama"))
            .map(|p| per_s(r) / per_s(p))
    };
    if json {
        let out: Vec<_> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "workload": r.workload, "engine": r.engine, "answers": r.answers,
                    "tokens_generated": r.tokens_generated, "seconds": r.seconds,
                    "answers_per_s": per_s(r), "generated_tokens_per_s": tok_s(r),
                    "x_llama_cpp": vs_peer(r), "same_answers_as_one_at_a_time": same(r),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "examples": n, "model": MODEL, "rows": out })
        );
        return Ok(());
    }
    println!("workloads: {n} larger_animal test inputs, completion form (max 16 tokens, stop \"\\n\") and chat form (max 24 tokens, end of turn); model {MODEL}; threads: every core");
    println!("| workload | engine | answers/s | generated tokens/s | tokens | s | x llama.cpp | same answers as one at a time |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {} | {:.2} | {:.1} | {} | {:.2} | {} | {}/{} |",
            r.workload,
            r.engine,
            per_s(r),
            tok_s(r),
            r.tokens_generated,
            r.seconds,
            vs_peer(r).map_or("n/a".into(), |x| format!("{x:.2}")),
            same(r),
            r.answers
        );
    }
    Ok(())
}
