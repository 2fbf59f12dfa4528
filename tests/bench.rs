//! `promptevo bench` on the real default model: a tiny benchmark writes its tables and plots,
//! and a rerun after damaging one run redoes only that run, to the same result.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{assert_ok, bench, results_rows, root};

/// A tiny benchmark (ga and random x sst2 x 2 seeds) written into `dir`.
fn tiny_config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"name = "tiny"
tasks = ["{}"]
seeds = [0, 1]
dev_limit = 8
test_limit = 8
max_initial_prompts = 2
pool = "{}"

[search]
population = 3
elite = 1
generations = 1000
max_evals = 48

[[arm]]
name = "ga"
[arm.search]
strategy = "ga"

[[arm]]
name = "random"
[arm.search]
strategy = "random"
"#,
        root().join("experiments/tasks/sst2.toml").display(),
        root().join("experiments/pools/phrases.toml").display()
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// results.csv rows without the measured columns (which differ between invocations).
fn rows(out: &Path) -> Vec<Vec<String>> {
    results_rows(&out.join("results.csv"))
}

/// Each logged evaluation without its timing and cache-dependent fields (seconds, forward passes).
fn evaluations(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("seconds");
            o.remove("forward_passes");
            v
        })
        .collect()
}

fn run_dir(out: &Path, arm: &str, seed: u64) -> PathBuf {
    out.join(format!("runs/{arm}/sst2/seed{seed}"))
}

#[test]
fn tiny_benchmark_writes_results_and_a_rerun_redoes_only_the_damaged_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let out = dir.path().join("out");
    let start = Instant::now();
    let first = bench(&config, &out);
    assert_ok(&first);
    eprintln!(
        "tiny bench (4 runs): {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let want = rows(&out);
    assert_eq!(want.len(), 4);
    // Every run of ours records what its search cost: CPU seconds (near 0 when the shared
    // cache already held its prompts) and peak memory (the model, loaded once, included: well
    // over 100 MB).
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let cpu: f64 = f[13]
            .parse()
            .unwrap_or_else(|_| panic!("cpu_seconds: {line}"));
        let rss: f64 = f[14]
            .parse()
            .unwrap_or_else(|_| panic!("peak_rss_mb: {line}"));
        assert!(cpu >= 0.0 && rss > 100.0, "{line}");
    }
    for r in &want {
        assert!(r[0] == "ga" || r[0] == "random", "{r:?}");
        assert_eq!(r[2], "sst2");
        for v in &r[4..8] {
            let x: f64 = v.parse().unwrap();
            assert!((0.0..=1.0).contains(&x), "{r:?}");
        }
        let evals: u64 = r[8].parse().unwrap();
        assert!(evals > 0 && evals <= 48, "{r:?}");
        let to95: u64 = r[10].parse().unwrap();
        assert!(to95 > 0 && to95 <= evals, "{r:?}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(md.contains("### sst2"), "{md}");
    assert!(
        md.contains("\n- backend: in process (weights `bf16`, device `cpu`, batch size 8)\n"),
        "{md}"
    );
    assert!(md.contains("| ga | ga | 2 |"), "{md}");
    assert!(md.contains("## Paired comparison with `random`"), "{md}");
    assert!(md.contains("all tasks (pooled)"), "{md}");
    assert!(md.contains("Wilcoxon"), "{md}");
    for svg in ["sst2-test.svg", "sst2-convergence.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(text.contains("<svg"), "{svg}");
    }
    // Every run is an ordinary run folder.
    for (arm, seed) in [("ga", 0), ("ga", 1), ("random", 0), ("random", 1)] {
        let d = run_dir(&out, arm, seed);
        for f in [
            "config.json",
            "evaluations.jsonl",
            "result.json",
            "report.md",
        ] {
            assert!(d.join(f).is_file(), "{}", d.join(f).display());
        }
    }

    // Damage one run: no result, only its first two evaluations logged.
    let damaged = run_dir(&out, "ga", 1);
    let log = damaged.join("evaluations.jsonl");
    let full_log = std::fs::read_to_string(&log).unwrap();
    let head: String = full_log.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, head).unwrap();
    std::fs::remove_file(damaged.join("result.json")).unwrap();
    let others: Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> =
        [("ga", 0), ("random", 0), ("random", 1)]
            .iter()
            .map(|&(arm, seed)| {
                let p = run_dir(&out, arm, seed).join("evaluations.jsonl");
                let meta = std::fs::metadata(&p).unwrap();
                (
                    p.clone(),
                    std::fs::read(&p).unwrap(),
                    meta.modified().unwrap(),
                )
            })
            .collect();

    let second = bench(&config, &out);
    assert_ok(&second);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(
        stderr.matches("finished earlier, skipped").count(),
        3,
        "{stderr}"
    );
    assert_eq!(stderr.matches("(resumed)").count(), 1, "{stderr}");
    assert!(stderr.contains("ga sst2 seed 1:"), "{stderr}");
    for (p, bytes, mtime) in others {
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "{}", p.display());
        assert_eq!(
            std::fs::metadata(&p).unwrap().modified().unwrap(),
            mtime,
            "{}",
            p.display()
        );
    }
    // Same seed, same result: the redone run matches the first pass.
    assert_eq!(
        evaluations(&std::fs::read_to_string(&log).unwrap()),
        evaluations(&full_log)
    );
    assert_eq!(rows(&out), want);
}

#[test]
fn bad_benchmark_files_fail_with_exit_2_and_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(tiny_config(dir.path())).unwrap();
    for (name, from, to, want) in [
        (
            "unknown-key",
            "population = 3",
            "populaton = 3",
            "populaton",
        ),
        (
            "unknown-strategy",
            "strategy = \"random\"",
            "strategy = \"annealing\"",
            "annealing",
        ),
        (
            "unknown-top-key",
            "dev_limit = 8",
            "dev_limits = 8",
            "dev_limits",
        ),
    ] {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, good.replace(from, to)).unwrap();
        let out = bench(&path, &dir.path().join(name));
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
        assert!(
            !dir.path().join(name).exists(),
            "nothing is written: {name}"
        );
    }
}

#[test]
fn arms_runs_only_the_named_arms_and_a_later_invocation_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let out = dir.path().join("out");
    let with_arms = |arms: &str| common::bench_with(&config, &out, &["--arms", arms]);

    // An arm the file lacks: one line listing the file's arms, before any model is loaded.
    let bad = with_arms("random,annealing");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no arm `annealing`"), "{stderr}");
    assert!(stderr.contains("ga, random"), "{stderr}");
    assert!(!out.join("results.csv").exists());

    // Only random's two runs, counted as the invocation's whole.
    let first = with_arms("random");
    assert_ok(&first);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("[2/2] random sst2 seed 1:"), "{stderr}");
    assert!(!stderr.contains(" ga sst2"), "{stderr}");
    let only_random = rows(&out);
    assert_eq!(only_random.len(), 2, "{only_random:?}");
    assert!(only_random.iter().all(|r| r[0] == "random"));
    assert!(!run_dir(&out, "ga", 0).exists());
    // bench.md already shows the finished runs, and says the benchmark is not done.
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(
        md.contains("**In progress: 2 of 4 runs have finished.**"),
        "{md}"
    );
    assert!(md.contains("| random | random | 2 |"), "{md}");

    // Then ga: random's finished runs are read back into the tables, not run again.
    let random_log = std::fs::read(run_dir(&out, "random", 0).join("evaluations.jsonl")).unwrap();
    let second = with_arms("ga");
    assert_ok(&second);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("[2/2] ga sst2 seed 1:"), "{stderr}");
    assert!(!stderr.contains("random sst2"), "{stderr}");
    assert_eq!(
        std::fs::read(run_dir(&out, "random", 0).join("evaluations.jsonl")).unwrap(),
        random_log
    );
    let all = rows(&out);
    assert_eq!(all.len(), 4, "{all:?}");
    for r in &only_random {
        assert!(all.contains(r), "{r:?} in {all:?}");
    }
    // The same tables as one invocation without --arms gives (it skips every run).
    let third = bench(&config, &out);
    assert_ok(&third);
    assert_eq!(
        String::from_utf8_lossy(&third.stderr)
            .matches("finished earlier, skipped")
            .count(),
        4
    );
    assert_eq!(rows(&out), all);
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(!md.contains("In progress"), "{md}");
    assert!(md.contains("4 of 4 runs finished"), "{md}");
}
