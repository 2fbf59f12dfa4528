//! Peer arms of `promptevo bench` (an external optimiser run by a driver script): a peer that
//! cannot install gives a loud `skipped` row and is retried; a driver's answer is scored by our
//! scorer exactly as `promptevo eval` scores it on the same test examples; a finished peer run
//! is not rerun, an interrupted one is; a driver that crashes gives a `failed` row quoting it.
//! The driver here is a stand-in script (system `python3`); a real peer run is the ignored test
//! at the end (it needs `experiments/peers/install.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_ok, bench, eval, root};

const DEV: usize = 8;
const TEST: usize = 8;
const BUDGET: u64 = 48;

/// A benchmark with one peer arm (`peer`) on SST-2, seed 3, its tools set by `peers` (the
/// `[peers]` table's lines).
fn config(dir: &Path, peer: &str, peers: &str) -> PathBuf {
    let text = format!(
        r#"name = "peers"
tasks = ["{}"]
seeds = [3]
dev_limit = {DEV}
validation_limit = 4
test_limit = {TEST}
max_initial_prompts = 3

[search]
max_evals = {BUDGET}

[peers]
{peers}

[[arm]]
name = "{peer}"
kind = "peer"
peer = "{peer}"
"#,
        root().join("experiments/tasks/sst2.toml").display(),
    );
    let path = dir.join("peers.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one row of results.csv, by column name.
fn row(out: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{text}");
    // The note may hold commas (quoted); it is the last column.
    let mut fields: Vec<String> = rows[0]
        .splitn(header.len(), ',')
        .map(str::to_string)
        .collect();
    fields.resize(header.len(), String::new());
    header.into_iter().zip(fields).collect()
}

fn field<'a>(row: &'a [(String, String)], name: &str) -> &'a str {
    &row.iter().find(|(k, _)| k == name).unwrap().1
}

/// A stand-in driver: reads the job, counts its invocations in `calls`, and answers the task's
/// second initial prompt with the figures a driver records (or crashes when `crash`).
fn fake_driver(dir: &Path, crash: bool) -> PathBuf {
    let body = if crash {
        "sys.stderr.write('Traceback: ValueError: boom on an empty batch\\n'); sys.exit(1)".into()
    } else {
        String::from(
            "json.dump({'status': 'ok', 'best_prompt': job['initial_prompts'][1], 'peer_test_accuracy': 0.625, \
             'evals_used': job['budget'] - 2, 'candidates': 5, 'search_seconds': 1.5, 'cpu_seconds': 2.25, \
             'peak_rss_mb': 123.0, 'settings': {'stand_in': True}, 'errors': []}, \
             open(os.path.join(job['out'], 'peer.json'), 'w'))",
        )
    };
    let script = format!(
        "import json, os, sys\njob = json.load(open(sys.argv[1]))\n\
         open(os.path.join(os.path.dirname(sys.argv[0]), 'calls'), 'a').write('x')\n\
         json.dump(job, open(os.path.join(os.path.dirname(sys.argv[0]), 'job.json'), 'w'))\n{body}\n"
    );
    let path = dir.join(if crash { "crash.py" } else { "driver.py" });
    std::fs::write(&path, script).unwrap();
    path
}

/// The `[peers]` lines for the stand-in driver: system `python3`, the driver, and a stand-in
/// llama.cpp server file (the stand-in driver never starts it; a real one is not built on CI).
fn stand_in_tools(dir: &Path, driver: &Path) -> String {
    let server = dir.join("llama-server");
    std::fs::write(&server, "#!/bin/sh\nexit 1\n").unwrap();
    format!(
        "python = \"{}\"\ndriver = \"{}\"\nllama_server = \"{}\"",
        python3().display(),
        driver.display(),
        server.display()
    )
}

fn calls(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("calls"))
        .map(|s| s.len())
        .unwrap_or(0)
}

fn python3() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn a_peer_that_cannot_install_is_skipped_loudly_then_run_once_installed_and_not_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let missing = config(dir.path(), "capo", "python = \"no-such-venv/bin/python\"");
    let first = bench(&missing, &out);
    assert_ok(&first);
    let err = stderr(&first);
    assert!(
        err.contains("PEER CAPO SKIPPED") && err.contains("experiments/peers/install.sh"),
        "{err}"
    );
    let r = row(&out);
    assert_eq!(field(&r, "status"), "skipped");
    assert_eq!(field(&r, "strategy"), "peer:capo");
    assert!(field(&r, "note").contains("no-such-venv"), "{r:?}");
    assert_eq!(field(&r, "best_test"), "");
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(
        md.contains("## Peers") && md.contains("| capo | sst2 | 3 | skipped |"),
        "{md}"
    );
    // A skipped peer's row is shown but is not a finished run.
    assert!(md.contains("0 of 1 runs finished"), "{md}");

    // Installed now (the stand-in driver): the skipped run is run, and its answer is scored by
    // our scorer as `promptevo eval` scores it on the same test examples.
    let driver = fake_driver(dir.path(), false);
    let tools = stand_in_tools(dir.path(), &driver);
    let installed = config(dir.path(), "capo", &tools);
    assert_ok(&bench(&installed, &out));
    assert_eq!(calls(dir.path()), 1);
    let job: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("job.json")).unwrap())
            .unwrap();
    assert_eq!(job["budget"], BUDGET);
    assert_eq!(job["seed"], 3);
    assert_eq!(job["dev"].as_array().unwrap().len(), DEV);
    assert_eq!(job["validation"].as_array().unwrap().len(), 4);
    assert_eq!(job["test"].as_array().unwrap().len(), TEST);
    assert_eq!(job["initial_prompts"].as_array().unwrap().len(), 3);
    assert!(job["model"].as_str().unwrap().ends_with(".gguf"), "{job}");
    let answer = job["initial_prompts"][1].as_str().unwrap().to_string();
    let r = row(&out);
    assert_eq!(field(&r, "status"), "ok");
    assert_eq!(field(&r, "evals_used"), (BUDGET - 2).to_string());
    assert_eq!(field(&r, "peer_test"), "0.625");
    assert_eq!(field(&r, "cpu_seconds"), "2.2");
    assert_eq!(field(&r, "peak_rss_mb"), "123.0");
    let ours: serde_json::Value = serde_json::from_slice(
        &eval(
            &root().join("experiments/tasks/sst2.toml"),
            TEST,
            &["--json", "--prompt", &answer],
        )
        .stdout,
    )
    .unwrap();
    let best_test: f64 = field(&r, "best_test").parse().unwrap();
    assert!(
        (best_test - ours["accuracy"].as_f64().unwrap()).abs() < 1e-12,
        "bench {best_test} vs eval {ours}"
    );

    // `promptevo show` reads a peer run: what it returned, our scores and the peer's own.
    let shown = common::bin()
        .args(["show"])
        .arg(out.join("runs/capo/sst2/seed3"))
        .output()
        .unwrap();
    assert_ok(&shown);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("peer capo | ok | 46 evaluations")
            && shown.contains("(the peer's own: 62.5%)")
            && shown.contains(&answer),
        "{shown}"
    );

    // Finished: not rerun, announced with its scores. Interrupted (no result file): rerun.
    let skipped = bench(&installed, &out);
    assert_ok(&skipped);
    assert_eq!(calls(dir.path()), 1);
    let line = format!(
        "capo sst2 seed 3: dev {:.1}% test {:.1}% (peer capo) (finished earlier, skipped)",
        100.0 * field(&r, "best_dev").parse::<f64>().unwrap(),
        100.0 * best_test
    );
    assert!(stderr(&skipped).contains(&line), "{}", stderr(&skipped));
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(md.contains("1 of 1 runs finished"), "{md}");
    // A merge reads the finished peer run back as it is (it once opened a peer's folder as a
    // run of ours and failed: a peer's folder has no evaluations.jsonl).
    let merged = common::bin()
        .current_dir(root())
        .args(["bench", "--quiet", "--merge", "--config"])
        .arg(&installed)
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(common::default_model())
        .output()
        .unwrap();
    assert_ok(&merged);
    assert_eq!(calls(dir.path()), 1);
    assert_eq!(row(&out), r);
    let run = out.join("runs/capo/sst2/seed3");
    std::fs::remove_file(run.join("peer-result.json")).unwrap();
    let again = bench(&installed, &out);
    assert_ok(&again);
    assert_eq!(calls(dir.path()), 2);
    let timeless = |r: Vec<(String, String)>| -> Vec<(String, String)> {
        r.into_iter().filter(|(k, _)| k != "seconds").collect()
    };
    assert_eq!(timeless(row(&out)), timeless(r));
}

#[test]
fn a_peer_that_crashes_gives_a_failed_row_quoting_it_and_is_not_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let driver = fake_driver(dir.path(), true);
    let tools = stand_in_tools(dir.path(), &driver);
    let c = config(dir.path(), "gepa", &tools);
    let first = bench(&c, &out);
    assert_ok(&first);
    assert!(
        stderr(&first).contains("PEER GEPA FAILED"),
        "{}",
        stderr(&first)
    );
    let r = row(&out);
    assert_eq!(field(&r, "status"), "failed");
    assert!(
        field(&r, "note").contains("boom on an empty batch"),
        "{r:?}"
    );
    assert_eq!(field(&r, "best_test"), "");
    // The initial prompt is still scored, so the row sits beside the others.
    assert!(field(&r, "initial_test").parse::<f64>().unwrap() > 0.0);
    assert_ok(&bench(&c, &out));
    assert_eq!(calls(dir.path()), 1);
}

/// Runs of other arms that finished before an invocation count in its tables from its first
/// write: after `--arms random`, a `--arms capo` invocation's bench.md shows both random runs
/// as soon as its first peer run has finished (the stand-in driver keeps a copy of bench.md as
/// each peer run starts).
#[test]
fn runs_finished_before_an_invocation_count_in_its_tables_from_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let driver = fake_driver(dir.path(), false);
    let mut script = std::fs::read_to_string(&driver).unwrap();
    script.push_str(
        "import shutil\nroot = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(job['out']))))\n\
         md = os.path.join(root, 'bench.md')\n\
         if os.path.exists(md): shutil.copy(md, os.path.join(os.path.dirname(sys.argv[0]), 'bench-seed%d.md' % job['seed']))\n",
    );
    std::fs::write(&driver, script).unwrap();
    let tools = stand_in_tools(dir.path(), &driver);
    let text = format!(
        r#"name = "mixed"
tasks = ["{}"]
seeds = [3, 4]
dev_limit = {DEV}
test_limit = {TEST}
max_initial_prompts = 2

[search]
population = 3
elite = 1
max_evals = {BUDGET}

[peers]
{tools}

[[arm]]
name = "capo"
kind = "peer"
peer = "capo"

[[arm]]
name = "random"
[arm.search]
strategy = "random"
"#,
        root().join("experiments/tasks/sst2.toml").display(),
    );
    let c = dir.path().join("mixed.toml");
    std::fs::write(&c, text).unwrap();
    let with_arms = |arms: &str| common::bench_with(&c, &out, &["--arms", arms]);
    assert_ok(&with_arms("random"));
    std::fs::remove_file(out.join("bench.md")).unwrap();
    assert_ok(&with_arms("capo"));
    assert_eq!(calls(dir.path()), 2);
    // In run order (seed 3: capo, random; seed 4: capo, random), seed 4's peer started after
    // one run of this invocation had finished: that one and both random runs were counted.
    let md = std::fs::read_to_string(dir.path().join("bench-seed4.md")).unwrap();
    assert!(
        md.contains("**In progress: 3 of 4 runs have finished.**"),
        "{md}"
    );
    assert!(md.contains("| random | random | 2 |"), "{md}");
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(
        md.contains("4 of 4 runs finished") && !md.contains("In progress"),
        "{md}"
    );
}

/// A real peer (gepa 0.1.4 through a llama.cpp server on the default model), tiny: run
/// `experiments/peers/install.sh` first. 117 s here, twice that with the rerun.
#[test]
#[ignore]
fn a_real_peer_runs_and_its_answer_is_scored() {
    let python = root().join("target/peers-venv/bin/python");
    assert!(
        python.is_file(),
        "run experiments/peers/install.sh first ({} is missing)",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let c = config(dir.path(), "gepa", "");
    let run = bench(&c, &out);
    assert_ok(&run);
    let r = row(&out);
    assert_eq!(field(&r, "status"), "ok", "{r:?}");
    assert!(field(&r, "best_test").parse::<f64>().unwrap() > 0.0);
    assert!(field(&r, "cpu_seconds").parse::<f64>().unwrap() > 0.0);
    let evals = field(&r, "evals_used").parse::<u64>().unwrap();
    assert!(evals > 0);
    // An interrupted attempt leaves gepa's saved state (and no result): the rerun starts
    // afresh, as the first attempt did, instead of resuming a state whose cost it never saw.
    let folder = out.join("runs/gepa/sst2/seed3");
    assert!(folder.join("gepa/gepa_state.bin").is_file());
    std::fs::remove_file(folder.join("peer-result.json")).unwrap();
    assert_ok(&bench(&c, &out));
    let again = row(&out);
    assert_eq!(field(&again, "status"), "ok", "{again:?}");
    assert_eq!(field(&again, "evals_used").parse::<u64>().unwrap(), evals);
}
