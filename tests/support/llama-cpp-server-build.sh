#!/bin/sh
# Builds llama.cpp's own OpenAI-compatible server, `llama-server`, for tests/server.rs, and
# prints its path on stdout.
#
#   tests/support/llama-cpp-server-build.sh DIR
#
# The source is the llama.cpp that llama-cpp-python 0.3.36's sdist vendors (PyPI is reachable
# where GitHub may not be), built with cmake and ninja from PyPI in a venv under DIR. Portable
# x86-64 flags (AVX2, no AVX-512, no AMX: AMX builds crash where the kernel grants no tile
# state). Does nothing when DIR already holds the binary. Several minutes on two cores. Exit
# status 3: Python's venv or pip is unavailable (the caller skips, loudly); any other failure is
# an error.
set -eu
DIR=${1:?usage: llama-cpp-server-build.sh DIR}
VERSION=0.3.36
BIN="$DIR/build/bin/llama-server"
if [ -x "$BIN" ] && [ -f "$DIR/version" ] && [ "$(cat "$DIR/version")" = "$VERSION" ]; then
    echo "$BIN"
    exit 0
fi
SYSTEM_PY=$(command -v python3 || command -v python || true)
if [ -z "$SYSTEM_PY" ]; then
    echo "llama-cpp-server-build.sh: no python3 on PATH" >&2
    exit 3
fi
mkdir -p "$DIR"
if ! "$SYSTEM_PY" -m venv "$DIR/tools" >&2 || ! "$DIR/tools/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "llama-cpp-server-build.sh: $SYSTEM_PY cannot make a virtual environment with pip (install python3-venv and python3-pip)" >&2
    exit 3
fi
start=$(date +%s)
echo "llama-cpp-server-build.sh: building llama-server (llama.cpp vendored by llama-cpp-python $VERSION) in $DIR" >&2
"$DIR/tools/bin/python" -m pip install --quiet cmake ninja >&2
# llama-cpp-python publishes only its sdist; pip fetches it by name (and only prepares its
# metadata, building nothing).
"$DIR/tools/bin/python" -m pip download --quiet --no-deps "llama-cpp-python==$VERSION" \
    -d "$DIR/sdist" >&2
rm -rf "$DIR/src"
mkdir -p "$DIR/src"
tar -xzf "$DIR/sdist/llama_cpp_python-$VERSION.tar.gz" -C "$DIR/src" \
    "llama_cpp_python-$VERSION/vendor/llama.cpp"
PATH="$DIR/tools/bin:$PATH"
export PATH
cmake -S "$DIR/src/llama_cpp_python-$VERSION/vendor/llama.cpp" -B "$DIR/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
    -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    >&2
cmake --build "$DIR/build" --target llama-server -j "$(nproc 2>/dev/null || echo 2)" >&2
echo "$VERSION" > "$DIR/version"
echo "llama-cpp-server-build.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$BIN"
