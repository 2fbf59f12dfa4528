//! Disk faults: when a write to the run folder fails (a full disk, simulated with
//! `RLIMIT_FSIZE` in the child process, SIGXFSZ ignored so that the write returns EFBIG), the
//! run stops with one error line naming the file, every evaluation logged before it is intact,
//! and `resume` afterwards finishes with the same log as an uninterrupted run.
#![cfg(unix)]

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use promptevo::model::tiny::{write_tiny_llama, TinyConfig};

const TASK: &str = "name = \"t\"\nkind = \"classification\"\ntemplate = \"{prompt}\\nReview: {input}\\nSentiment:\"\nlabels = [\"negative\", \"positive\"]\ninitial_prompts = [\"Is it positive?\", \"Classify it.\"]\n[data]\ndev = \"d.jsonl\"\ntest = \"d.jsonl\"\n";
const DATA: &str = "{\"input\": \"good film\", \"target\": \"positive\"}\n{\"input\": \"bad\", \"target\": \"negative\"}\n{\"input\": \"fine\", \"target\": \"positive\"}\n";

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// A run that no fault interrupted.
    reference: PathBuf,
}

fn optimize(s: &Setup, out: &Path) -> Command {
    let mut c = common::bin();
    c.current_dir(common::root())
        .args([
            "optimize",
            "--quiet",
            "--population",
            "8",
            "--generations",
            "3",
        ])
        .arg("--task")
        .arg(s.root.join("t.toml"))
        .arg("--model")
        .arg(s.root.join("tiny.gguf"))
        .arg("--out")
        .arg(out);
    c
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    write_tiny_llama(
        &root.join("tiny.gguf"),
        &TinyConfig {
            layers: 1,
            ..Default::default()
        },
    )
    .unwrap();
    std::fs::write(root.join("t.toml"), TASK).unwrap();
    std::fs::write(root.join("d.jsonl"), DATA).unwrap();
    let mut s = Setup {
        _dir: dir,
        reference: root.join("reference"),
        root,
    };
    s.reference = s.root.join("reference");
    let out = optimize(&s, &s.reference).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

/// Runs `cmd` with every file it writes limited to `bytes` (writes past it fail with EFBIG).
fn with_file_size_limit(mut cmd: Command, bytes: u64) -> Output {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// The log's records without their timings (the only field that differs between runs).
fn records(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("evaluations.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// The one error line of a failed run; asserts exit code 2 and that it names `file`.
fn one_error_line(out: &Output, file: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    let line = lines[0].to_string();
    assert!(
        line.contains(&format!("/{file}:")) && line.contains("File too large"),
        "{line}"
    );
    assert_eq!(
        line.matches("File too large").count(),
        1,
        "cause printed twice: {line}"
    );
    line
}

/// Resumes `run` without a limit and checks it ends as the reference run did.
fn resume_matches_reference(s: &Setup, run: &Path) {
    let out = common::bin()
        .args(["resume", "--quiet"])
        .arg(run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(records(run), records(&s.reference));
    let read = |p: &Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap();
    assert_eq!(read(run, "best.txt"), read(&s.reference, "best.txt"));
    let names = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(run), names(&s.reference));
}

#[test]
fn a_full_disk_mid_log_keeps_every_logged_evaluation_and_resume_finishes_the_same_run() {
    let s = setup();
    let run = s.root.join("cut");
    let limit = size(&s.reference.join("evaluations.jsonl")) / 2;
    let out = with_file_size_limit(optimize(&s, &run), limit);
    one_error_line(&out, "evaluations.jsonl");
    // Every complete line is the reference run's record; at most a partial last line follows.
    let text = std::fs::read_to_string(run.join("evaluations.jsonl")).unwrap();
    assert_eq!(text.len() as u64, limit);
    let complete = &text[..text.rfind('\n').unwrap() + 1];
    let want = records(&s.reference);
    let got: Vec<serde_json::Value> = complete
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect();
    assert!(!got.is_empty() && got.len() < want.len());
    assert_eq!(got[..], want[..got.len()]);
    resume_matches_reference(&s, &run);
}

#[test]
fn a_full_disk_while_plotting_or_writing_the_report_is_one_line_and_resume_completes_it() {
    let s = setup();
    let log = size(&s.reference.join("evaluations.jsonl"));
    let svg =
        ["generations.svg", "operators.svg", "progress.svg"].map(|f| size(&s.reference.join(f)));
    let html = size(&s.reference.join("report.html"));
    let (min_svg, max_svg) = (*svg.iter().min().unwrap(), *svg.iter().max().unwrap());
    assert!(
        log < min_svg && max_svg < html,
        "sizes {log} {svg:?} {html}"
    );
    // The log fits, the first plot does not; then the plots fit and report.html does not.
    for (limit, file) in [
        ((log + min_svg) / 2, "generations.svg"),
        ((max_svg + html) / 2, "report.html"),
    ] {
        let run = s.root.join(format!("cut-{limit}"));
        let out = with_file_size_limit(optimize(&s, &run), limit);
        one_error_line(&out, file);
        assert_eq!(records(&run), records(&s.reference), "the log is whole");
        let leftovers: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        resume_matches_reference(&s, &run);
    }
}

#[test]
fn a_disk_full_before_the_config_is_written_names_config_json_and_leaves_nothing_half_done() {
    let s = setup();
    let run = s.root.join("early");
    let limit = size(&s.reference.join("config.json")) - 10;
    let out = with_file_size_limit(optimize(&s, &run), limit);
    one_error_line(&out, "config.json");
    let left: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // With space again the same command runs from the start.
    let out = optimize(&s, &run).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(records(&run), records(&s.reference));
}
