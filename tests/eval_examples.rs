//! `promptevo eval --json --per-example` on the real default model: one entry per example in
//! split order, whose predictions are the argmax of the log-probs shown (the calibrated ones
//! when calibrating) and whose mean correctness is the reported accuracy; generation tasks list
//! each output and its metric; without --json the flag is one line naming --json, exit 2.

mod common;

use std::process::Output;

use common::{eval, root};
use promptevo::task::{Split, Task};

/// SST-2 test examples scored (a few: enough for both labels to be predicted and gold).
const SST2_N: usize = 12;

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Index of the largest value (the first on ties, as the scorer breaks them).
fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best
}

/// Checks the per-example entries of a classification eval against the task's test split and
/// returns each entry's label log-probs.
fn check_classification(v: &serde_json::Value, task: &Task, calibrated: bool) -> Vec<Vec<f64>> {
    let labels: Vec<&str> = v["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(labels, task.labels(), "{v}");
    let examples = v["examples"].as_array().unwrap();
    assert_eq!(examples.len(), SST2_N, "{v}");
    assert_eq!(v["n"], SST2_N);
    assert_eq!(v["calibrated"], calibrated);
    let split = task.examples(Split::Test);
    let mut correct = 0;
    let mut all = Vec::new();
    for (i, e) in examples.iter().enumerate() {
        // Split order: entry i is the split's example i.
        assert_eq!(e["index"], i, "{e}");
        assert_eq!(e["target"], split[i].target.as_str(), "{e}");
        let lp = floats(&e["label_logprobs"]);
        assert_eq!(lp.len(), labels.len(), "{e}");
        assert!(lp.iter().all(|x| x.is_finite() && *x <= 0.0), "{e}");
        let decided_by = if calibrated {
            let c = floats(&e["calibrated_logprobs"]);
            assert_eq!(c.len(), labels.len(), "{e}");
            c
        } else {
            assert!(e.get("calibrated_logprobs").is_none(), "{e}");
            lp.clone()
        };
        let predicted = e["predicted"].as_str().unwrap();
        assert_eq!(predicted, labels[argmax(&decided_by)], "{e}");
        correct += usize::from(predicted == e["target"].as_str().unwrap());
        all.push(lp);
    }
    let accuracy = v["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - correct as f64 / SST2_N as f64).abs() < 1e-12,
        "accuracy {accuracy} vs {correct}/{SST2_N} correct"
    );
    all
}

#[test]
fn sst2_per_example_predictions_are_the_argmax_of_the_logprobs_shown_in_split_order() {
    let path = root().join("experiments/tasks/sst2.toml");
    let task = Task::load(&path).unwrap();
    let plain = json_of(&eval(&path, SST2_N, &["--json", "--per-example"]));
    let raw = check_classification(&plain, &task, false);
    // Both labels occur among the predictions or the gold answers, so a constant answer or
    // a fixed label order could not pass.
    let targets: Vec<&str> = plain["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert!(
        task.labels().iter().all(|l| targets.contains(&l.as_str())),
        "{targets:?}"
    );

    // Calibrated: `predicted` follows the calibrated scores, the log-probs shown stay the raw
    // ones (the same as without calibration).
    let cal = json_of(&eval(
        &path,
        SST2_N,
        &["--json", "--per-example", "--calibrate"],
    ));
    let raw_again = check_classification(&cal, &task, true);
    assert_eq!(raw_again, raw);
    // Calibration changes at least one decision on these examples, so predictions taken from
    // the raw log-probs would fail the check above.
    let changed = cal["examples"]
        .as_array()
        .unwrap()
        .iter()
        .zip(plain["examples"].as_array().unwrap())
        .filter(|(c, p)| c["predicted"] != p["predicted"])
        .count();
    assert!(changed > 0, "calibration changed no prediction: {cal}");

    // Without --per-example the JSON has no examples.
    let bare = json_of(&eval(&path, 2, &["--json"]));
    assert!(bare.get("examples").is_none(), "{bare}");
}

#[test]
fn generation_per_example_lists_each_output_its_score_and_fitness() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("words.jsonl");
    std::fs::write(
        &data,
        concat!(
            "{\"input\": \"hot\", \"target\": \"cold\", \"targets\": [\"cold\", \"cool\"]}\n",
            "{\"input\": \"up\", \"target\": \"down\"}\n",
            "{\"input\": \"early\", \"target\": \"late\"}\n",
        ),
    )
    .unwrap();
    let task = dir.path().join("tiny.toml");
    std::fs::write(
        &task,
        r#"name = "tiny-antonyms"
kind = "generation"
template = "{prompt}\n\nInput: {input}\nOutput:"
metric = "exact"
max_new_tokens = 8
initial_prompts = ["Write a word that means the opposite of the input word."]
[data]
train = "words.jsonl"
dev = "words.jsonl"
test = "words.jsonl"
"#,
    )
    .unwrap();
    let metric = Task::load(&task)
        .unwrap()
        .generation()
        .unwrap()
        .metric
        .clone();
    let v = json_of(&eval(&task, 3, &["--json", "--per-example"]));
    assert!(v.get("labels").is_none(), "{v}");
    let examples = v["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 3, "{v}");
    let outputs = v["outputs"].as_array().unwrap();
    let mut total = 0.0;
    for (i, (e, want)) in examples.iter().zip(["cold", "down", "late"]).enumerate() {
        assert_eq!(e["index"], i, "{e}");
        assert_eq!(e["target"], want, "{e}");
        assert_eq!(e["output"], outputs[i], "{e}");
        assert!(
            e.get("label_logprobs").is_none() && e.get("predicted").is_none(),
            "{e}"
        );
        let score = e["score"].as_f64().unwrap();
        // The score is the task's metric of this entry's output against its accepted answers.
        let targets: Vec<String> = e["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        let want = metric
            .score_one(e["output"].as_str().unwrap(), &targets)
            .unwrap();
        assert_eq!(score, want.score, "{e}");
        assert_eq!(e["fitness"].as_f64().unwrap(), want.fitness, "{e}");
        total += score;
    }
    assert_eq!(examples[0]["targets"], serde_json::json!(["cold", "cool"]));
    assert_eq!(examples[1]["targets"], serde_json::json!(["down"]));
    let mean = v["accuracy"].as_f64().unwrap();
    assert!((mean - total / 3.0).abs() < 1e-12, "{v}");
}

#[test]
fn per_example_without_json_is_one_line_naming_json() {
    let out = eval(
        &root().join("experiments/tasks/sst2.toml"),
        2,
        &["--per-example"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--per-example") && stderr.contains("--json"),
        "{stderr}"
    );
    // Rejected before the model is loaded.
    assert!(!stderr.contains("loaded"), "{stderr}");
    assert!(out.stdout.is_empty());
}
