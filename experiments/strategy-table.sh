#!/usr/bin/env bash
# Held-out test accuracy of the initial prompt and of each strategy's best prompt at the same
# budget, on SST-2 and the antonyms generation task (the table in issue 5's closing note).
# Usage: experiments/strategy-table.sh OUT_DIR [SEED]
set -euo pipefail
out=${1:?usage: experiments/strategy-table.sh OUT_DIR [SEED]}
seed=${2:-0}
mkdir -p "$out"
for task in sst2 antonyms; do
  for strategy in random ga hillclimb de promptbreeder; do
    dir="$out/$task-$strategy-s$seed"
    if [ -f "$dir/result.json" ]; then continue; fi
    rm -rf "$dir"
    start=$(date +%s)
    cargo run --release --quiet -- optimize --task "experiments/tasks/$task.toml" \
      --strategy "$strategy" --max-initial-prompts 4 --dev-limit 30 --test-limit 200 \
      --max-evals 600 --population 6 --elite 2 --generations 1000 --seed "$seed" \
      --out "$dir" --quiet >/dev/null
    echo "$task $strategy done in $(( $(date +%s) - start )) s" >&2
  done
done
python3 - "$out" <<'PY'
import json, sys, pathlib
rows = []
for d in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    r = d / "result.json"
    if not r.exists():
        continue
    j = json.loads(r.read_text())
    rows.append((j["task"], j["strategy"], j["initial"]["dev_accuracy"], j["initial"]["test_accuracy"],
                 j["best"]["dev_accuracy"], j["best"]["test_accuracy"], j["evals_used"], j["candidates"],
                 j["search_seconds"], j["best"]["prompt"]))
print("| task | strategy | initial dev | initial test | best dev | best test | change | evals | candidates | search s | best prompt |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for t, s, idv, it, bd, bt, e, c, secs, p in rows:
    p = p.replace("|", "\\|").replace("\n", " / ")
    print(f"| {t} | {s} | {idv:.3f} | {it:.3f} | {bd:.3f} | {bt:.3f} | {bt-it:+.3f} | {e} | {c} | {secs:.0f} | {p[:90]} |")
PY
