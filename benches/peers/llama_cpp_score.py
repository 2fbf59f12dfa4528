#!/usr/bin/env python3
"""Peer scorer: label log-likelihood classification with llama.cpp (llama-cpp-python).

For each of the first N examples of a JSONL file ({"input": ..., "target": ...}) the
template is rendered, log P(label | text) is computed for every label (sum over the
label's tokens), and the argmax label is the prediction.

Tokenization: text and label are tokenized separately and the ids concatenated
(no BPE merge across the boundary); BOS before the text when the GGUF says add_bos_token
(Gemma yes, SmolLM2 no).

Prefix reuse: the rendered template text before "{input}" is the same for every
example. Its tokens are evaluated once; for each example we keep the KV cache for the
longest common token prefix between the cached tokens and the example's tokens
(llama-cpp-python truncates the KV cache at llm.n_tokens on the next eval), so only
the suffix is evaluated. The prefix evaluation is counted in the timing/tokens.

Only the scoring loop is timed (model load excluded). Only last-position logits are
computed per eval call (logits_all=False).

Example:
  python3 benches/peers/llama_cpp_score.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
      --data /work/shared/data/evoprompt/sst2/test.jsonl --n 64 \
      --prompt "Is the sentiment of this movie review positive or negative?" --json
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

# llama.cpp's extra buffer types off (AMX crashes where the kernel grants no tile state) unless
# --extra-bufts: for a llama.cpp built without AMX (benches/peers/build-llama-cpp.sh, loaded
# through LLAMA_CPP_LIB_PATH), whose repacked kernels are then on.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/support"))


def log_softmax64(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


class Scorer:
    def __init__(self, model, threads, n_ctx):
        self.llm = Llama(model_path=model, n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads,
                         n_threads_batch=threads, logits_all=False, verbose=False)
        self.n_vocab = self.llm.n_vocab()
        self.evaluated = 0  # tokens passed through the model

    def tok(self, s, bos=False):
        # add_bos=True prepends BOS only when the GGUF asks for it (Gemma; not SmolLM2).
        return self.llm.tokenize(s.encode("utf-8"), add_bos=bos, special=True)

    def _eval_from(self, keep, ids):
        """Keep the first `keep` cached tokens, evaluate ids[keep:], return last-token logprobs."""
        llm = self.llm
        assert keep < len(ids), "need at least one new token to get logits"
        llm.n_tokens = keep  # eval() drops KV entries at positions >= n_tokens
        llm.eval(ids[keep:])
        self.evaluated += len(ids) - keep
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(self.n_vocab,))
        return log_softmax64(logits)

    def cached_prefix_len(self, ids):
        cache = self.llm.input_ids[: self.llm.n_tokens]
        n = min(len(cache), len(ids))
        k = 0
        while k < n and cache[k] == ids[k]:
            k += 1
        return k

    def score(self, text_ids, label_ids, reuse):
        """Return [log P(label | text) for each label]."""
        keep = min(self.cached_prefix_len(text_ids), len(text_ids) - 1) if reuse else 0
        first = self._eval_from(keep, text_ids)
        out = []
        for lab in label_ids:
            lp = first[lab[0]]
            seq = list(text_ids)
            for j in range(1, len(lab)):  # multi-token labels: one token at a time
                seq.append(lab[j - 1])
                lp += self._eval_from(len(seq) - 1, seq)[lab[j]]
            out.append(float(lp))
        return out


def main():
    ap = argparse.ArgumentParser(description="llama.cpp peer scorer")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--template", default="{prompt}\n\nReview: {input}\nSentiment:")
    ap.add_argument("--labels", nargs="+", default=[" negative", " positive"])
    ap.add_argument("--targets", nargs="+", default=None,
                    help="target strings matching --labels order (default: labels stripped)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--no-prefix-reuse", action="store_true")
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    ap.add_argument("--extra-bufts", action="store_true",
                    help="leave llama.cpp's extra buffer types (repacked kernels) on; only for a build without AMX")
    ap.add_argument("--label", default="llama.cpp", help="engine name, before the details")
    args = ap.parse_args()
    if not args.extra_bufts:
        import llama_cpp_no_amx  # noqa: F401  (patches the model defaults before a model loads)

    # Unescape "\n" typed literally on the command line.
    template = args.template.replace("\\n", "\n")
    reuse = not args.no_prefix_reuse
    targets = args.targets or [l.strip() for l in args.labels]

    rows = []
    with open(args.data, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= args.n:
                break

    sc = Scorer(args.model, args.threads, args.n_ctx)
    label_ids = [sc.tok(l) for l in args.labels]
    prefix = template.split("{input}")[0].replace("{prompt}", args.prompt)

    t0 = time.perf_counter()
    if reuse:
        pids = sc.tok(prefix, bos=True)
        # Drop the last prefix token: it may merge with the start of the input
        # (e.g. "Review: " + "it" -> "Review:" + " it"); the LCP check handles the rest.
        pids = pids[:-1]
        if pids:
            sc.llm.n_tokens = 0
            sc.llm.eval(pids)
            sc.evaluated += len(pids)
    scores, correct = [], 0
    for row in rows:
        text = template.replace("{prompt}", args.prompt).replace("{input}", row["input"])
        s = sc.score(sc.tok(text, bos=True), label_ids, reuse)
        scores.append(s)
        pred = int(np.argmax(s))
        correct += int(targets[pred] == row["target"])
    secs = time.perf_counter() - t0

    n = len(rows)
    res = {
        "engine": f"{args.label} (llama-cpp-python {llama_cpp.__version__}, "
                  f"{'extra buffer types on' if args.extra_bufts else 'extra buffer types off'}, "
                  f"{'prefix reuse' if reuse else 'no prefix reuse'}, {args.threads} threads)",
        "examples": n,
        "tokens": sc.evaluated,
        "seconds": round(secs, 4),
        "tokens_per_s": round(sc.evaluated / secs, 2),
        "examples_per_s": round(n / secs, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "accuracy": correct / n if n else None,
        "scores": [[round(x, 6) for x in s] for s in scores],
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(json.dumps({k: v for k, v in res.items() if k != "scores"}, indent=1))


if __name__ == "__main__":
    main()
