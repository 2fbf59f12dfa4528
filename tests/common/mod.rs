//! Helpers shared by the integration tests that run the `promptevo` binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A port on 127.0.0.1 nobody listens on now (for servers and daemons a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_promptevo"))
}

/// The crate root (task files and the default model are found from here).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real default model; fails with the fix when it has not been fetched.
pub fn default_model() -> PathBuf {
    let p = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "the default model is missing: run ./models/fetch-default.sh first"
    );
    p
}

/// A small, quiet SST-2 optimisation on the real model (population 4, 2 generations) into `out`.
pub fn small_optimize(out: &Path, dev_limit: usize, test_limit: usize, seed: u64) -> Command {
    let mut c = bin();
    c.current_dir(root())
        .args([
            "optimize",
            "--task",
            "experiments/tasks/sst2.toml",
            "--population",
            "4",
            "--generations",
            "2",
            "--quiet",
        ])
        .args([
            "--dev-limit",
            &dev_limit.to_string(),
            "--test-limit",
            &test_limit.to_string(),
            "--validation-limit",
            &test_limit.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .arg("--model")
        .arg(default_model())
        .arg("--out")
        .arg(out);
    c
}

/// Asserts a clean failure: exit code 2, one line on stderr mentioning every `needles`, no panic.
pub fn assert_bad_input(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("promptevo: error"))
        .collect();
    assert_eq!(lines.len(), 1, "want one error line, got: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "error line lacks {n:?}: {}", lines[0]);
    }
}

/// `promptevo eval` of `task` on the real default model (test split, first `limit` examples).
pub fn eval(task: &Path, limit: usize, extra: &[&str]) -> Output {
    bin()
        .current_dir(root())
        .arg("eval")
        .arg("--task")
        .arg(task)
        .args(["--split", "test", "--limit", &limit.to_string()])
        .args(extra)
        .arg("--model")
        .arg(default_model())
        .output()
        .unwrap()
}

/// Fails the test with the command's stderr unless it exited successfully.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `promptevo bench --quiet --config CONFIG --out OUT` on the default model, run to the end.
pub fn bench(config: &Path, out: &Path) -> Output {
    bench_with(config, out, &[])
}

/// `promptevo bench` as [`bench`] runs it, with `extra` arguments (e.g. `--arms random`).
pub fn bench_with(config: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .current_dir(root())
        .args(["bench", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(default_model())
        .args(extra)
        .output()
        .unwrap()
}

/// The columns of a benchmark's results.csv, in order.
pub const COLUMNS: &str = "arm,strategy,task,seed,initial_dev,initial_test,best_dev,best_test,evals_used,candidates,seconds,evals_to_95,status,cpu_seconds,peak_rss_mb,peer_test,note";

/// Columns of results.csv measured from the machine (wall seconds, CPU seconds, peak memory),
/// which differ between invocations.
pub const MEASURED: [&str; 3] = ["seconds", "cpu_seconds", "peak_rss_mb"];

/// The rows of a benchmark's results.csv (whose header must be [`COLUMNS`]) without the
/// [`MEASURED`] columns.
pub fn results_rows(csv: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(csv).unwrap_or_else(|e| panic!("{}: {e}", csv.display()));
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap_or_default(),
        COLUMNS,
        "{}",
        csv.display()
    );
    let keep: Vec<bool> = COLUMNS.split(',').map(|c| !MEASURED.contains(&c)).collect();
    lines
        .map(|l| {
            l.split(',')
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(f, _)| f.to_string())
                .collect()
        })
        .collect()
}

/// A generation task in `dir` judged with `metric` (the `[metric]` table's lines).
pub fn judge_task(dir: &Path, metric: &str) -> PathBuf {
    std::fs::write(
        dir.join("data.jsonl"),
        "{\"input\": \"hot\", \"target\": \"cold\"}\n{\"input\": \"up\", \"target\": \"down\"}\n",
    )
    .unwrap();
    let p = dir.join("task.toml");
    std::fs::write(
        &p,
        format!("name = \"j\"\nkind = \"generation\"\ntemplate = \"{{prompt}}\\n\\nInput: {{input}}\\nOutput:\"\nmax_new_tokens = 4\ninitial_prompts = [\"Write the opposite word.\"]\n[metric]\nname = \"judge\"\n{metric}\n[data]\ndev = \"data.jsonl\"\ntest = \"data.jsonl\"\n"),
    )
    .unwrap();
    p
}
