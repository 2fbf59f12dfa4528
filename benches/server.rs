//! Throughput through an OpenAI-compatible server, side by side in one run: promptevo's server
//! backend scoring SST-2 label log-probs at 1, 4 and 16 requests in flight, and a plain Python
//! client (`benches/peers/openai_client.py`, urllib + threads) sending the same requests to the
//! same server at the same concurrency.
//!
//! Workload: the first N (default 64) SST-2 test sentences in the sst2 task's template with a
//! fixed prompt, one `/v1/completions` request each (`max_tokens: 1`, `logprobs: 20`, the
//! `top_logprobs` method); the start-up probe is not timed. Rows alternate promptevo / Python.
//!
//! `cargo bench --bench server [-- --json] [-- --examples N] [-- --url URL]`
//!
//! Without `--url` it starts llama-cpp-python's server on 127.0.0.1 with the default model
//! (the python from `$PROMPTEVO_LLAMA_PYTHON`, else the venv `tests/support/llama-server-venv.sh`
//! makes under target/) and stops it at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use promptevo::remote::{Client, ServerConfig};
use promptevo::score::server::{ServerBackend, TOP_K};
use promptevo::score::Scorer;
use promptevo::task::{Split, Task};
use serde::Serialize;

const PROMPT: &str = "Is the sentiment of this movie review positive or negative?";
const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const TASK: &str = "experiments/tasks/sst2.toml";
const CONCURRENCY: [usize; 3] = [1, 4, 16];

/// What one row measured.
#[derive(Serialize, Clone)]
struct Row {
    /// promptevo or python-urllib.
    client: String,
    /// Requests in flight.
    concurrency: usize,
    /// Examples scored (one request each).
    examples: usize,
    /// Wall-clock seconds of the requests.
    seconds: f64,
    /// Examples per second.
    examples_per_s: f64,
    /// Largest |difference| of a label log-prob from promptevo's row at the same concurrency
    /// (labels outside the top k skipped; None for promptevo's own rows).
    max_abs_diff: Option<f64>,
}

/// A server this bench started; killed on drop.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("PROMPTEVO_LLAMA_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new("sh")
        .arg("tests/support/llama-server-venv.sh")
        .arg("target/llama-server-venv")
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("cannot install llama-cpp-python[server] (see above); or set PROMPTEVO_LLAMA_PYTHON");
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn start_server(python: &Path) -> Result<(Started, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create("target/bench-llama-server.log")?;
    let child = Command::new(python)
        .arg("tests/support/llama_server.py")
        .args([
            "--model",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--n_ctx", "2048"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the llama-cpp-python server")?;
    let started = Started(child);
    let url = format!("http://127.0.0.1:{port}/v1");
    let probe = ServerConfig {
        attempts: 1,
        ..ServerConfig::new(&url)
    };
    let t = Instant::now();
    while Client::connect(&probe).is_err() {
        if t.elapsed() > Duration::from_secs(180) {
            bail!("the server did not answer in 180 s (target/bench-llama-server.log)");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok((started, url))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let examples: usize = value("--examples").map_or(Ok(64), |v| v.parse())?;
    let task = Task::load(Path::new(TASK))?;
    let (_server, url) = match value("--url") {
        Some(url) => (None, url),
        None => {
            let (s, u) = start_server(&python()?)?;
            (Some(s), u)
        }
    };
    let config = ServerConfig::new(&url);
    let client = Client::connect(&config)?;
    let (before, after) = task.template.split(PROMPT);
    let n = examples.min(task.test.len());
    let prompts: Vec<String> = task.test[..n]
        .iter()
        .map(|e| format!("{before}{}{after}", e.input))
        .collect();
    let mut rows = Vec::new();
    for c in CONCURRENCY {
        let backend = ServerBackend::new(client.clone(), c);
        let mut scorer = Scorer::with_backend(&task, Box::new(backend))?;
        let t = Instant::now();
        let (ours, _) = scorer.label_logprobs(PROMPT, Split::Test, Some(n))?;
        let seconds = t.elapsed().as_secs_f64();
        rows.push(Row {
            client: "promptevo".into(),
            concurrency: c,
            examples: n,
            seconds,
            examples_per_s: n as f64 / seconds,
            max_abs_diff: None,
        });
        let job = std::env::temp_dir().join(format!("promptevo-server-bench-{c}.json"));
        std::fs::write(
            &job,
            serde_json::json!({
                "url": url, "model": client.model(), "prompts": prompts,
                "labels": task.verbalizers(), "concurrency": c, "logprobs": TOP_K,
            })
            .to_string(),
        )?;
        let out = Command::new("python3")
            .arg("benches/peers/openai_client.py")
            .arg(&job)
            .output()
            .context("running python3 benches/peers/openai_client.py")?;
        if !out.status.success() {
            bail!(
                "the Python client failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let peer: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let seconds = peer["seconds"].as_f64().context("no seconds")?;
        let mut diff: f64 = 0.0;
        for (mine, theirs) in ours
            .iter()
            .zip(peer["label_logprobs"].as_array().context("no log-probs")?)
        {
            for (a, b) in mine.iter().zip(theirs.as_array().context("a row")?) {
                if let Some(b) = b.as_f64() {
                    diff = diff.max((f64::from(*a) - b).abs());
                }
            }
        }
        rows.push(Row {
            client: "python-urllib".into(),
            concurrency: c,
            examples: n,
            seconds,
            examples_per_s: n as f64 / seconds,
            max_abs_diff: Some(diff),
        });
        if !json {
            eprintln!("concurrency {c} done");
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"url": url, "model": client.model(), "rows": rows})
        );
    } else {
        println!(
            "server {url} ({}), {n} SST-2 examples, one request each\n",
            client.model()
        );
        println!(
            "| client | in flight | examples | seconds | examples/s | max abs diff vs promptevo |"
        );
        println!("|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {} | {} | {:.2} | {:.1} | {} |",
                r.client,
                r.concurrency,
                r.examples,
                r.seconds,
                r.examples_per_s,
                r.max_abs_diff.map_or("-".into(), |d| format!("{d:.1e}"))
            );
        }
    }
    Ok(())
}
