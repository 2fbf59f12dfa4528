#!/bin/sh
# Makes a Python virtual environment with llama-cpp-python's OpenAI-compatible server, for
# tests/server.rs and benches/server.rs, and prints its python's path on stdout.
#
#   tests/support/llama-server-venv.sh DIR
#
# Does nothing when DIR already holds the pinned version. Installing compiles llama.cpp from the
# sdist (several minutes on two cores). Exit status 3: Python's venv or pip is unavailable (the
# caller skips, loudly); any other failure is an error.
set -eu
DIR=${1:?usage: llama-server-venv.sh DIR}
# The version whose behaviour the tests pin (its echo log-probs are shifted by one position).
VERSION=0.3.36
PY="$DIR/bin/python"
if [ -x "$PY" ] && "$PY" -c "import llama_cpp, llama_cpp.server, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
    echo "$PY"
    exit 0
fi
SYSTEM_PY=$(command -v python3 || command -v python || true)
if [ -z "$SYSTEM_PY" ]; then
    echo "llama-server-venv.sh: no python3 on PATH" >&2
    exit 3
fi
if ! "$SYSTEM_PY" -m venv "$DIR" >&2; then
    echo "llama-server-venv.sh: $SYSTEM_PY cannot make a virtual environment (install python3-venv)" >&2
    exit 3
fi
if ! "$PY" -m pip --version >/dev/null 2>&1; then
    echo "llama-server-venv.sh: the virtual environment has no pip (install python3-pip)" >&2
    exit 3
fi
start=$(date +%s)
echo "llama-server-venv.sh: installing llama-cpp-python[server]==$VERSION into $DIR (compiles llama.cpp)" >&2
"$PY" -m pip install --quiet "llama-cpp-python[server]==$VERSION" >&2
echo "llama-server-venv.sh: installed in $(( $(date +%s) - start )) s" >&2
echo "$PY"
