#!/usr/bin/env bash
# A promptevo benchmark split across a Slurm cluster: one shard per array task, then a merge job
# that starts only when every shard has succeeded.
#
# Submit from a login node, in the promptevo checkout, on a filesystem every node sees:
#
#     SHARDS=8 CONFIG=experiments/benches/generalise.toml OUT=$PWD/runs/bench-generalise \
#         experiments/cluster/slurm-array.sh
#
# It submits itself as the array `--array=1-$SHARDS` (task K runs `promptevo bench --shard K/N`)
# and a merge job with `--dependency=afterok:<array>`, which runs `promptevo bench --merge` to
# write results.csv, results.json, bench.md and plots into $OUT, as an unsharded run would.
# Slurm's logs of the shards and the merge go to $OUT/slurm-logs/.
#
# Every shard and the merge must see the benchmark file, the tasks, the pool and the model at
# the same paths (they are recorded in each run's config.json, and a run recorded with other
# paths or model flags is refused), so keep the checkout and $OUT on the shared filesystem.
# A failed or cancelled shard leaves its runs resumable (logged evaluations are kept) and Slurm
# cancels the merge (it is submitted with --kill-on-invalid-dep=yes). Resubmit that shard alone,
# with the same variables plus ARRAY=K (or a list: ARRAY=2,5), e.g.
#
#     ARRAY=3 SHARDS=8 CONFIG=experiments/benches/generalise.toml OUT=$PWD/runs/bench-generalise \
#         experiments/cluster/slurm-array.sh
#
# and the script submits those array tasks and a new merge after them; the shard's finished
# runs are skipped and its half-finished run resumes from its log.
#
# Variables (all optional except where noted):
#   CONFIG      benchmark file (default experiments/benches/strategies.toml)
#   OUT         shared output folder (default $PWD/runs/bench-<name of the benchmark>)
#   SHARDS      number of shards N (default 4); at most the benchmark's run count is useful
#   MODEL       --model value (default: promptevo's own default, models/SmolLM2-...)
#   PROMPTEVO   the binary (default target/release/promptevo; build it once with
#               `cargo build --release` on a node like the compute nodes)
#   BENCH_FLAGS further flags for every shard and the merge (e.g. "--weights bf16 --device cuda");
#               the model flags must be the same for the shards and the merge
#   SBATCH_FLAGS extra sbatch flags for the shards (partition, account, GPUs, ...; they override
#               the #SBATCH defaults below, e.g. "--cpus-per-task=2 --mem=2G")
#   ARRAY       which shards to submit (default 1-$SHARDS): a resubmission of failed shards
#
# Resources of each shard (one model in memory, batches on its CPUs):
#SBATCH --job-name=promptevo-shard
#SBATCH --cpus-per-task=8
#SBATCH --mem=8G
#SBATCH --time=24:00:00
set -euo pipefail

CONFIG="${CONFIG:-experiments/benches/strategies.toml}"
SHARDS="${SHARDS:-4}"
PROMPTEVO="${PROMPTEVO:-target/release/promptevo}"
BENCH_FLAGS="${BENCH_FLAGS:-}"
SBATCH_FLAGS="${SBATCH_FLAGS:-}"
if [[ -z "${OUT:-}" ]]; then
    name="$(sed -n 's/^name *= *"\(.*\)".*/\1/p' "$CONFIG" | head -n 1)"
    OUT="$PWD/runs/bench-${name:-bench}"
fi
model_flag=()
if [[ -n "${MODEL:-}" ]]; then model_flag=(--model "$MODEL"); fi
# shellcheck disable=SC2206 # BENCH_FLAGS is a list of flags, split on spaces on purpose
extra=($BENCH_FLAGS)

die() { echo "slurm-array: $*" >&2; exit 2; }

if [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
    # Inside the array: this task's shard (array ids are 1..N, as shards are).
    exec "$PROMPTEVO" bench --config "$CONFIG" --out "$OUT" --quiet \
        --shard "$SLURM_ARRAY_TASK_ID/$SHARDS" ${model_flag[@]+"${model_flag[@]}"} ${extra[@]+"${extra[@]}"}
fi

# On the login node: check, then submit the array and the merge.
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || die "SHARDS must be a whole number >= 1, got '$SHARDS'"
ARRAY="${ARRAY:-1-$SHARDS}"
[[ "$ARRAY" =~ ^[0-9,-]+$ ]] || die "ARRAY must list shards like 3 or 2,5 or 1-4, got '$ARRAY'"
[[ -f "$CONFIG" ]] || die "CONFIG $CONFIG is not a file; give a benchmark file, e.g. CONFIG=experiments/benches/strategies.toml"
[[ -x "$PROMPTEVO" ]] || die "PROMPTEVO $PROMPTEVO is not executable; build it with 'cargo build --release' or set PROMPTEVO=/path/to/promptevo"
command -v sbatch >/dev/null || die "sbatch not found; run this on a Slurm login node"
mkdir -p "$OUT/slurm-logs"
export CONFIG OUT SHARDS PROMPTEVO BENCH_FLAGS MODEL
# shellcheck disable=SC2086 # SBATCH_FLAGS is a list of flags
array_id="$(sbatch --parsable --export=ALL --array="$ARRAY" \
    --output="$OUT/slurm-logs/shard-%A_%a.log" $SBATCH_FLAGS "$0")"
array_id="${array_id%%;*}"
merge_id="$(sbatch --parsable --export=ALL --dependency="afterok:$array_id" --kill-on-invalid-dep=yes \
    --job-name=promptevo-merge --cpus-per-task=1 --mem=2G --time=00:30:00 \
    --output="$OUT/slurm-logs/merge-%j.log" \
    --wrap="$(printf '%q ' "$PROMPTEVO" bench --config "$CONFIG" --out "$OUT" --merge ${model_flag[@]+"${model_flag[@]}"} ${extra[@]+"${extra[@]}"})")"
echo "submitted shards: array job $array_id ($ARRAY of 1-$SHARDS); merge: job ${merge_id%%;*} (after those shards succeed)"
echo "results: $OUT/bench.md"
