//! experiments/cluster/slurm-array.sh on a real Slurm: a one-node cluster on 127.0.0.1
//! (munged, slurmctld and slurmd from Debian's slurm-wlm and munge, started and stopped by the
//! test with `tests/support/slurm-one-node.sh`) runs a small benchmark as 2 array shards and
//! the merge job, exactly as the script's header documents; the merged tables equal an
//! unsharded run's. Then one shard is cancelled mid-run, Slurm cancels the merge, the shard is
//! resubmitted with `ARRAY=K` as the header says, and the merged tables are still identical.
//!
//! Skipped loudly (one line on stderr) where the cluster cannot be installed or started: no
//! root, no apt-get. Progress goes to stderr (`cargo test --release --test slurm -- --nocapture`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{bin, default_model, free_port, results_rows, root};

/// Longest wait for any job to end.
const JOB_TIMEOUT: Duration = Duration::from_secs(900);
/// The support script's exit status for "cannot install or run here".
const SKIP_STATUS: i32 = 3;

/// A small benchmark (ga and random x sst2 x 2 seeds: 4 runs, 2 per shard), as tests/shard.rs's
/// but with runs long enough to be cancelled mid-run.
fn config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"name = "slurm"
tasks = ["{}"]
seeds = [0, 1]
dev_limit = 16
test_limit = 8
max_initial_prompts = 2
pool = "{}"

[search]
population = 3
elite = 1
generations = 1000
max_evals = 120

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
    let path = dir.join("slurm.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The one-node cluster; stopped when dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    /// Starts the cluster in `dir`; None (after a loud line) where it cannot run here.
    fn start(dir: &Path) -> Option<Self> {
        let out = Command::new(root().join("tests/support/slurm-one-node.sh"))
            .arg("start")
            .arg(dir)
            .arg(free_port().to_string())
            .arg(free_port().to_string())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(SKIP_STATUS) {
            eprintln!("SKIPPED tests/slurm.rs: {}", stderr.trim());
            return None;
        }
        let cluster = Self {
            dir: dir.to_path_buf(),
            conf: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        };
        assert!(out.status.success(), "starting the cluster: {stderr}");
        Some(cluster)
    }

    /// A Slurm command (or the script) pointed at this cluster.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf).current_dir(root());
        c
    }

    /// The state of `job` (e.g. PENDING, RUNNING, COMPLETED, CANCELLED), or of every task of an
    /// array job, as `scontrol show job` says.
    fn states(&self, job: &str) -> Vec<String> {
        let out = self
            .command("scontrol")
            .args(["show", "job", job])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("JobState="))
            .map(str::to_string)
            .collect()
    }

    /// Waits until no task of `job` is pending or running; returns their final states.
    fn wait(&self, job: &str) -> Vec<String> {
        let start = Instant::now();
        loop {
            let states = self.states(job);
            let live = |s: &String| {
                matches!(
                    s.as_str(),
                    "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED"
                )
            };
            if !states.is_empty() && !states.iter().any(live) {
                return states;
            }
            assert!(
                start.elapsed() < JOB_TIMEOUT,
                "job {job} still {states:?} after {JOB_TIMEOUT:?}; see {}/log",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs experiments/cluster/slurm-array.sh as its header documents; returns the array job
    /// and the merge job ids it printed.
    fn submit(&self, config: &Path, out: &Path, array: Option<&str>) -> (String, String) {
        let mut c = self.command(root().join("experiments/cluster/slurm-array.sh"));
        c.env("SHARDS", "2")
            .env("CONFIG", config)
            .env("OUT", out)
            .env("MODEL", default_model())
            .env("PROMPTEVO", env!("CARGO_BIN_EXE_promptevo"))
            // The #SBATCH defaults (8 CPUs, 8G) are for real nodes; this one has what it has.
            .env("SBATCH_FLAGS", "--cpus-per-task=1 --mem=1G");
        if let Some(a) = array {
            c.env("ARRAY", a);
        }
        let output = c.output().unwrap();
        assert_ok(&output);
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        eprintln!("slurm-array.sh: {}", stdout.trim().replace('\n', " | "));
        let id_after = |needle: &str| {
            let rest =
                &stdout[stdout.find(needle).unwrap_or_else(|| panic!("{stdout}")) + needle.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .to_string()
        };
        (id_after("array job "), id_after("merge: job "))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(root().join("tests/support/slurm-one-node.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rows of a results.csv without the measured columns (which differ between invocations).
fn rows(csv: &Path) -> Vec<Vec<String>> {
    results_rows(csv)
}

/// Lines of `path` (0 if it does not exist yet).
fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_benchmark_sharded_on_a_real_slurm_merges_to_the_unsharded_results_even_after_a_cancelled_shard(
) {
    let dir = tempfile::tempdir().unwrap();
    let Some(cluster) = Cluster::start(&dir.path().join("cluster")) else {
        return;
    };
    let config = config(dir.path());

    // The reference: the same benchmark unsharded, in this process's machine, not through Slurm.
    let whole = dir.path().join("whole");
    let start = Instant::now();
    let out = bin()
        .current_dir(root())
        .args(["bench", "--quiet", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&whole)
        .arg("--model")
        .arg(default_model())
        .output()
        .unwrap();
    assert_ok(&out);
    let want = rows(&whole.join("results.csv"));
    assert_eq!(want.len(), 4);
    eprintln!(
        "unsharded: 4 runs in {:.0} s",
        start.elapsed().as_secs_f64()
    );

    // Two shards and the merge through Slurm.
    let sharded = dir.path().join("sharded");
    let start = Instant::now();
    let (array, merge) = cluster.submit(&config, &sharded, None);
    assert_eq!(cluster.wait(&array), ["COMPLETED", "COMPLETED"]);
    assert_eq!(cluster.wait(&merge), ["COMPLETED"]);
    assert_eq!(rows(&sharded.join("results.csv")), want);
    assert!(sharded.join("bench.md").exists());
    for log in [
        "shard-".to_string() + &array + "_1.log",
        format!("merge-{merge}.log"),
    ] {
        assert!(sharded.join("slurm-logs").join(&log).exists(), "{log}");
    }
    eprintln!(
        "2 shards + merge through Slurm (jobs {array}, {merge}): {:.0} s, results.csv equal to the unsharded run's",
        start.elapsed().as_secs_f64()
    );

    // Cancel shard 1 (runs 0 and 2: ga seeds 0 and 1) while its first run is logging.
    let cancelled = dir.path().join("cancelled");
    let (array, merge) = cluster.submit(&config, &cancelled, None);
    let first_log = cancelled.join("runs/ga/sst2/seed0/evaluations.jsonl");
    let start = Instant::now();
    while line_count(&first_log) < 2 {
        assert!(
            start.elapsed() < JOB_TIMEOUT,
            "shard 1 never started logging"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let task = format!("{array}_1");
    assert_ok(&cluster.command("scancel").arg(&task).output().unwrap());
    assert_eq!(cluster.wait(&task), ["CANCELLED"]);
    let logged = line_count(&first_log);
    let before = std::fs::read_to_string(&first_log).unwrap();
    // A line cut by the cancel is not evidence; the whole lines are.
    let before = &before[..before.rfind('\n').map_or(0, |i| i + 1)];
    let finished = ["seed0", "seed1"]
        .iter()
        .filter(|s| {
            cancelled
                .join("runs/ga/sst2")
                .join(s)
                .join("result.json")
                .exists()
        })
        .count();
    assert!(finished < 2, "shard 1 finished before it was cancelled");
    // The merge depended on every shard: Slurm cancels it (--kill-on-invalid-dep=yes).
    cluster.wait(&array);
    assert_eq!(cluster.wait(&merge), ["CANCELLED"]);
    assert!(!cancelled.join("results.csv").exists());
    eprintln!(
        "cancelled shard 1 ({task}) with {logged} evaluations logged in ga/sst2/seed0 and {finished} of its 2 runs finished; Slurm cancelled merge {merge}"
    );

    // Resubmit shard 1 alone, as the header says: its runs resume, a new merge follows.
    let (array, merge) = cluster.submit(&config, &cancelled, Some("1"));
    assert_eq!(cluster.wait(&array), ["COMPLETED"]);
    assert_eq!(cluster.wait(&merge), ["COMPLETED"]);
    assert_eq!(rows(&cancelled.join("results.csv")), want);
    // The resumed run kept every evaluation logged before the cancel.
    assert!(std::fs::read_to_string(&first_log)
        .unwrap()
        .starts_with(before));
    eprintln!("resubmitted shard 1 (ARRAY=1, job {array}) and merge {merge}: results.csv equal to the unsharded run's");
}
