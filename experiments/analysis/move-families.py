"""What each move family's children did on dev, per task, pooled over every arm and seed of a
benchmark folder (our arms only): children, share that beat their parent (paired dev gain above
0 over the parent with the best full dev score, on the dev examples both were scored on, as
paired screening and the adaptive strategy's credit compare them), share that became the run's
new best on full dev, and the mean new-best improvement per child (points). Then, per task, the
answers (each run's chosen prompt) with and without demonstrations in their lineage: their mean
gain over the task's first prompt on test and on dev (points).

    python3 experiments/analysis/move-families.py experiments/results/2026-12-03-default
"""
import collections
import glob
import json
import sys

PEERS = {"capo", "gepa-peer"}
CROSSOVERS = {"gepa-merge", "one-point", "uniform", "sentence"}
FAMILIES = ["demos", "reflect", "edits", "crossover"]


def family(op):
    if op == "initial":
        return None
    if op.startswith("demo-"):
        return "demos"
    if op == "gepa-reflect":
        return "reflect"
    if op in CROSSOVERS:
        return "crossover"
    return "edits"


def children(path):
    """(family, paired gain, new-best improvement) of every child in one run's log."""
    results, order = {}, []
    for line in open(path):
        row = json.loads(line)
        if row.get("pool", "dev") != "dev":
            continue
        per_example = results.setdefault(row["id"], {})
        for r in row["results"]:
            per_example[r["example"]] = r["fitness"]
        if all(o["id"] != row["id"] for o in order):
            order.append(row)
    full = max(len(r) for r in results.values())
    mean = lambda d: sum(d.values()) / len(d)
    best = float("-inf")
    for row in order:
        mine = results[row["id"]]
        is_full = len(mine) == full
        fam = family(row["operator"])
        parents = [p for p in row["parents"] if p in results and len(results[p]) == full]
        if fam and parents:
            parent = results[max(parents, key=lambda p: mean(results[p]))]
            common = [e for e in mine if e in parent]
            gain = sum(mine[e] - parent[e] for e in common) / len(common)
            improvement = mean(mine) - best if is_full and mean(mine) > best else 0.0
            yield fam, gain, improvement
        if is_full:
            best = max(best, mean(mine))


def main(root):
    stats = collections.defaultdict(list)
    tasks = []
    for path in sorted(glob.glob(f"{root}/runs/*/*/seed*/evaluations.jsonl")):
        arm, task = path.split("/")[-4], path.split("/")[-3]
        if arm in PEERS:
            continue
        if task not in tasks:
            tasks.append(task)
        for fam, gain, improvement in children(path):
            stats[(task, fam)].append((gain, improvement))
    print("| task | family | children | beat parent | new best | new-best gain per child (pts) |")
    print("|---|---|---|---|---|---|")
    for task in tasks:
        for fam in FAMILIES:
            s = stats.get((task, fam))
            if not s:
                continue
            n = len(s)
            won = sum(g > 0 for g, _ in s) / n
            new = sum(i > 0 for _, i in s) / n
            per_child = 100 * sum(i for _, i in s) / n
            print(f"| {task} | {fam} | {n} | {100 * won:.1f}% | {100 * new:.1f}% | {per_child:.2f} |")

    print()
    print("| task | answers | with demonstrations | test gain | dev gain |")
    print("|---|---|---|---|---|")
    answers = collections.defaultdict(list)
    for path in sorted(glob.glob(f"{root}/runs/*/*/seed*/result.json")):
        arm, task = path.split("/")[-4], path.split("/")[-3]
        if arm in PEERS:
            continue
        r = json.load(open(path))
        demos = any(step.get("operator", "").startswith("demo-") for step in r["lineage"])
        test = r["best"]["test_accuracy"] - r["initial"]["test_accuracy"]
        dev = r["best"]["dev_accuracy"] - r["initial"]["dev_accuracy"]
        answers[(task, demos)].append((test, dev))
    for task in tasks:
        for demos in (True, False):
            a = answers.get((task, demos))
            if a:
                test = 100 * sum(t for t, _ in a) / len(a)
                dev = 100 * sum(d for _, d in a) / len(a)
                print(f"| {task} | {len(a)} | {'yes' if demos else 'no'} | {test:+.1f} | {dev:+.1f} |")


if __name__ == "__main__":
    main(sys.argv[1])
