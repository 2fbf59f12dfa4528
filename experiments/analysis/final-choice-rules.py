#!/usr/bin/env python3
"""The final choice before and after issue 24's item 3, over every finished run of a benchmark.

Before item 3 the answer was the finalist with the best score on the first validation examples,
when strictly above the best initial prompt's there, else that initial prompt. Since item 3 it is
the challenger only when a paired sign test against the best initial prompt says so (the run's
result.json `final_choice`). For every finished run of our arms (peer arms have no final choice)
this script finds the prompt the old rule would have picked from the same finalists and, where
it differs from the answer, scores it on the run's test examples with `promptevo eval` (cached in
BENCH_DIR/final-choice-rules.json, so a rerun scores only new runs). It prints how many answers
score below the task's first prompt on test under each rule.

Usage: experiments/analysis/final-choice-rules.py BENCH_DIR [--promptevo PATH]
"""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path


def old_rule_pick(final_choice):
    """The finalist the rule before item 3 picks: the best validation score (max keeps the
    earlier of equals; finalists are listed best initial first, then best on dev first), when
    strictly above the best initial prompt's; else the best initial prompt."""
    initial, *candidates = final_choice["finalists"]
    best = max(candidates, key=lambda f: f["validation_score"], default=None)
    if best is not None and best["validation_score"] > initial["validation_score"]:
        return best
    return initial


def test_accuracy(promptevo, task, prompt, limit):
    out = subprocess.run(
        [promptevo, "eval", "--task", task, "--prompt", prompt, "--split", "test",
         "--limit", str(limit), "--json"],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["accuracy"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench_dir", type=Path)
    ap.add_argument("--promptevo", default="target/release/promptevo")
    args = ap.parse_args()
    cache_path = args.bench_dir / "final-choice-rules.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    rows = list(csv.DictReader(open(args.bench_dir / "results.csv")))
    counts = {"runs": 0, "differ": 0, "below_new": 0, "below_old": 0}
    diffs = []
    for row in rows:
        if row["status"] != "ok" or row["strategy"].startswith("peer:"):
            continue
        run = args.bench_dir / "runs" / row["arm"] / row["task"] / f"seed{row['seed']}"
        result = json.loads((run / "result.json").read_text())
        config = json.loads((run / "config.json").read_text())
        choice = result.get("final_choice")
        if not choice:
            continue
        counts["runs"] += 1
        first = float(row["initial_test"])
        new = float(row["best_test"])
        pick = old_rule_pick(choice)
        if pick["id"] == choice["chosen"]:
            old = new
        else:
            key = f"{row['arm']}/{row['task']}/seed{row['seed']}"
            if key not in cache:
                cache[key] = {
                    "old_pick": pick["id"],
                    "test": test_accuracy(args.promptevo, config["task"], pick["prompt"],
                                          config["test_limit"]),
                }
                cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
                print(f"{key}: old rule picks #{pick['id']} (test {cache[key]['test']:.3f}), "
                      f"answer #{choice['chosen']} (test {new:.3f})", file=sys.stderr)
            old = cache[key]["test"]
            counts["differ"] += 1
            diffs.append(old - new)
        counts["below_new"] += new < first
        counts["below_old"] += old < first
    mean = 100 * sum(diffs) / len(diffs) if diffs else 0.0
    print(f"{counts['runs']} finished runs of our arms: the rule before item 3 picks another "
          f"prompt in {counts['differ']} (on test those average {mean:+.1f} points against the "
          f"answer); answers below the task's first prompt on test: {counts['below_old']} of "
          f"{counts['runs']} before item 3, {counts['below_new']} of {counts['runs']} after.")


if __name__ == "__main__":
    main()
