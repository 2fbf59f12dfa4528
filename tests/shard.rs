//! `promptevo bench --shard K/N` on the real default model: a tiny benchmark run as two shards
//! in two concurrent processes and merged gives the same results.csv, results.json and bench.md
//! as the unsharded run (wall-clock seconds aside); shards never write tables that claim to be
//! complete; a merge with a run missing names it; bad --shard values are one line, exit 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_ok, bin, default_model, results_rows, root, MEASURED};

/// A tiny benchmark (ga and random x sst2 x 2 seeds) written into `dir`, as in tests/bench.rs.
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

fn bench(config: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.current_dir(root())
        .args(["bench", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(default_model())
        .args(extra);
    c
}

fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n}: {stderr}");
    }
}

/// Rows of a results.csv without the measured columns (which differ between invocations).
fn rows(csv: &Path) -> Vec<Vec<String>> {
    results_rows(csv)
}

/// results.json without each row's measured fields (wall and CPU seconds, peak memory).
fn json_rows(path: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            for k in MEASURED {
                r.as_object_mut().unwrap().remove(k).unwrap();
            }
            r
        })
        .collect()
}

/// bench.md with the measured cells (wall and CPU seconds, peak memory: the last three) of
/// each per-arm row dropped.
fn markdown(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("| ga | ga |") || l.starts_with("| random | random |") {
                let cells: Vec<&str> = l.trim_end_matches('|').split('|').collect();
                cells[..cells.len() - 3].join("|")
            } else {
                l.to_string()
            }
        })
        .collect()
}

#[test]
fn two_shards_in_two_processes_merge_to_the_unsharded_results() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());

    let whole = dir.path().join("whole");
    assert_ok(&bench(&config, &whole, &[]).output().unwrap());
    let want = rows(&whole.join("results.csv"));
    assert_eq!(want.len(), 4);

    // Both shards at once, on the same output folder.
    let sharded = dir.path().join("sharded");
    let children: Vec<_> = ["1/2", "2/2"]
        .iter()
        .map(|s| {
            bench(&config, &sharded, &["--shard", s])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outputs {
        assert_ok(o);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(stderr.matches(" seed ").count(), 2, "{stderr}");
        assert!(stderr.contains("--merge"), "{stderr}");
    }

    // No table at the top claims the benchmark is complete; each shard has its own rows.
    for f in ["results.csv", "results.json", "bench.md", "sst2-test.svg"] {
        assert!(!sharded.join(f).exists(), "{f} written by a shard");
    }
    let shard_rows: Vec<Vec<Vec<String>>> = ["1-of-2", "2-of-2"]
        .iter()
        .map(|s| rows(&sharded.join("shards").join(s).join("results.csv")))
        .collect();
    // Run order is (seed, task, arm): runs 0 and 2 (ga, seeds 0 and 1) are shard 1's.
    let key = |r: &Vec<String>| (r[0].clone(), r[3].clone());
    assert_eq!(
        shard_rows[0].iter().map(key).collect::<Vec<_>>(),
        [("ga".into(), "0".into()), ("ga".into(), "1".into())]
    );
    assert_eq!(
        shard_rows[1].iter().map(key).collect::<Vec<_>>(),
        [("random".into(), "0".into()), ("random".into(), "1".into())]
    );

    // A merge with a run unfinished fails and names it.
    let result = sharded.join("runs/random/sst2/seed1/result.json");
    let aside = dir.path().join("result.json.aside");
    std::fs::rename(&result, &aside).unwrap();
    let failed = bench(&config, &sharded, &["--merge"]).output().unwrap();
    assert_one_line_error(
        &failed,
        &[
            &sharded.display().to_string(),
            "1 of 4 runs have not finished",
            "runs/random/sst2/seed1",
            "--shard K/N",
        ],
    );
    assert!(!sharded.join("results.csv").exists());
    std::fs::rename(&aside, &result).unwrap();

    // The merge gives the unsharded tables.
    let merged = bench(&config, &sharded, &["--merge"]).output().unwrap();
    assert_ok(&merged);
    assert_eq!(rows(&sharded.join("results.csv")), want);
    assert_eq!(
        json_rows(&sharded.join("results.json")),
        json_rows(&whole.join("results.json"))
    );
    let md = markdown(&sharded.join("bench.md"));
    assert!(
        md.iter().any(|l| l.contains("4 of 4 runs finished")),
        "{md:?}"
    );
    assert_eq!(md, markdown(&whole.join("bench.md")));
    for svg in ["sst2-test.svg", "sst2-convergence.svg"] {
        assert!(sharded.join(svg).is_file(), "{svg}");
    }

    // Rerunning the plain benchmark over the shards' folders runs nothing and agrees too.
    let rerun = bench(&config, &sharded, &[]).output().unwrap();
    assert_ok(&rerun);
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert_eq!(
        stderr.matches("finished earlier, skipped").count(),
        4,
        "{stderr}"
    );
    assert_eq!(rows(&sharded.join("results.csv")), want);
}

#[test]
fn bad_shard_flags_fail_with_exit_2_and_one_line_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    for (i, bad) in ["0/2", "3/2", "1/0", "2", "a/b"].iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let o = bench(&config, &out, &["--shard", bad]).output().unwrap();
        assert_one_line_error(&o, &["--shard", bad, "e.g. --shard 1/4"]);
        assert!(!out.exists(), "nothing is written for --shard {bad}");
    }
    let out = dir.path().join("both");
    let o = bench(&config, &out, &["--shard", "1/2", "--merge"])
        .output()
        .unwrap();
    assert_one_line_error(&o, &["--merge", "--shard"]);
    assert!(!out.exists());
    // A merge of nothing names the folder and the missing runs.
    let o = bench(&config, &out, &["--merge"]).output().unwrap();
    assert_one_line_error(&o, &["4 of 4 runs have not finished", "runs/ga/sst2/seed0"]);
    assert!(!out.exists());
}
