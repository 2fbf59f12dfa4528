//! Runs survive crashes: an `optimize` killed with SIGKILL at several points and continued with
//! `promptevo resume` ends with exactly the evaluations and result of an uninterrupted run, and
//! a second writer on the same folder is refused.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{assert_ok, bin, root, small_optimize};
use std::time::{Duration, Instant};

fn optimize_cmd(out: &Path) -> Command {
    small_optimize(out, 8, 8, 9)
}

fn log_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("evaluations.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// (id, prompt, score, pool and per-example results) of every logged evaluation.
fn evaluations(dir: &Path) -> Vec<(u64, String, f64, String)> {
    log_lines(dir)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_u64().unwrap(),
                v["prompt"].as_str().unwrap().to_string(),
                v["score"].as_f64().unwrap(),
                format!("{} {}", v["pool"], v["results"]),
            )
        })
        .collect()
}

fn best_prompt(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("best.txt")).unwrap()
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert_ok(&optimize_cmd(&whole).output().unwrap());
    let want = evaluations(&whole);
    assert!(want.len() > 17);

    for (i, kill_after) in [1usize, 9, 18].into_iter().enumerate() {
        let run = dir.path().join(format!("killed-{i}"));
        let mut child = optimize_cmd(&run)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while log_lines(&run).len() < kill_after {
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "the run never logged {kill_after} evaluations"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before it could be killed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if i == 0 {
            // While it runs, nobody else may write to its folder.
            let second = bin().arg("resume").arg(&run).output().unwrap();
            assert_eq!(second.status.code(), Some(2));
            assert!(
                String::from_utf8_lossy(&second.stderr).contains("another promptevo"),
                "{}",
                String::from_utf8_lossy(&second.stderr)
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let before = evaluations(&run);
        assert!(before.len() >= kill_after && before.len() < want.len());
        if i == 1 {
            // A crash in the middle of a write leaves half a line.
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(run.join("evaluations.jsonl"))
                .unwrap();
            std::io::Write::write_all(&mut f, b"{\"id\": 99, \"generation\": 1, \"pro").unwrap();
        }
        let had_checkpoint = run.join("checkpoint.json").exists();
        let resumed = bin()
            .arg("resume")
            .arg(&run)
            .arg("--quiet")
            .current_dir(root())
            .output()
            .unwrap();
        assert_ok(&resumed);
        // Resume says where the run stood, from checkpoint.json, and finds nothing lost.
        let said = String::from_utf8_lossy(&resumed.stderr);
        let stood = if had_checkpoint {
            "last checkpoint after generation"
        } else {
            "no generation had finished"
        };
        assert!(said.contains(stood), "{said}");
        assert!(!said.contains("warning:"), "{said}");
        let got = evaluations(&run);
        assert_eq!(
            got, want,
            "killed after {kill_after}: the resumed log differs from the uninterrupted one"
        );
        assert_eq!(
            &got[..before.len()],
            &before[..],
            "logged evaluations were rewritten"
        );
        assert_eq!(best_prompt(&run), best_prompt(&whole));
        assert!(!run.join(".lock").exists(), "the lock was not released");
    }
}

#[test]
fn resume_of_a_folder_that_is_not_a_run_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().arg("resume").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a run folder") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn a_killed_model_driven_raced_run_resumes_to_the_uninterrupted_result() {
    // Promptbreeder asks the model for every mutant (sampled from the seeded stream) and racing
    // logs candidates once per rung: resume must replay both exactly.
    let cmd = |out: &Path| {
        let mut c = bin();
        c.current_dir(root())
            .args([
                "optimize",
                "--task",
                "experiments/tasks/sst2.toml",
                "--quiet",
            ])
            .args([
                "--strategy",
                "promptbreeder",
                "--racing",
                "--max-initial-prompts",
                "3",
            ])
            .args([
                "--dev-limit",
                "8",
                "--test-limit",
                "4",
                "--population",
                "4",
                "--elite",
                "1",
            ])
            .args([
                "--generations",
                "3",
                "--seed",
                "5",
                "--max-new-tokens",
                "32",
            ])
            .arg("--model")
            .arg(common::default_model())
            .arg("--out")
            .arg(out);
        c
    };
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert_ok(&cmd(&whole).output().unwrap());
    let want = evaluations(&whole);
    assert!(want.len() > 6, "{want:?}");
    let run = dir.path().join("killed");
    let mut child = cmd(&run)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while log_lines(&run).len() < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "never logged 5 evaluations"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = evaluations(&run);
    assert!(before.len() < want.len());
    assert_ok(
        &bin()
            .arg("resume")
            .arg(&run)
            .arg("--quiet")
            .current_dir(root())
            .output()
            .unwrap(),
    );
    assert_eq!(evaluations(&run), want);
    assert_eq!(best_prompt(&run), best_prompt(&whole));
}

#[test]
fn a_killed_adaptive_run_resumes_to_the_same_search_and_move_families_table() {
    // The bandit's posteriors come from the scores the log replays and its draws from the
    // seeded stream, so a resumed run makes the same allocation; the report's table is
    // computed from the log alone.
    let cmd = |out: &Path| {
        let mut c = bin();
        c.current_dir(root())
            .args([
                "optimize",
                "--task",
                "experiments/tasks/sst2.toml",
                "--quiet",
            ])
            .args(["--strategy", "adaptive", "--max-initial-prompts", "2"])
            .args([
                "--dev-limit",
                "8",
                "--test-limit",
                "4",
                "--validation-limit",
                "4",
                "--population",
                "4",
                "--elite",
                "1",
            ])
            .args([
                "--generations",
                "3",
                "--seed",
                "3",
                "--max-new-tokens",
                "32",
            ])
            .arg("--model")
            .arg(common::default_model())
            .arg("--out")
            .arg(out);
        c
    };
    let families = |dir: &Path| {
        let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
        let start = report.find("## Move families").expect("the table");
        let end = report[start..].find("## Plots").unwrap();
        report[start..start + end].to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert_ok(&cmd(&whole).output().unwrap());
    let want = evaluations(&whole);
    assert!(want.len() > 10, "{want:?}");
    let run = dir.path().join("killed");
    let mut child = cmd(&run)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while log_lines(&run).len() < 8 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "never logged 8 evaluations"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(evaluations(&run).len() < want.len());
    assert_ok(
        &bin()
            .arg("resume")
            .arg(&run)
            .arg("--quiet")
            .current_dir(root())
            .output()
            .unwrap(),
    );
    assert_eq!(evaluations(&run), want);
    assert_eq!(best_prompt(&run), best_prompt(&whole));
    assert_eq!(families(&run), families(&whole));
}
