#!/bin/sh
# Builds a fair llama.cpp peer for THIS CPU (llama-server, llama-bench and the shared libraries
# libllama.so/libggml*.so, which llama-cpp-python loads instead of its own when
# LLAMA_CPP_LIB_PATH names the folder) and prints the folder holding them on stdout.
#
#   benches/peers/build-llama-cpp.sh [DIR]        (default DIR: target/llama-cpp-fair)
#
# "Fair" means: the instruction sets this CPU has (AVX-512 F/BW/DQ/VL, VBMI, VNNI, BF16, AVX-VNNI,
# AVX2/FMA/F16C/BMI2, read from /proc/cpuinfo when the script runs), llama.cpp's repacked CPU
# kernels (GGML_CPU_REPACK, its "extra buffer types") on, llamafile's sgemm on, OpenMP on, and
# AMX always off (AMX builds crash on VMs whose kernel grants no tile state). Each distinct
# feature set gets its own build folder, DIR/<features>/, so a machine that moved from Intel to
# AMD (or lost AVX-512) builds again instead of running code its CPU cannot execute; the flags
# used are in DIR/<features>/flags.
#
# The source is the llama.cpp that llama-cpp-python 0.3.36's sdist vendors (the version the
# tests' llama-server and the bench's Python peer use), from PyPI, built with cmake and ninja
# from PyPI in a venv. Reuses target/llama-cpp-server's venv and sdist when present. Does
# nothing when the build exists. Tens of minutes on two loaded cores. Exit status 3: no Python
# venv/pip; any other failure is an error.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${1:-$ROOT/target/llama-cpp-fair}
VERSION=0.3.36

FLAGS=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2 || true)
has() { case " $FLAGS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
onoff() { if has "$1"; then echo ON; else echo OFF; fi; }

AVX=$(onoff avx); AVX2=$(onoff avx2); FMA=$(onoff fma); F16C=$(onoff f16c); BMI2=$(onoff bmi2)
AVX_VNNI=$(onoff avx_vnni)
# GGML_AVX512 compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw: all five.
AVX512=OFF
if has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw; then AVX512=ON; fi
AVX512_VBMI=OFF; AVX512_VNNI=OFF; AVX512_BF16=OFF
if [ "$AVX512" = ON ]; then
    AVX512_VBMI=$(onoff avx512vbmi); AVX512_VNNI=$(onoff avx512_vnni); AVX512_BF16=$(onoff avx512_bf16)
fi
SIG=""
for f in AVX AVX2 FMA F16C BMI2 AVX_VNNI AVX512 AVX512_VBMI AVX512_VNNI AVX512_BF16; do
    eval v=\$$f
    [ "$v" = ON ] && SIG="$SIG${SIG:+-}$(echo "$f" | tr 'A-Z_' 'a-z-')"
done
[ -n "$SIG" ] || SIG=portable
OUT="$DIR/$SIG"
BIN="$OUT/build/bin"
if [ -x "$BIN/llama-server" ] && [ -x "$BIN/llama-bench" ] && [ -f "$BIN/libllama.so" ] \
    && [ -f "$OUT/version" ] \
    && [ "$(cat "$OUT/version")" = "$VERSION" ]; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$OUT"
SRC_PARENT="$ROOT/target/llama-cpp-server"
SRC="$SRC_PARENT/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
TOOLS="$SRC_PARENT/tools"
if [ ! -f "$SRC/CMakeLists.txt" ] || [ ! -x "$TOOLS/bin/cmake" ]; then
    SRC_PARENT="$DIR/common"
    SRC="$SRC_PARENT/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
    TOOLS="$SRC_PARENT/tools"
    SYSTEM_PY=$(command -v python3 || command -v python || true)
    if [ -z "$SYSTEM_PY" ]; then
        echo "build-llama-cpp.sh: no python3 on PATH" >&2
        exit 3
    fi
    mkdir -p "$SRC_PARENT"
    if [ ! -x "$TOOLS/bin/cmake" ]; then
        if ! "$SYSTEM_PY" -m venv "$TOOLS" >&2 || ! "$TOOLS/bin/python" -m pip --version >/dev/null 2>&1; then
            echo "build-llama-cpp.sh: $SYSTEM_PY cannot make a virtual environment with pip (install python3-venv and python3-pip)" >&2
            exit 3
        fi
        "$TOOLS/bin/python" -m pip install --quiet cmake ninja >&2
    fi
    if [ ! -f "$SRC/CMakeLists.txt" ]; then
        "$TOOLS/bin/python" -m pip download --quiet --no-deps --no-binary :all: \
            "llama-cpp-python==$VERSION" -d "$SRC_PARENT/sdist" >&2
        mkdir -p "$SRC_PARENT/src"
        tar -xzf "$SRC_PARENT/sdist/llama_cpp_python-$VERSION.tar.gz" -C "$SRC_PARENT/src" \
            "llama_cpp_python-$VERSION/vendor/llama.cpp"
    fi
fi
PATH="$TOOLS/bin:$PATH"
export PATH

CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF \
-DGGML_AVX=$AVX -DGGML_AVX2=$AVX2 -DGGML_FMA=$FMA -DGGML_F16C=$F16C -DGGML_BMI2=$BMI2 \
-DGGML_AVX_VNNI=$AVX_VNNI -DGGML_AVX512=$AVX512 -DGGML_AVX512_VBMI=$AVX512_VBMI \
-DGGML_AVX512_VNNI=$AVX512_VNNI -DGGML_AVX512_BF16=$AVX512_BF16 \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
-DGGML_CPU_REPACK=ON -DGGML_LLAMAFILE=ON -DGGML_OPENMP=ON \
-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON"
echo "$CMAKE_FLAGS" | tr -s ' \\' ' ' > "$OUT/flags"
start=$(date +%s)
echo "build-llama-cpp.sh: building llama.cpp (vendored by llama-cpp-python $VERSION) for $SIG in $OUT" >&2
# shellcheck disable=SC2086
cmake -S "$SRC" -B "$OUT/build" -G Ninja $CMAKE_FLAGS >&2
cmake --build "$OUT/build" --target llama llama-server llama-bench -j "$(nproc 2>/dev/null || echo 2)" >&2
echo "$VERSION" > "$OUT/version"
echo "build-llama-cpp.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$BIN"
