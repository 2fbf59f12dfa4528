#!/usr/bin/env bash
# Installs the benchmark's peer optimisers into target/peers-venv, from PyPI only (idempotent:
# a second run only checks). promptolution 2.3.0 (CAPO, EvoPromptGA, OPRO) needs no torch with
# its API model class (pointed at a local llama.cpp server), so none is installed; gepa 0.1.4
# needs nothing beyond the standard library with a custom evaluator.
#
# Usage: experiments/peers/install.sh [VENV]   (default: target/peers-venv)
# Each peer is installed on its own: one that fails leaves a line in VENV/peers-status.txt
# (`<peer> failed: <reason>`) and the others still install; the benchmark skips it loudly.
set -u
cd "$(dirname "$0")/../.."
VENV="${1:-target/peers-venv}"
PYTHON="${PYTHON:-python3}"
STATUS="$VENV/peers-status.txt"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" || { echo "peers: cannot create $VENV with $PYTHON -m venv" >&2; exit 1; }
fi
: > "$STATUS.new"

# peer name, pip requirement, import that proves it
install_one() {
  local name="$1" req="$2" module="$3"
  if "$VENV/bin/python" -c "import $module" 2>/dev/null && "$VENV/bin/pip" show -q "${req%%=*}" >/dev/null 2>&1 \
     && [ "$("$VENV/bin/pip" show "${req%%=*}" 2>/dev/null | sed -n 's/^Version: //p')" = "${req##*==}" ]; then
    echo "peers: $name already installed ($req)"
    echo "$name ok $req" >> "$STATUS.new"
    return
  fi
  echo "peers: installing $req into $VENV"
  local log="$VENV/install-$name.log"
  if "$VENV/bin/pip" install --disable-pip-version-check "$req" > "$log" 2>&1 \
     && "$VENV/bin/python" -c "import $module" >> "$log" 2>&1; then
    echo "$name ok $req" >> "$STATUS.new"
  else
    local why
    why="$(grep -E 'ERROR|Error' "$log" | tail -1)"
    echo "peers: $name FAILED to install ($req): ${why:-see $log}" >&2
    echo "$name failed $req: ${why:-see $log}" >> "$STATUS.new"
  fi
}

install_one gepa "gepa==0.1.4" gepa
install_one promptolution "promptolution==2.3.0" promptolution
mv "$STATUS.new" "$STATUS"
cat "$STATUS"
