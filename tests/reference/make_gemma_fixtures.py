#!/usr/bin/env python3
"""Reference fixtures for Gemma 3 270M (SentencePiece tokenizer, gemma3 architecture) from llama.cpp.

Outputs (in tests/reference/gemma/):

  tokens.json  - text -> token ids (add_bos=False, special=True) for the strings of
                 make_fixtures.py plus Gemma-specific ones (turn markers, whitespace runs,
                 HTML tags, byte fallback)
  sst2.json    - SST-2 test examples: ids of `{prompt}\\n\\nReview: {input}\\nSentiment:` with BOS,
                 and the log-probability of each label's verbalizer after it

Usage (from the repository root, after ./models/fetch-gemma.sh):

    pip install llama-cpp-python==0.3.36 numpy
    python3 tests/reference/make_gemma_fixtures.py [--limit 200]

Deterministic: literal strings, the first lines of a fixed data file, one forward pass per
text with an f32 KV cache.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

# llama.cpp's extra buffer types off (AMX crashes where the kernel grants no tile state).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../support"))
import llama_cpp_no_amx  # noqa: E402,F401

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import tokenizer_cases, log_softmax64, r  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_MODEL = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
EXPECTED_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
SST2_TEST = os.path.join(ROOT, "experiments", "data", "sst2", "test.jsonl")
# experiments/tasks/sst2.toml: template, verbalizers and first initial prompt.
PROMPT = "Is the sentiment of this movie review positive or negative?"
TEMPLATE = "{prompt}\n\nReview: {input}\nSentiment:"
VERBALIZERS = [" negative", " positive"]
LABELS = ["negative", "positive"]


def gemma_cases():
    return [
        "<start_of_turn>user\nIs this review positive or negative?<end_of_turn>\n<start_of_turn>model\n",
        "<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>", "text<end_of_turn>text",
        "<bos>Hello", " <start_of_turn> ", "<start_of_turn", "<unused0>", "[multimodal]",
        "<div>", "</div>", "<table><tr><td>x</td></tr></table>", "<h1>Title</h1>", "<b>bold</b>",
        "\t\t\t", "a\t\t\tb", " " * 31, " " * 40, "\n" * 31, "\n" * 40, "x" + " " * 33 + "y",
        "▁", "▁▁x", "a▁b", "\u0000", "\u0001x", "\x7f", "\u200b", "\ufeffBOM", "\U0001F9FF",
        "\U000E0041", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ﬁ ligature", "Ⅻ", "½ ¼", "x²", "\u00a0nbsp\u00a0",
        "  hello  world  ", "Hello\r\nWorld\r\n", "tab\there", "Sentiment: positive\n\n",
        f"{PROMPT}\n\nReview: no. .\nSentiment:",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--sst2", default=SST2_TEST)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--out-dir", default=os.path.join(HERE, "gemma"))
    args = ap.parse_args()

    with open(args.model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    if sha != EXPECTED_SHA256:
        sys.exit(f"model sha256 mismatch: {sha} != {EXPECTED_SHA256}")
    os.makedirs(args.out_dir, exist_ok=True)

    # type_k/type_v = 0 (GGML_TYPE_F32): an f32 KV cache, as in make_fixtures.py.
    llm = Llama(model_path=args.model, logits_all=True, n_ctx=512, n_threads=2,
                seed=0, verbose=False, type_k=0, type_v=0)

    texts = tokenizer_cases(args.sst2)
    seen = set(texts)
    texts += [t for t in gemma_cases() if t not in seen]
    cases = [{"text": t, "ids": [int(i) for i in llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)]}
             for t in texts]
    with open(os.path.join(args.out_dir, "tokens.json"), "w", encoding="utf-8") as f:
        json.dump({
            "generator": f"llama-cpp-python {llama_cpp.__version__}; "
                         "llm.tokenize(text.encode('utf-8'), add_bos=False, special=True)",
            "model_sha256": sha, "cases": cases,
        }, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"tokens.json: {len(cases)} cases")

    with open(args.sst2, encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(args.limit), f)]
    conts = [llm.tokenize(v.encode("utf-8"), add_bos=False, special=True) for v in VERBALIZERS]
    examples = []
    correct = 0
    for i, row in enumerate(rows):
        text = TEMPLATE.format(prompt=PROMPT, input=row["input"])
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        lps = []
        for cont in conts:
            seq = ids + cont[:-1]
            llm.reset()
            llm.eval(seq)
            lp = log_softmax64(llm.scores[len(ids) - 1: len(seq), :])
            lps.append(r(sum(lp[j][t] for j, t in enumerate(cont))))
        predicted = LABELS[int(np.argmax(lps))]
        correct += predicted == row["target"]
        examples.append({"index": i, "ids": [int(t) for t in ids], "target": row["target"],
                         "predicted": predicted, "label_logprobs": lps})
    with open(os.path.join(args.out_dir, "sst2.json"), "w", encoding="utf-8") as f:
        json.dump({
            "generator": f"llama-cpp-python {llama_cpp.__version__}; Llama(logits_all=True, n_ctx=512, "
                         "n_threads=2, type_k=f32, type_v=f32); ids = tokenize(text, add_bos=True, special=True); "
                         "label_logprobs = float64 log_softmax of the logits, summed over the verbalizer's tokens",
            "model_sha256": sha, "prompt": PROMPT, "template": TEMPLATE,
            "verbalizers": VERBALIZERS, "labels": LABELS,
            "verbalizer_ids": [[int(t) for t in c] for c in conts],
            "accuracy": correct / len(rows), "examples": examples,
        }, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"sst2.json: {len(rows)} examples, accuracy {correct / len(rows):.3f}")


if __name__ == "__main__":
    main()
