//! Every strategy end to end on the real default model through `promptevo optimize`, at a tiny
//! budget: it runs, stays within the budget, uses its own operators, and writes its report.

mod common;

use std::path::Path;

use common::{bin, default_model, root};

fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("evaluations.jsonl"))
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn optimize(out: &Path, task: &str, strategy: &str, extra: &[&str]) -> std::process::Output {
    bin()
        .current_dir(root())
        .args(["optimize", "--task", task, "--strategy", strategy])
        .args([
            "--max-initial-prompts",
            "2",
            "--dev-limit",
            "6",
            "--test-limit",
            "6",
            "--validation-limit",
            "6",
        ])
        .args([
            "--population",
            "3",
            "--elite",
            "1",
            "--generations",
            "100",
            "--max-evals",
            "60",
        ])
        .args(["--seed", "1", "--quiet", "--temperature", "0.8"])
        .args(extra)
        .arg("--model")
        .arg(default_model())
        .arg("--out")
        .arg(out)
        .output()
        .expect("runs")
}

#[test]
fn every_strategy_runs_within_budget_with_its_own_operators() {
    let tmp = tempfile::tempdir().unwrap();
    for strategy in promptevo::evolve::STRATEGY_NAMES {
        let out = tmp.path().join(strategy);
        let o = optimize(&out, "experiments/tasks/sst2.toml", strategy, &[]);
        assert!(
            o.status.success(),
            "{strategy}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let recs = records(&out);
        assert!(recs.len() >= 3, "{strategy}: {} records", recs.len());
        let used: Vec<u64> = recs
            .iter()
            .map(|r| r["evals_used"].as_u64().unwrap())
            .collect();
        assert!(used.windows(2).all(|w| w[0] <= w[1]));
        assert!(*used.last().unwrap() <= 60, "{strategy}: {used:?}");
        for r in recs
            .iter()
            .filter(|r| r["generation"].as_u64().unwrap() > 0)
        {
            let op = r["operator"].as_str().unwrap();
            let parents = r["parents"].as_array().unwrap().len();
            match strategy {
                "de" => assert!(op == "evo-de" && parents == 3, "{op}"),
                "promptbreeder" => assert!(op.starts_with("pb-") && parents == 1, "{op}"),
                "hillclimb" => assert_eq!(parents, 1, "{op}"),
                "gepa" => assert!(
                    (op == "gepa-reflect" && parents == 1) || (op == "gepa-merge" && parents == 2),
                    "{op}"
                ),
                "opro" => assert!(op == "opro" && parents == 1, "{op}"),
                _ => assert!(!op.starts_with("pb-") && op != "evo-de", "{op}"),
            }
        }
        let report = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            report.contains(&format!("strategy: {strategy}")),
            "{report}"
        );
        assert!(report.contains("stopped because"), "{report}");
        // Only the adaptive strategy shares its children between move families.
        assert_eq!(
            report.contains("## Move families"),
            strategy == "adaptive",
            "{strategy}"
        );
    }
}

#[test]
fn model_driven_search_is_reproducible_from_its_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for out in [&a, &b] {
        let o = optimize(out, "experiments/tasks/sst2.toml", "promptbreeder", &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let prompts = |d: &Path| -> Vec<String> {
        records(d)
            .iter()
            .map(|r| r["prompt"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(prompts(&a), prompts(&b));
    assert!(prompts(&a).len() > 2, "some mutants were made");
}

#[test]
fn racing_scores_weak_candidates_on_part_of_dev_and_reports_the_saving() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("race");
    let o = bin()
        .current_dir(root())
        .args([
            "optimize",
            "--task",
            "experiments/tasks/sst2.toml",
            // Racing is the GA's: the default's reflection stage probes train, whose charges
            // would hide the saving in the report's budget line.
            "--strategy",
            "fewshot",
            "--racing",
            "--screen",
            "0",
            "--validation-limit",
            "8",
        ])
        .args([
            "--max-initial-prompts",
            "3",
            "--dev-limit",
            "16",
            "--test-limit",
            "8",
        ])
        .args([
            "--population",
            "6",
            "--elite",
            "1",
            "--generations",
            "3",
            "--seed",
            "2",
            "--quiet",
        ])
        .arg("--model")
        .arg(default_model())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs = records(&out);
    // Dev records only: the final choice may grow validation past --validation-limit.
    let sizes: Vec<u64> = recs
        .iter()
        .filter(|r| r["pool"] == "dev")
        .map(|r| r["n"].as_u64().unwrap())
        .collect();
    assert!(sizes.iter().all(|n| [4, 8, 16].contains(n)), "{sizes:?}");
    assert!(sizes.contains(&4), "some candidates were raced: {sizes:?}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("fewer than"), "{report}");
}

#[test]
fn a_generation_task_is_optimised_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("antonyms");
    let o = optimize(&out, "experiments/tasks/antonyms.toml", "ga", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs = records(&out);
    assert!(recs
        .iter()
        .all(|r| (0.0..=1.0).contains(&r["score"].as_f64().unwrap())));
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    // Children were bred from logged parents and scored on generated answers, not just the
    // initial prompts.
    let children: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["generation"].as_u64().unwrap() > 0)
        .collect();
    assert!(!children.is_empty(), "no child was scored");
    for c in &children {
        for p in c["parents"].as_array().unwrap() {
            assert!(recs.iter().any(|r| r["id"] == *p), "unlogged parent {p}");
        }
        assert!(c["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| !x["predicted"].as_str().unwrap().trim().is_empty()));
    }
    // The answer is a logged candidate: its prompt and dev accuracy are the log's, on the full
    // dev set.
    let id = result["best"]["id"].as_u64().unwrap();
    let dev_n = recs
        .iter()
        .filter(|r| r["pool"] == "dev")
        .map(|r| r["n"].as_u64().unwrap())
        .max()
        .unwrap();
    let logged = recs
        .iter()
        .find(|r| r["id"] == id && r["pool"] == "dev" && r["n"] == dev_n)
        .expect("the answer's full dev evaluation is logged");
    assert_eq!(logged["prompt"], result["best"]["prompt"]);
    assert_eq!(logged["accuracy"], result["best"]["dev_accuracy"]);
}

#[test]
fn bad_strategy_settings_are_one_line_errors() {
    for (args, needle) in [
        (&["--strategy", "annealing"][..], "annealing"),
        (
            &["--operators", "mutate=1"][..],
            "unknown operator `mutate`",
        ),
        (&["--operators", "swap"][..], "NAME=WEIGHT"),
        (&["--top-p", "0"][..], "--top-p"),
        (&["--max-evals", "0"][..], "--max-evals"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let o = bin()
            .current_dir(root())
            .args([
                "optimize",
                "--task",
                "experiments/tasks/sst2.toml",
                "--quiet",
            ])
            .args(args)
            .arg("--out")
            .arg(tmp.path().join("x"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !tmp.path().join("x").exists(),
            "no run folder for bad settings"
        );
    }
}
