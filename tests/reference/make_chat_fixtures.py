#!/usr/bin/env python3
"""Generate the chat-format reference fixture (tests/reference/chat.json) with llama.cpp.

Chat tasks render each prompt through the model's own chat template (GGUF
`tokenizer.chat_template`) and score each label as the start of the assistant turn. This script
renders the same chats independently (Jinja2, through llama-cpp-python's Jinja2ChatFormatter,
with the generation prompt added), tokenises them with llama.cpp (special tokens parsed as
special, as llama.cpp does for chat prompts), and records:

  sst2   - for the first 200 SST-2 test reviews with sst2-chat.toml's first initial prompt as
           the system message: the rendered text, its token ids, and the log-probability of each
           label ("negative", "positive", no leading space) as the start of the assistant turn;
  texts  - for a few chats (a plain one, one with two demonstrations as earlier turns, one with
           the prompt in the user message and no system message): the text, the ids and the
           top-10 next-token log-probs at every position, as logprobs.json has them.

Usage (from the repository root; llama-cpp-python 0.3.36 and numpy):

    python3 tests/reference/make_chat_fixtures.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

Deterministic: fixed data lines, one forward pass per text, no sampling.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "../support"))
import llama_cpp_no_amx  # noqa: E402,F401

sys.path.insert(0, HERE)
from make_fixtures import DEFAULT_MODEL, EXPECTED_SHA256, log_softmax64, r  # noqa: E402

SST2_TEST = os.path.join(ROOT, "experiments/data/sst2/test.jsonl")
SST2_TRAIN = os.path.join(ROOT, "experiments/data/sst2/train.jsonl")
N_SST2 = 200
TOP_K = 10
LABELS = ["negative", "positive"]
# sst2-chat.toml's first initial prompt.
PROMPT = "Is the sentiment of this movie review positive or negative?"


def demo_block(inp, answer):
    """A demonstration as promptevo writes it into a chat prompt's text (src/task/format.rs)."""
    return f"User: {inp}\nAssistant: {answer}"


def read_jsonl(path, n):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def fill(template, prompt, inp):
    return template.replace("{prompt}", prompt).replace("{input}", inp)


def messages_of(system, user, instruction, demos, inp):
    """The chat promptevo builds: system (unless empty), demo turns, the final user turn."""
    out = []
    s = fill(system, instruction, "")
    if s:
        out.append({"role": "system", "content": s})
    for d_in, d_ans in demos:
        out.append({"role": "user", "content": fill(user, instruction, d_in)})
        out.append({"role": "assistant", "content": d_ans})
    out.append({"role": "user", "content": fill(user, instruction, inp)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=os.path.join(HERE, "chat.json"))
    args = ap.parse_args()

    with open(args.model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    if sha != EXPECTED_SHA256:
        sys.exit(f"model sha256 mismatch: {sha} != {EXPECTED_SHA256}")

    # f32 KV cache (type_k/type_v = 0), as the other fixtures.
    llm = Llama(model_path=args.model, logits_all=True, n_ctx=1024, n_threads=2,
                seed=0, verbose=False, type_k=0, type_v=0)
    meta = llm.metadata
    def vocab_token(key):
        if key not in meta:
            return ""
        return llm.detokenize([int(meta[key])], special=True).decode("utf-8", errors="replace")

    formatter = Jinja2ChatFormatter(
        template=meta["tokenizer.chat_template"],
        eos_token=vocab_token("tokenizer.ggml.eos_token_id"),
        bos_token=vocab_token("tokenizer.ggml.bos_token_id"),
        add_generation_prompt=True,
    )

    def render(messages):
        return formatter(messages=messages).prompt

    def tokenize(text):
        return [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)]

    label_ids = {lab: tokenize(lab) for lab in LABELS}

    def label_logprobs(ids, evaluated=False):
        """log P(label | ids) per label, summed over its tokens; `ids` is evaluated once (and
        only the later tokens of a multi-token label are run after it)."""
        if not evaluated:
            llm.reset()
            llm.eval(ids)
        n = len(ids)
        out = []
        for lab in LABELS:
            cont = label_ids[lab]
            if len(cont) > 1:
                llm.n_tokens = n  # drop any earlier label's tokens; the text's cache stays
                llm.eval(cont[:-1])
            lp = log_softmax64(llm.scores[n - 1: n - 1 + len(cont), :])
            out.append(r(sum(lp[j, t] for j, t in enumerate(cont))))
        return out

    # ---- SST-2 test@200, the prompt as the system message ----
    sst2 = []
    for k, row in enumerate(read_jsonl(SST2_TEST, N_SST2)):
        text = render(messages_of("{prompt}", "{input}", PROMPT, [], row["input"]))
        ids = tokenize(text)
        sst2.append({"input": row["input"], "text": text, "ids": ids,
                     "label_logprobs": label_logprobs(ids)})
        if (k + 1) % 20 == 0:
            print(f"sst2: {k + 1}/{N_SST2}", file=sys.stderr, flush=True)

    # ---- a few chats, top-10 at every position ----
    train = read_jsonl(SST2_TRAIN, 2)
    demos = [(t["input"], t["target"]) for t in train]
    review = read_jsonl(SST2_TEST, 1)[0]["input"]
    cases = [
        ("{prompt}", "{input}", PROMPT, []),
        ("{prompt}", "Review: {input}", PROMPT, demos),
        ("", "{prompt}\n\nReview: {input}", PROMPT, []),
    ]
    texts = []
    for system, user, instruction, ds in cases:
        prompt = "\n\n".join([instruction] + [demo_block(i, a) for i, a in ds])
        text = render(messages_of(system, user, instruction, ds, review))
        ids = tokenize(text)
        llm.reset()
        llm.eval(ids)
        lp = log_softmax64(llm.scores[: len(ids), :])
        labels = label_logprobs(ids, evaluated=True)
        positions = []
        for i in range(len(ids)):
            row = lp[i]
            top = np.argsort(-row, kind="stable")[:TOP_K]
            positions.append({"pos": i, "argmax": int(top[0]),
                              "top": [[int(t), r(row[t])] for t in top]})
        texts.append({"system": system, "user": user, "prompt": prompt, "input": review,
                      "text": text, "ids": ids, "label_logprobs": labels,
                      "positions": positions})

    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({
            "generator": f"llama-cpp-python {llama_cpp.__version__}: chats rendered by "
                         "Jinja2ChatFormatter(GGUF tokenizer.chat_template, add_generation_prompt=True), "
                         "tokenised with tokenize(add_bos=False, special=True), Llama(logits_all=True, "
                         "n_ctx=1024, n_threads=2, type_k=f32, type_v=f32), extra buffer types off; "
                         "log-probs = float64 log_softmax of full-vocabulary logits, rounded to 6 decimals",
            "model_sha256": sha,
            "labels": LABELS,
            "label_ids": label_ids,
            "prompt": PROMPT,
            "sst2": sst2,
            "texts": texts,
        }, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{args.out}: {len(sst2)} SST-2 chats, {len(texts)} texts "
          f"({sum(len(t['ids']) for t in texts)} positions)")


if __name__ == "__main__":
    main()
