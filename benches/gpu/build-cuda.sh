#!/usr/bin/env bash
# Builds promptevo and the scoring bench with `--features cuda` on a machine WITHOUT a GPU or a
# CUDA install, for a GPU machine that has the CUDA 13 runtime libraries but no Rust toolchain.
#
#   benches/gpu/build-cuda.sh [TARGET_DIR]     (default: target-cuda)
#
# - nvcc 13.0 and the headers come from NVIDIA's PyPI wheels (nvidia-cuda-nvcc & co.);
# - the driver, cuBLAS, cuRAND and NVRTC are linked against empty stub libraries whose sonames
#   match CUDA 13 (libcuda.so.1, libcublas.so.13, ...); the real ones are found at run time through
#   LD_LIBRARY_PATH on the GPU machine (benches/gpu/device-check.sh does that);
# - kernels are compiled for compute capability 9.0 (H100/H200); set CUDA_COMPUTE_CAP for others.
# On a machine with a real CUDA toolkit, plain `cargo build --release --features cuda` is enough.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${1:-target-cuda}
TK=${CUDA_WHEELS_DIR:-$HOME/.cache/promptevo-cuda13}
R=$TK/x/nvidia/cu13
if [ ! -x "$R/bin/nvcc" ]; then
  mkdir -p "$TK"
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$TK" "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" \
    "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*"
  for w in "$TK"/*.whl; do unzip -q -o "$w" -d "$TK/x"; done
  chmod +x "$R"/bin/* "$R"/nvvm/bin/*
  ln -sf libcudart.so.13 "$R/lib/libcudart.so"
fi
# Stub libraries: every function cudarc binds, as an empty symbol, under the real soname.
# (On a fresh machine cargo has not fetched cudarc yet: `ls` finds nothing, which is not an error.)
cudarc_src() { ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.*/src 2>/dev/null | tail -1 || true; }
SRC=$(cudarc_src)
stub() { # name soname bindings
  grep -h -o -E '^pub unsafe fn [A-Za-z0-9_]+\(' "$3" |
    sed -E 's/pub unsafe fn ([A-Za-z0-9_]+)\(/void \1(void){}/' | sort -u > "$TK/$1.c"
  gcc -shared -fPIC -o "$R/lib/lib$1.so" "$TK/$1.c" -Wl,-soname,"$2"
}
if [ -z "$SRC" ]; then cargo fetch; SRC=$(cudarc_src); fi
stub cuda libcuda.so.1 "$SRC/driver/sys/mod.rs"
stub cublas libcublas.so.13 "$SRC/cublas/sys/mod.rs"
stub cublasLt libcublasLt.so.13 "$SRC/cublaslt/sys/mod.rs"
stub curand libcurand.so.10 "$SRC/curand/sys/mod.rs"
stub nvrtc libnvrtc.so.13 "$SRC/nvrtc/sys/mod.rs"
export PATH=$R/bin:$PATH CUDA_ROOT=$R CUDA_PATH=$R CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
CARGO_TARGET_DIR=$TARGET cargo build --release --features cuda --bin promptevo
CARGO_TARGET_DIR=$TARGET cargo bench --features cuda --bench scoring --no-run
