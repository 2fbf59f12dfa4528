//! Task metrics end to end: bad `metric` settings and failing external scorers are one error
//! line with exit code 2 (never a panic, never a silent zero); `set` agrees with a literal port
//! of APE's `es` on handcrafted answers and on the real default model's answers to a list task;
//! a task scored by a committed `command` scorer runs through `promptevo eval`.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_bad_input, bin, default_model, eval, root};
use promptevo::task::Task;

const ANIMALS: &str = "{\"input\": \"whale, mouse\", \"target\": \"whale\"}\n{\"input\": \"ant, horse\", \"target\": \"horse\"}\n";

/// A generation task in `dir` over `data`, with `metric` (TOML placed before `[data]`).
fn write_task(dir: &Path, metric: &str, data: &str) -> PathBuf {
    std::fs::write(dir.join("data.jsonl"), data).unwrap();
    let p = dir.join("task.toml");
    std::fs::write(
        &p,
        format!("name = \"m\"\nkind = \"generation\"\ntemplate = \"{{prompt}}\\n\\nInput: {{input}}\\nOutput:\"\nmax_new_tokens = 4\ninitial_prompts = [\"Write the larger animal.\"]\n{metric}\n[data]\ndev = \"data.jsonl\"\ntest = \"data.jsonl\"\n"),
    )
    .unwrap();
    p
}

/// `eval` of `task` without a model: the task is rejected before one is needed.
fn eval_bad(task: &Path) -> Output {
    bin().args(["eval", "--task"]).arg(task).output().unwrap()
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bad_metric_settings_are_one_line_naming_the_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = eval_bad(&write_task(d, "metric = \"bleu\"", ANIMALS));
    assert_bad_input(
        &out,
        &[
            "task.toml",
            "bleu",
            "exact, contains, f1, set, number, regex, json, command",
        ],
    );
    let out = eval_bad(&write_task(
        d,
        "[metric]\nname = \"set\"\nseperator = \";\"",
        ANIMALS,
    ));
    assert_bad_input(&out, &["task.toml", "seperator", "separator"]);
    let out = eval_bad(&write_task(
        d,
        "[metric]\nname = \"regex\"\npattern = \"([a-z]\"",
        ANIMALS,
    ));
    assert_bad_input(
        &out,
        &["task.toml", "[metric] pattern", "not a valid regex"],
    );
    let out = eval_bad(&write_task(
        d,
        "[metric]\nname = \"number\"\ntolerance = \"big\"",
        ANIMALS,
    ));
    assert_bad_input(&out, &["task.toml", "[metric] tolerance", "number"]);
}

#[test]
fn a_json_target_that_is_not_json_names_the_data_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = "{\"input\": \"whale, mouse\", \"target\": \"{\\\"larger\\\": \\\"whale\\\"}\"}\n{\"input\": \"ant, horse\", \"target\": \"horse\"}\n";
    let task = write_task(
        dir.path(),
        "[metric]\nname = \"json\"\nfields = [\"larger\"]",
        data,
    );
    assert_bad_input(&eval_bad(&task), &["data.jsonl:2", "not JSON", "`metric`"]);
}

#[test]
fn a_missing_scorer_command_is_rejected_when_the_task_loads() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["[\"no-such-scorer-4711\"]", "[\"./missing-score.py\"]"] {
        let task = write_task(
            dir.path(),
            &format!("[metric]\nname = \"command\"\ncommand = {command}"),
            ANIMALS,
        );
        assert_bad_input(
            &eval_bad(&task),
            &["task.toml", "[metric] command", "not found"],
        );
    }
}

#[test]
fn a_failing_scorer_stops_eval_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (script, needle) in [
        (
            "cat >/dev/null; echo 'Traceback: boom' >&2; exit 1\n",
            "boom",
        ),
        ("cat >/dev/null; echo 1; echo junk\n", "\"junk\""),
        ("cat >/dev/null; echo 1\n", "wrote 1 scores for 2 answers"),
        ("cat >/dev/null; echo 1; echo 7\n", "not a number in [0, 1]"),
        ("sleep 20\n", "timed out after 1 s"),
    ] {
        std::fs::write(dir.path().join("score.sh"), script).unwrap();
        let task = write_task(
            dir.path(),
            "[metric]\nname = \"command\"\ncommand = [\"sh\", \"score.sh\"]\ntimeout_seconds = 1",
            ANIMALS,
        );
        let start = std::time::Instant::now();
        let out = eval(&task, 2, &[]);
        assert_bad_input(&out, &["scorer command `sh score.sh`", needle]);
        assert!(out.stdout.is_empty());
        assert!(start.elapsed().as_secs() < 60, "{script}");
    }
}

/// APE's `normalize_prediction` (experiments/evaluation/instruction_induction/utility.py,
/// keirp/automatic_prompt_engineer), ported line by line.
fn ape_normalize_prediction(prediction: &str) -> String {
    let prediction = prediction.replace(" and ", " ");
    let prediction = prediction.replace("Sentence 1:", " ");
    let prediction = prediction.replace("Sentence 2:", " ");
    let prediction = prediction.trim();
    let prediction = prediction.split('\n').next().unwrap();
    let prediction = prediction.split('.').next().unwrap();
    let prediction = prediction.to_lowercase();
    let prediction = prediction.replace('-', " ");
    // str.maketrans('', '', string.punctuation): string.punctuation is ASCII punctuation.
    prediction
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect()
}

/// APE's `get_exact_set_score`.
fn ape_exact_set_score(prediction: &str, ground_truth: &str) -> f64 {
    let p: HashSet<String> = ape_normalize_prediction(prediction)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let g: HashSet<String> = ape_normalize_prediction(ground_truth)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    f64::from(u8::from(p == g))
}

/// APE's `get_multi_answer_exact_set`.
fn ape_es(prediction: &str, answers: &[String]) -> f64 {
    for answer in answers {
        if ape_exact_set_score(prediction, answer) == 1.0 {
            return 1.0;
        }
    }
    0.0
}

#[test]
fn set_equals_apes_exact_set_on_handcrafted_and_real_model_answers() {
    let path = root().join("experiments/tasks/orthography_starts_with.toml");
    let task = Task::load(&path).unwrap();
    let metric = &task.generation().unwrap().metric;
    assert_eq!(metric.name(), "set");
    let t = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let handcrafted: [(&str, Vec<String>); 10] = [
        (" thinks that", t(&["thinks that"])),
        (" that thinks", t(&["thinks that"])),
        (" Thinks, that", t(&["thinks that"])),
        (" thinks and that", t(&["thinks that"])),
        (" thinks", t(&["thinks that"])),
        (" thinks that too", t(&["thinks that"])),
        (" well-known wine", t(&["known well wine"])),
        (" said she\nsaid", t(&["said she"])),
        (" ", t(&["but"])),
        (" but but", t(&["x", "but"])),
    ];
    let mut agreed = 0;
    for (output, targets) in &handcrafted {
        let ours = metric.score_one(output, targets).unwrap().score;
        assert_eq!(ours, ape_es(output, targets), "{output:?} vs {targets:?}");
        agreed += usize::from(ours == 1.0);
    }
    assert!(agreed >= 5, "the handcrafted cases must include matches");

    // The real model's answers to the list task, under two prompts.
    let mut n = 0;
    for prompt in [
        None,
        Some("Copy the words of the sentence that start with the letter in brackets, separated by spaces."),
    ] {
        let mut extra = vec!["--json", "--per-example"];
        if let Some(p) = prompt {
            extra.extend(["--prompt", p]);
        }
        let v = json_of(&eval(&path, 15, &extra));
        assert_eq!(v["metric"], "set", "{v}");
        for e in v["examples"].as_array().unwrap() {
            let output = e["output"].as_str().unwrap();
            let targets: Vec<String> = e["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            assert_eq!(
                e["score"].as_f64().unwrap(),
                ape_es(output, &targets),
                "{e}"
            );
            let fitness = e["fitness"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&fitness), "{e}");
            assert!(fitness >= e["score"].as_f64().unwrap(), "{e}");
            n += 1;
        }
    }
    assert_eq!(n, 30);
}

/// The rule of experiments/tasks/larger_animal_lenient.py, written again.
fn lenient(text: &str) -> String {
    let first = text.trim().split('\n').next().unwrap().to_lowercase();
    let mut t: String = first
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect::<String>()
        .trim()
        .to_string();
    for article in ["a ", "an ", "the "] {
        if let Some(rest) = t.strip_prefix(article) {
            t = rest.to_string();
        }
    }
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn a_task_with_a_committed_command_scorer_runs_through_eval() {
    let path = root().join("experiments/tasks/larger_animal_lenient.toml");
    let v = json_of(&eval(&path, 8, &["--json", "--per-example"]));
    assert_eq!(v["metric"], "command", "{v}");
    let examples = v["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 8);
    let mut total = 0.0;
    for e in examples {
        let output = e["output"].as_str().unwrap();
        let hit = e["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| lenient(t.as_str().unwrap()) == lenient(output));
        assert_eq!(
            e["score"].as_f64().unwrap(),
            f64::from(u8::from(hit)),
            "{e}"
        );
        assert_eq!(e["fitness"], e["score"], "{e}");
        total += e["score"].as_f64().unwrap();
    }
    assert!(
        (v["accuracy"].as_f64().unwrap() - total / 8.0).abs() < 1e-12,
        "{v}"
    );
    // Plain output names the metric.
    let out = eval(&path, 2, &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("command="));
}

/// A scorer that logs every input it is asked about to `seen.txt` and scores 1 when the
/// output contains the first target.
const COUNTING_SCORER: &str = r#"import json, sys
with open("seen.txt", "a") as seen:
    for line in sys.stdin:
        a = json.loads(line)
        seen.write(a["input"] + "\n")
        print(1 if a["targets"][0].lower() in a["output"].lower() else 0)
"#;

/// The inputs of the first `n` lines of a shipped larger_animal split.
fn inputs(split: &str, n: usize) -> HashSet<String> {
    std::fs::read_to_string(root().join(format!("experiments/data/larger_animal/{split}.jsonl")))
        .unwrap()
        .lines()
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["input"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_command_scorer_is_asked_once_per_prompt_and_example_and_not_again_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("count.py"), COUNTING_SCORER).unwrap();
    let data = root().join("experiments/data/larger_animal");
    let task = d.join("task.toml");
    std::fs::write(
        &task,
        format!(
            "name = \"counted\"\nkind = \"generation\"\ntemplate = \"{{prompt}}\\n\\nInput: {{input}}\\nOutput:\"\nmax_new_tokens = 6\ninitial_prompts = [\"Write the larger of the two given animals.\", \"Which animal is bigger?\"]\n[metric]\nname = \"command\"\ncommand = [\"python3\", \"count.py\"]\n[data]\ntrain = \"{0}/train.jsonl\"\ndev = \"{0}/dev.jsonl\"\ntest = \"{0}/test.jsonl\"\n",
            data.display()
        ),
    )
    .unwrap();
    let run = d.join("run");
    let optimize = bin()
        .current_dir(root())
        .args(["optimize", "--task"])
        .arg(&task)
        .args([
            "--population",
            "3",
            "--generations",
            "1",
            "--quiet",
            "--seed",
            "3",
        ])
        .args([
            "--dev-limit",
            "4",
            "--validation-limit",
            "3",
            "--test-limit",
            "3",
        ])
        .arg("--model")
        .arg(default_model())
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        optimize.status.success(),
        "{}",
        String::from_utf8_lossy(&optimize.stderr)
    );
    let seen = |path: &Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let dev = inputs("dev", 4);
    // Each logged (prompt, dev example) pair was put to the scorer exactly once.
    let log = std::fs::read_to_string(run.join("evaluations.jsonl")).unwrap();
    let mut pairs = HashSet::new();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["pool"] == "dev" {
            for r in v["results"].as_array().unwrap() {
                pairs.insert((v["prompt"].to_string(), r["example"].as_u64().unwrap()));
            }
        }
    }
    let first = seen(&d.join("seen.txt"));
    let dev_asked = first.iter().filter(|i| dev.contains(*i)).count();
    assert!(!pairs.is_empty());
    assert_eq!(dev_asked, pairs.len(), "{first:?}");
    let best = std::fs::read_to_string(run.join("best.txt")).unwrap();

    // Resuming the finished run replays the log: the scorer hears of no dev or validation
    // example again (only the report's test scoring, which is not logged, runs).
    std::fs::remove_file(d.join("seen.txt")).unwrap();
    let resume = bin()
        .current_dir(root())
        .args(["resume", "--quiet"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        resume.status.success(),
        "{}",
        String::from_utf8_lossy(&resume.stderr)
    );
    let again = seen(&d.join("seen.txt"));
    let test = inputs("test", 3);
    assert!(again.iter().all(|i| test.contains(i)), "{again:?}");
    assert_eq!(std::fs::read_to_string(run.join("best.txt")).unwrap(), best);
}
