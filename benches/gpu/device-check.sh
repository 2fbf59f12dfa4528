#!/usr/bin/env bash
# The GPU check of the `cuda` feature, run from the repo root on a GPU machine that has the CUDA 13
# runtime libraries (e.g. a PyTorch install) but no Rust toolchain and no network.
#
# It expects, in /tmp/stash or in .devcarry*/ beside it: promptevo.xz and scoring.xz (the binaries
# benches/gpu/build-cuda.sh builds, stripped and xz-compressed) and model.part-* (the default GGUF
# split with `split -b`, since one transfer to the machine is limited in size). Results go to $OUT.
#
# The device tool sends the tracked tree, which the committed benchmark results have grown past
# its 64 MiB (129 MB on 2026-12-04; the rest is about 6 MB). Untrack them in the index only, for
# the calls, and restore the index after (the files and HEAD are untouched):
#   git rm -r -q --cached experiments/results && echo /experiments/results/ >> .git/info/exclude
#   ... the calls: .devcarry1 (promptevo.xz, scoring.xz, the model's last part), then one
#   .devcarryN per further 40 MB part (`split -b 40M`), each within 30 s of the last so the
#   machine stays warm, the last one running this script ...
#   git reset -q -- experiments/results && sed -i '\#^/experiments/results/$#d' .git/info/exclude
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
S=/tmp/stash; mkdir -p $S; cp .devcarry*/* $S/ 2>/dev/null
cat $S/model.part-* > /tmp/model.gguf && sha256sum /tmp/model.gguf
for b in promptevo scoring; do xz -dc $S/$b.xz > /tmp/$b && chmod +x /tmp/$b; done
# The real CUDA libraries, wherever this machine keeps them (the binaries name their sonames).
D=$(for l in libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
      find / -xdev -name "$l" 2>/dev/null | head -1; done | xargs -r -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH=$D${LD_LIBRARY_PATH:-}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldd /tmp/promptevo | grep -E 'cuda|cublas|curand|nvrtc|not found'
# The bench finds the model and data through the path it was built in.
mkdir -p /work && ln -sfn "$PWD" /work/main
ln -sf /tmp/model.gguf models/SmolLM2-135M-Instruct.Q4_1.gguf
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
if [ "${1:-check}" = main ]; then
  # The README's main command on the GPU, after one eval that warms the driver's PTX cache.
  ( time /tmp/promptevo eval --device cuda --task experiments/tasks/sst2.toml --split test --limit 200 ) 2>&1 | tee $OUT/eval-cuda-1.txt
  ( time /tmp/promptevo eval --device cuda --task experiments/tasks/sst2.toml --split test --limit 200 ) 2>&1 | tee $OUT/eval-cuda-2.txt
  # The same examples one at a time without prefix reuse: the work split must not change the result.
  ( time /tmp/promptevo eval --device cuda --task experiments/tasks/sst2.toml --split test --limit 200 --batch-size 1 --no-prefix-reuse ) 2>&1 | tee $OUT/eval-cuda-fresh.txt
  ( time timeout 400 /tmp/promptevo optimize --device cuda --task experiments/tasks/sst2.toml --out /tmp/run-main ) 2>&1 | tail -30 | tee $OUT/optimize-main-cuda.txt
  cp /tmp/run-main/report.md $OUT/report-main-cuda.md 2>/dev/null
  exit 0
fi
echo "== eval on cuda, sst2 test 200 =="
( time timeout 120 /tmp/promptevo eval --device cuda --task experiments/tasks/sst2.toml --split test --limit 200 ) 2>&1 | tee $OUT/eval-cuda.txt
echo "== scoring bench on cuda =="
timeout 200 /tmp/scoring --device cuda 2>&1 | tee $OUT/bench-cuda.md
echo "== optimize on cuda =="
( time timeout 200 /tmp/promptevo optimize --device cuda --task experiments/tasks/sst2.toml --dev-limit 30 --generations 1 --test-limit 50 --seed 0 --quiet --out /tmp/run-cuda ) 2>&1 | tail -30 | tee $OUT/optimize-cuda.txt
cp /tmp/run-cuda/report.md $OUT/report-cuda.md 2>/dev/null
exit 0
