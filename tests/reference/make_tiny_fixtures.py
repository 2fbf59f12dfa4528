#!/usr/bin/env python3
"""Reference log-probs from llama.cpp for the tiny random model of each architecture.

The models are written by the Rust test suite (tests/architectures.rs, `write_tiny_models`,
deterministic seed), so this script first runs that test into a temporary folder, then evaluates
fixed token sequences with llama.cpp (f32 weights, f32 KV cache) and writes
tests/reference/tiny/logprobs.json: per architecture the file's FNV-1a hash, per sequence the
float64 log-softmax over the whole vocabulary after every prefix, and the token ids of the
reference strings of make_fixtures.py (the qwen models declare the `qwen2` pre-tokenizer, the
llama3 model `llama-bpe` and RoPE frequency factors, the others `smollm`).

Usage (from the repository root):

    pip install llama-cpp-python==0.3.36 numpy
    python3 tests/reference/make_tiny_fixtures.py
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import llama_cpp
from llama_cpp import Llama

# llama.cpp's extra buffer types off (AMX crashes where the kernel grants no tile state).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../support"))
import llama_cpp_no_amx  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import tokenizer_cases  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
VOCAB = 266  # tiny.rs: 3 specials, 256 bytes, 7 merges


def sequences():
    """Fixed token sequences (longer than Gemma's 4-token window)."""
    return [
        [(5 + 37 * i) % VOCAB for i in range(14)],
        [3 + (11 * i * i + 7 * i) % (VOCAB - 3) for i in range(10)],
    ]


def fnv1a(path):
    h = 0xCBF29CE484222325
    with open(path, "rb") as f:
        for b in f.read():
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def log_softmax64(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def main():
    out = tempfile.mkdtemp(prefix="promptevo-tiny-")
    env = dict(os.environ, PROMPTEVO_TINY_OUT=out)
    run = subprocess.run(
        ["cargo", "test", "--release", "--test", "architectures", "--", "--ignored",
         "--exact", "write_tiny_models", "--nocapture"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    written = [line.split() for line in run.stdout.splitlines()
               if len(line.split()) == 3 and line.split()[1].endswith(".gguf")]
    models = []
    for arch, path, digest in written:
        assert fnv1a(path) == digest, path
        llm = Llama(model_path=path, logits_all=True, n_ctx=64, n_threads=2, seed=0,
                    verbose=False, type_k=0, type_v=0)
        seqs = []
        for ids in sequences():
            llm.reset()
            llm.eval(ids)
            lp = log_softmax64(llm.scores[: len(ids), :])
            seqs.append({"ids": ids, "logprobs": [[round(float(v), 6) for v in row] for row in lp]})
        texts = tokenizer_cases(os.path.join(ROOT, "experiments", "data", "sst2", "test.jsonl"))
        tokens = [{"text": t, "ids": [int(i) for i in llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)]}
                  for t in texts]
        models.append({"architecture": arch, "fnv1a": digest, "sequences": seqs, "tokens": tokens})
        print(f"{arch}: {len(seqs)} sequences")
    with open(os.path.join(HERE, "tiny", "logprobs.json"), "w") as f:
        json.dump({
            "generator": f"llama-cpp-python {llama_cpp.__version__}; Llama(logits_all=True, n_ctx=64, "
                         "n_threads=2, type_k=f32, type_v=f32); float64 log_softmax of the logits",
            "models": models,
        }, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
