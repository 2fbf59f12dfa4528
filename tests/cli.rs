//! The `promptevo` binary end to end: bad input gets one clear line and exit code 2 (never a
//! panic), and `optimize`/`eval` run on the real default model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_bad_input, bin, default_model, root, small_optimize};

use promptevo::model::tiny::{write_tiny_llama, TinyConfig};

fn write_task(dir: &Path, template: &str, labels: &str, data: &str) -> PathBuf {
    std::fs::write(dir.join("data.jsonl"), data).unwrap();
    let p = dir.join("task.toml");
    std::fs::write(
        &p,
        format!("name = \"t\"\nkind = \"classification\"\ntemplate = \"{template}\"\nlabels = {labels}\ninitial_prompts = [\"Is it positive?\"]\n[data]\ndev = \"data.jsonl\"\ntest = \"data.jsonl\"\n"),
    )
    .unwrap();
    p
}

const GOOD_DATA: &str = "{\"input\": \"great\", \"target\": \"positive\"}\n{\"input\": \"awful\", \"target\": \"negative\"}\n";

#[test]
fn missing_task_file_is_one_clear_line() {
    let out = bin()
        .args(["eval", "--task", "/nonexistent/task.toml"])
        .output()
        .unwrap();
    assert_bad_input(&out, &["/nonexistent/task.toml", "check the path"]);
}

#[test]
fn malformed_jsonl_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let task = write_task(
        dir.path(),
        "{prompt} {input} A:",
        "[\"negative\", \"positive\"]",
        "{\"input\": \"ok\", \"target\": \"positive\"}\n{\"input\": oops}\n",
    );
    let out = bin().args(["eval", "--task"]).arg(&task).output().unwrap();
    assert_bad_input(&out, &["data.jsonl:2", "malformed JSONL"]);
}

#[test]
fn template_without_input_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let task = write_task(
        dir.path(),
        "{prompt} A:",
        "[\"negative\", \"positive\"]",
        GOOD_DATA,
    );
    let out = bin().args(["eval", "--task"]).arg(&task).output().unwrap();
    assert_bad_input(&out, &["task.toml", "{input}"]);
}

#[test]
fn empty_label_list_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let task = write_task(dir.path(), "{prompt} {input} A:", "[]", GOOD_DATA);
    let out = bin().args(["eval", "--task"]).arg(&task).output().unwrap();
    assert_bad_input(&out, &["task.toml", "labels"]);
}

#[test]
fn unknown_architecture_and_truncated_gguf_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let task = write_task(
        dir.path(),
        "{prompt} {input} A:",
        "[\"negative\", \"positive\"]",
        GOOD_DATA,
    );
    let alien = dir.path().join("alien.gguf");
    write_tiny_llama(
        &alien,
        &TinyConfig {
            architecture: "gpt9".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let out = bin()
        .args(["eval", "--task"])
        .arg(&task)
        .arg("--model")
        .arg(&alien)
        .output()
        .unwrap();
    assert_bad_input(
        &out,
        &["alien.gguf", "unsupported model architecture 'gpt9'"],
    );

    let cut = dir.path().join("cut.gguf");
    write_tiny_llama(&cut, &TinyConfig::default()).unwrap();
    let bytes = std::fs::read(&cut).unwrap();
    for keep in [bytes.len() - 100, bytes.len() / 2, 64] {
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let out = bin()
            .args(["eval", "--task"])
            .arg(&task)
            .arg("--model")
            .arg(&cut)
            .output()
            .unwrap();
        assert_bad_input(&out, &["cut.gguf", "download it again"]);
    }
}

#[test]
fn missing_model_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let task = write_task(
        dir.path(),
        "{prompt} {input} A:",
        "[\"negative\", \"positive\"]",
        GOOD_DATA,
    );
    let out = bin()
        .args(["eval", "--task"])
        .arg(&task)
        .args(["--model", "/nowhere/SmolLM2-135M-Instruct.Q4_1.gguf"])
        .output()
        .unwrap();
    assert_bad_input(&out, &["fetch-default.sh"]);
}

#[test]
fn invalid_flags_are_rejected_before_any_work() {
    let out = bin()
        .args(["optimize", "--task"])
        .arg(root().join("experiments/tasks/sst2.toml"))
        .args([
            "--population",
            "1",
            "--out",
            "/nonexistent-should-not-be-created",
        ])
        .output()
        .unwrap();
    assert_bad_input(&out, &["--population"]);
    assert!(!Path::new("/nonexistent-should-not-be-created").exists());
}

#[test]
fn eval_json_on_the_real_model() {
    let out = bin()
        .current_dir(root())
        .args([
            "eval",
            "--task",
            "experiments/tasks/sst2.toml",
            "--split",
            "test",
            "--limit",
            "24",
            "--json",
            "--model",
        ])
        .arg(default_model())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["accuracy", "macro_f1", "n", "split", "model", "seconds"] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["n"], 24);
    assert_eq!(v["split"], "test");
    // The real model must do clearly better than chance on SST-2 with the task's prompt.
    assert!(v["accuracy"].as_f64().unwrap() >= 0.6, "{v}");
}

#[test]
fn eval_json_of_a_generation_task_prints_its_outputs() {
    let out = bin()
        .current_dir(root())
        .args([
            "eval",
            "--task",
            "experiments/tasks/antonyms.toml",
            "--split",
            "test",
            "--limit",
            "5",
            "--json",
            "--model",
        ])
        .arg(default_model())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["metric"], "exact");
    assert_eq!(v["outputs"].as_array().map(Vec::len), Some(5), "{v}");
    assert!(v["majority_rate"].is_null(), "{v}");
    let score = v["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{v}");
}

#[test]
fn generation_task_with_labels_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.jsonl"), GOOD_DATA).unwrap();
    let task = dir.path().join("task.toml");
    std::fs::write(
        &task,
        "name = \"g\"\nkind = \"generation\"\ntemplate = \"{prompt} {input}\"\nlabels = [\"a\"]\ninitial_prompts = [\"Answer.\"]\n[data]\ndev = \"data.jsonl\"\ntest = \"data.jsonl\"\n",
    )
    .unwrap();
    let out = bin().args(["eval", "--task"]).arg(&task).output().unwrap();
    assert_bad_input(&out, &["task.toml", "`labels`", "remove it"]);
}

fn optimize(out_dir: &Path, seed: u64) -> Output {
    small_optimize(out_dir, 12, 16, seed).output().unwrap()
}

#[test]
fn optimize_end_to_end_on_the_real_model_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let out = optimize(&a, 5);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "config.json",
        "evaluations.jsonl",
        "best.txt",
        "report.md",
        "report.html",
        "result.json",
        "checkpoint.json",
    ] {
        assert!(a.join(f).is_file(), "missing {f}");
    }
    let log = std::fs::read_to_string(a.join("evaluations.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 17 initial prompts, then 2 generations of children.
    assert!(records.len() > 17, "only {} candidates", records.len());
    for r in &records {
        for key in [
            "id", "parents", "operator", "prompt", "score", "results", "seconds",
        ] {
            assert!(r.get(key).is_some(), "record lacks {key}: {r}");
        }
    }
    let children: Vec<_> = records
        .iter()
        .filter(|r| r["operator"] != "initial")
        .collect();
    assert!(
        !children.is_empty()
            && children
                .iter()
                .all(|r| !r["parents"].as_array().unwrap().is_empty())
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("result.json")).unwrap()).unwrap();
    assert!(result["best"]["dev_accuracy"].as_f64() >= result["initial"]["dev_accuracy"].as_f64());
    let report = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(
        report.contains("Best prompt") && report.contains("test acc"),
        "{report}"
    );
    assert_eq!(
        std::fs::read_to_string(a.join("best.txt")).unwrap().trim(),
        result["best"]["prompt"].as_str().unwrap()
    );

    assert!(
        report.contains("How the best prompt was born")
            && report.contains("## Operators")
            && report.contains("95% paired bootstrap"),
        "{report}"
    );
    for svg in ["generations.svg", "progress.svg", "operators.svg"] {
        let text = std::fs::read_to_string(a.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("polyline") || text.contains("<rect"),
            "{svg} is not a plot"
        );
    }

    let html = std::fs::read_to_string(a.join("report.html")).unwrap();
    assert!(
        html.contains("<table>") && html.matches("<svg").count() == 3 && !html.contains("<img"),
        "report.html is not self-contained"
    );
    let show = bin().arg("show").arg(&a).output().unwrap();
    assert!(show.status.success());
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        shown.contains("best") && shown.contains(result["best"]["prompt"].as_str().unwrap()),
        "{shown}"
    );

    // Its reader gone (`promptevo show RUN | head -1`): a quiet exit, not a panic.
    let mut cut = bin()
        .arg("show")
        .arg(&a)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(cut.stdout.take());
    let cut = cut.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&cut.stderr);
    assert!(
        cut.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );

    // `report` rebuilds the report from the run folder alone, identically.
    std::fs::remove_file(a.join("report.md")).unwrap();
    std::fs::remove_file(a.join("progress.svg")).unwrap();
    let rebuilt = bin().arg("report").arg(&a).output().unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(a.join("report.md")).unwrap(),
        report
    );
    assert!(a.join("progress.svg").is_file());

    // Same seed, same run: identical candidates and scores.
    let out = optimize(&b, 5);
    assert!(out.status.success());
    let strip = |p: &Path| -> Vec<(String, String)> {
        std::fs::read_to_string(p.join("evaluations.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["prompt"].to_string(), v["score"].to_string())
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));

    // The folder of a finished run is never overwritten.
    let again = optimize(&a, 5);
    assert_bad_input(&again, &["already holds a run"]);
}

#[test]
fn unavailable_devices_and_models_that_cannot_chat_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let task = write_task(
        dir.path(),
        "{prompt} {input} A:",
        "[\"negative\", \"positive\"]",
        GOOD_DATA,
    );
    let tiny = dir.path().join("tiny.gguf");
    write_tiny_llama(&tiny, &TinyConfig::default()).unwrap();
    for (device, needle) in [("tpu", "unknown device"), ("cuda:x", "cuda:N")] {
        let out = bin()
            .args(["eval", "--task"])
            .arg(&task)
            .args(["--device", device, "--model"])
            .arg(&tiny)
            .output()
            .unwrap();
        assert_bad_input(&out, &[device, needle]);
    }
    if !cfg!(feature = "cuda") {
        let out = bin()
            .args(["eval", "--task"])
            .arg(&task)
            .args(["--device", "cuda", "--model"])
            .arg(&tiny)
            .output()
            .unwrap();
        assert_bad_input(&out, &["--features cuda"]);
    }
    // The tiny model has no chat template, so operators that ask it for text cannot run.
    let out = bin()
        .args(["optimize", "--quiet", "--strategy", "de", "--task"])
        .arg(&task)
        .arg("--model")
        .arg(&tiny)
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert_bad_input(&out, &["tiny.gguf", "cannot chat", "--mutator-model"]);
}

#[test]
fn the_default_strategy_with_a_model_that_cannot_chat_warns_and_searches_the_demonstrations() {
    // The default (fewshot-gepa) reflects in its second half; the tiny model has no chat
    // template, so it says so once and stays with fewshot's moves for the whole run.
    let dir = tempfile::tempdir().unwrap();
    let task = write_task(
        dir.path(),
        "{prompt} {input} A:",
        "[\"negative\", \"positive\"]",
        GOOD_DATA,
    );
    let text = std::fs::read_to_string(&task).unwrap();
    std::fs::write(
        &task,
        text.replace("[data]\n", "[data]\ntrain = \"data.jsonl\"\n"),
    )
    .unwrap();
    let tiny = dir.path().join("tiny.gguf");
    write_tiny_llama(&tiny, &TinyConfig::default()).unwrap();
    let run = dir.path().join("run");
    let out = bin()
        .args([
            "optimize",
            "--quiet",
            "--population",
            "3",
            "--generations",
            "4",
        ])
        .args(["--validation-limit", "0", "--task"])
        .arg(&task)
        .arg("--model")
        .arg(&tiny)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    for needle in [
        "tiny.gguf",
        "cannot chat",
        "fewshot-gepa",
        "--mutator-model",
    ] {
        assert!(warnings[0].contains(needle), "{needle}: {stderr}");
    }
    let log = std::fs::read_to_string(run.join("evaluations.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.iter().all(|r| r["operator"] != "gepa-reflect"));
    // Children past the half of the generations, where it would have started reflecting.
    assert!(
        records
            .iter()
            .any(|r| r["generation"].as_u64().unwrap() > 2),
        "{log}"
    );
    // A benchmark of the default with two seeds says it once, not once per run.
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"nochat\"\ntasks = [\"{}\"]\nseeds = [0, 1]\ndev_limit = 2\ntest_limit = 2\n\
             max_initial_prompts = 2\npool = \"{}\"\n\n[search]\npopulation = 3\n\
             generations = 1000\nmax_evals = 24\n\n[[arm]]\nname = \"default\"\n\
             [arm.search]\nstrategy = \"fewshot-gepa\"\n",
            task.display(),
            root().join("experiments/pools/phrases.toml").display()
        ),
    )
    .unwrap();
    let out = bin()
        .args(["bench", "--quiet", "--config"])
        .arg(&config)
        .arg("--model")
        .arg(&tiny)
        .arg("--out")
        .arg(dir.path().join("bench"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        dir.path().join("bench/runs/default/t/seed1").is_dir(),
        "{stderr}"
    );
    let warnings = stderr.lines().filter(|l| l.starts_with("warning:")).count();
    assert_eq!(warnings, 1, "{stderr}");
}

#[test]
fn a_separate_mutator_model_writes_the_mutations() {
    // Scores with a tiny random model (which cannot chat) and mutates with the real instruct
    // model: model-driven operators work only because --mutator-model is used for them.
    let dir = tempfile::tempdir().unwrap();
    let task = write_task(
        dir.path(),
        "{prompt} {input} A:",
        "[\"negative\", \"positive\"]",
        GOOD_DATA,
    );
    let tiny = dir.path().join("tiny.gguf");
    write_tiny_llama(&tiny, &TinyConfig::default()).unwrap();
    let out_dir = dir.path().join("run");
    let out = bin()
        .args([
            "optimize",
            "--quiet",
            "--strategy",
            "promptbreeder",
            "--population",
            "2",
        ])
        .args(["--elite", "1", "--generations", "2", "--task"])
        .arg(&task)
        .arg("--model")
        .arg(&tiny)
        .arg("--mutator-model")
        .arg(common::default_model())
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap())
            .unwrap();
    assert!(config["mutator_model"]
        .as_str()
        .unwrap()
        .ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(config["model"].as_str().unwrap().ends_with("tiny.gguf"));
    let log = std::fs::read_to_string(out_dir.join("evaluations.jsonl")).unwrap();
    assert!(log.contains("\"operator\":\"pb-"), "{log}");
}

#[test]
fn balanced_fitness_weighs_examples_by_class_share_and_reports_balance_and_length() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = small_optimize(&out, 12, 12, 0)
        .args(["--fitness", "balanced", "--max-initial-prompts", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let task = promptevo::task::Task::load(&root().join("experiments/tasks/sst2.toml")).unwrap();
    let gold = task.gold(promptevo::task::Split::Dev);
    let weights = promptevo::task::metrics::class_weights(&gold[..12], task.labels().len());
    assert!(
        weights[0] != weights[1],
        "the first 12 dev examples are not balanced: {weights:?}"
    );
    let log = std::fs::read_to_string(out.join("evaluations.jsonl")).unwrap();
    let mut checked = 0;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["pool"] != "dev" {
            continue;
        }
        for r in v["results"].as_array().unwrap() {
            let e = r["example"].as_u64().unwrap() as usize;
            let want = r["metric"].as_f64().unwrap() * weights[gold[e]];
            assert!((r["fitness"].as_f64().unwrap() - want).abs() < 1e-9, "{r}");
            checked += 1;
        }
    }
    assert!(checked >= 24, "{checked}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "## Class balance",
        "balanced accuracy",
        "## Prompt length",
        "Test balanced accuracy",
    ] {
        assert!(
            report.contains(needle),
            "report lacks {needle:?}:\n{report}"
        );
    }
    assert!(out.join("best-short.txt").is_file());
}
