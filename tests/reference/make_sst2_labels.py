#!/usr/bin/env python3
"""Generate tests/reference/sst2_labels.json: llama.cpp's label log-probs on SST-2 test@200.

For the first 200 examples of experiments/data/sst2/test.jsonl, rendered with the sst2 task's
template and first prompt, this records the text's token ids and log P(" negative"),
log P(" positive") after it (float64 log_softmax of the full-vocabulary logits of the last
position), from llama.cpp through llama-cpp-python with an f32 KV cache (type_k = type_v = 0)
and its extra buffer types off (tests/support/llama_cpp_no_amx.py; Q4_1 has no repacked kernel
anyway). Each example is evaluated on its own (empty cache). tests/int8.rs checks promptevo's
`--weights int8` decisions against it.

Usage (from the repository root; ~1 min on 2 cores):

    python3 tests/reference/make_sst2_labels.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import llama_cpp_no_amx  # noqa: F401,E402  (before any model loads)
import llama_cpp  # noqa: E402
from llama_cpp import Llama  # noqa: E402

DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
EXPECTED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DATA = os.path.join(ROOT, "experiments", "data", "sst2", "test.jsonl")
# The sst2 task's template and first initial prompt (experiments/tasks/sst2.toml).
TEMPLATE = "{prompt}\n\nReview: {input}\nSentiment:"
PROMPT = "Is the sentiment of this movie review positive or negative?"
LABELS = [" negative", " positive"]
N = 200


def log_softmax64(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=os.path.join(HERE, "sst2_labels.json"))
    args = ap.parse_args()
    sha = hashlib.sha256(open(args.model, "rb").read()).hexdigest()
    if sha != EXPECTED_SHA256:
        sys.exit(f"{args.model}: sha256 {sha} is not the reference model's {EXPECTED_SHA256}")
    llm = Llama(model_path=args.model, n_ctx=512, n_batch=512, n_threads=2, logits_all=False,
                seed=0, verbose=False, type_k=0, type_v=0)
    n_vocab = llm.n_vocab()
    tok = lambda s: llm.tokenize(s.encode("utf-8"), add_bos=True, special=True)  # noqa: E731
    label_ids = [tok(l) for l in LABELS]
    assert all(len(l) == 1 for l in label_ids), "the labels are single tokens for this model"
    rows = []
    with open(DATA, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= N:
                break
    examples = []
    for i, row in enumerate(rows):
        text = TEMPLATE.replace("{prompt}", PROMPT).replace("{input}", row["input"])
        ids = tok(text)
        llm.reset()
        llm.eval(ids)
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
        lp = log_softmax64(logits)
        examples.append({
            "index": i,
            "target": row["target"],
            "ids": ids,
            "label_logprobs": [round(float(lp[l[0]]), 6) for l in label_ids],
        })
    out = {
        "generator": f"llama-cpp-python {llama_cpp.__version__}; Llama(n_ctx=512, n_threads=2, "
                     "type_k=f32, type_v=f32, extra buffer types off); one eval per example; "
                     "float64 log_softmax of the last position's logits",
        "model_sha256": sha,
        "prompt": PROMPT,
        "labels": LABELS,
        "label_ids": [l[0] for l in label_ids],
        "examples": examples,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=0, ensure_ascii=False)
        f.write("\n")
    acc = np.mean([LABELS[int(np.argmax(e["label_logprobs"]))].strip() == e["target"]
                   for e in examples])
    print(f"wrote {args.out}: {len(examples)} examples, accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
