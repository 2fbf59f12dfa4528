#!/usr/bin/env python3
"""Generate reference fixtures for promptevo's Rust tokenizer / inference engine.

The reference implementation is llama.cpp, driven through llama-cpp-python.
Outputs (written next to this script):

  tokens.json    - text -> token ids for a few hundred strings
  logprobs.json  - per-position next-token log-probabilities for a few texts

Usage (from the repository root):

    pip install llama-cpp-python==0.3.16 numpy
    python3 tests/reference/make_fixtures.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

The script is deterministic: every string is either a literal or derived from
literals / the first lines of a fixed data file, and inference is a single
greedy-free forward pass (no sampling).
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
EXPECTED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SST2_TEST = "/work/shared/data/evoprompt/sst2/test.jsonl"
N_SST2 = 40
TOP_K = 10

GENERATOR = (
    f"llama-cpp-python {llama_cpp.__version__} (bundled llama.cpp); "
    "llm.tokenize(text.encode('utf-8'), add_bos=False, special=True)"
)


# --------------------------------------------------------------------------
# Test strings for tokens.json
# --------------------------------------------------------------------------

def tokenizer_cases(sst2_path):
    """Return a deterministic, de-duplicated list of test strings."""
    cases = []

    # Plain ASCII sentences.
    cases += [
        "Hello, world!",
        "hello world",
        "The quick brown fox jumps over the lazy dog.",
        "A gorgeous, witty, seductive movie.",
        "Is the sentiment of this movie review positive or negative?",
        "Sentiment: positive",
        "Sentiment: negative",
        " positive",
        " negative",
        "positive",
        "negative",
        "I",
        "a",
        "",
        " ",
        "Machine learning is fun.",
        "This is a test. This is only a test.",
        "UPPER CASE WORDS AND lower case words",
        "CamelCaseIdentifier and snake_case_identifier",
        "Mr. Smith went to Washington, D.C., on Jan. 5th.",
    ]

    # Apostrophes / contractions (the GPT-2 regex special-cases 's 't 're 've 'm 'll 'd).
    cases += [
        "it's", "it 's", "don't", "don 't", "we're", "they've", "I'm", "you'll", "he'd",
        "IT'S", "DON'T", "We'Re", "the dog's bone", "the dogs' bones",
        "'s", "'t", "'re", "''", "'quoted'", "rock 'n' roll",
        "it\u2019s curly",  # right single quotation mark, not an apostrophe
    ]

    # Accents and other Latin-script letters.
    cases += [
        "café", "naïve", "über", "Müller", "jalapeño", "señor", "façade", "crème brûlée",
        "Ærøskøbing", "Straße", "Ångström", "résumé", "coöperate", "piñata",
        "e\u0301 (decomposed e + combining acute)",  # NFD form
        "Zürich ist schön.", "¿Dónde está la biblioteca?", "Ça va très bien, merci.",
        "Привет, мир!", "Γειά σου Κόσμε", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया",
        "ไทย", "Tiếng Việt có dấu",
    ]

    # CJK.
    cases += [
        "日本語", "你好，世界！", "これはテストです。", "한국어 텍스트", "漢字とひらがなとカタカナ",
        "中文 English 混合", "東京タワー", "我爱自然语言处理。",
    ]

    # Emoji, including skin tones, flags and ZWJ sequences.
    cases += [
        "😀", "👍", "👍🏽", "❤️", "🇫🇷", "🇯🇵🇺🇸",
        "👨\u200d👩\u200d👧\u200d👦",  # family ZWJ sequence
        "👩\u200d💻", "🏳️\u200d🌈", "🧑🏿\u200d🚀",
        "I love it 😍😍😍", "great movie!!! 🎬🍿", "emoji🙂inside🙂words",
    ]

    # Digits and numbers (SmolLM splits digits individually).
    cases += [
        "0", "7", "42", "123", "2024", "12345678", "3.14159", "1,000,000", "-17",
        "1e-10", "0x1F", "v1.2.3", "100%", "$19.99", "12:30pm", "2002-11-26",
        "3141592653589793238462643383279502884197", "a1b2c3", "abc123def",
        "phone: +1 (555) 010-9999", "① ② ③", "٣٤٥",  # non-ASCII digits
    ]

    # Whitespace: runs of spaces, tabs, newlines, leading/trailing whitespace.
    cases += [
        "\n", "\n\n", "\n\n\n", "\n\n\n\n", "\t", "\t\t", "  ", "   ", "    ",
        " \n", "\n ", "\r\n", "\r\n\r\n", " \t \n",
        "a\nb", "a\n\nb", "a\n\n\nb", "a\tb", "a  b", "a   b", "a    b",
        " leading space", "  two leading spaces", "trailing space ", "trailing spaces   ",
        "trailing newline\n", "\nleading newline", "\n\nboth\n\n",
        "line one\nline two\nline three", "tab\tseparated\tvalues",
        "    indented four", "\tindented tab", "word \n word", "end.\n\n\n",
        " " * 16, "\n" * 8, "x" + " " * 10 + "y",
    ]

    # Punctuation.
    cases += [
        "!", "?", "...", "…", "!!!", "?!", "—", "–", "--", "---",
        "(parenthesised)", "[bracketed]", "{braced}", "<angled>", "\"double quotes\"",
        "“smart quotes”", "«guillemets»", "a/b\\c|d", "@user #hashtag", "~`^&*_+=",
        "no. .", ", , ,", "end of sentence .", "semi;colon:colon",
    ]

    # Code.
    cases += [
        "def f(x):\n    return x + 1\n",
        "fn main() {\n    println!(\"Hello, world!\");\n}\n",
        "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "import numpy as np\nnp.zeros((3, 4))",
        "if x == 1 and y != 2:\n\tpass",
        "<div class=\"row\"><span>hi</span></div>",
        "SELECT * FROM users WHERE id = 42;",
        "let v: Vec<u32> = vec![1, 2, 3];",
        "// comment\n/* block */",
        "#include <stdio.h>",
        "x=>x*2",
        "{\"key\": [1, 2.5, null, true]}",
    ]

    # URLs, paths, emails.
    cases += [
        "https://example.com",
        "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        "http://www.example.org/path/to/page.html?query=1&b=two#frag",
        "ftp://files.example.net/pub/file.tar.gz",
        "user.name+tag@example.co.uk",
        "/usr/local/bin/python3",
        "C:\\Windows\\System32",
    ]

    # Chat markers (control tokens, parsed as special because special=True).
    cases += [
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "<|im_start|>user\nhi<|im_end|>\n",
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
        "<|im_start|>user\nIs this review positive or negative?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>assistant\npositive<|im_end|>",
        "text<|im_end|>text",
        "<|im_start|><|im_end|>",
        " <|im_start|> ",
        "<|im_start",  # incomplete marker: plain text
        "<|notatoken|>",
    ]

    # Programmatic combinations (deterministic).
    words = ["movie", "film", "plot", "acting", "great", "terrible", "boring", "witty"]
    for i, w in enumerate(words):
        cases.append(f"The {w} was {words[(i + 3) % len(words)]}.")
        cases.append(w.upper())
        cases.append(" " + w)
        cases.append(w + "'s")
    for n in [1, 2, 3, 5, 8, 13]:
        cases.append("ha" * n)
        cases.append("=" * n)
        cases.append(" " * n + "x")
        cases.append("x" + "\n" * n)
    for n in [10, 99, 100, 1000, 65535, 4294967296]:
        cases.append(f"There are {n} items.")

    # Prompt-shaped strings.
    prompt = "Is the sentiment of this movie review positive or negative?"
    cases.append(f"{prompt}\n\nReview: a gorgeous, witty, seductive movie.\nSentiment:")
    cases.append(f"{prompt}\n\nReview: ")
    cases.append("Review: it 's a hoot .\nSentiment: positive")

    # Real SST-2 sentences in several renderings.
    with open(sst2_path, encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(N_SST2), f)]
    for i, row in enumerate(rows):
        x = row["input"]
        mode = i % 4
        if mode == 0:
            cases.append(f"Review: {x}\nSentiment:")
        elif mode == 1:
            cases.append(f"{prompt}\n\nReview: {x}\nSentiment:")
        elif mode == 2:
            cases.append(x)
        else:
            cases.append(f"<|im_start|>user\n{prompt}\n\n{x}<|im_end|>\n<|im_start|>assistant\n")

    # De-duplicate, keeping first occurrence.
    seen, out = set(), []
    for c in cases:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


# --------------------------------------------------------------------------
# Texts for logprobs.json
# --------------------------------------------------------------------------

LOGPROB_TEXTS = [
    # Sentiment prompt (the scorer's use case).
    "Is the sentiment of this movie review positive or negative?\n\n"
    "Review: a gorgeous, witty, seductive movie.\nSentiment:",
    # ChatML.
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nIs this movie review positive or negative? "
    "\"the acting is wooden and the plot is dull.\"<|im_end|>\n<|im_start|>assistant\n",
    # Plain English sentence.
    "The quick brown fox jumps over the lazy dog.",
    # Short code snippet.
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    # Longer paragraph (~150 tokens).
    "The history of cinema began in the late nineteenth century, when inventors in France, "
    "the United States and Britain competed to project moving pictures onto a screen. Early films "
    "were short, silent and shot in black and white, often showing everyday scenes such as workers "
    "leaving a factory or a train arriving at a station. Within a few decades, however, filmmakers had "
    "developed editing, close-ups and narrative structure, and audiences flocked to theatres to watch "
    "comedies, westerns and melodramas. The arrival of synchronised sound in the late 1920s transformed "
    "the industry again, and colour followed soon after. Today, movies are watched on phones as often "
    "as in cinemas, yet the basic magic remains the same.",
    # Emoji / accents / digits mixture.
    "Café review ⭐⭐⭐⭐: the crème brûlée was 10/10 😍 — would return in 2025!",
]


def log_softmax64(logits):
    """log_softmax over the full vocabulary, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def r(x):
    """Round a logprob for compact JSON (1e-6 is far below Q4 noise)."""
    return round(float(x), 6)


def make_logprobs(llm, label_ids):
    out = []
    for text in LOGPROB_TEXTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        # scores[i] = logits of the token following ids[0..=i]
        lp = log_softmax64(llm.scores[: len(ids), :])
        positions = []
        for i in range(len(ids)):
            row = lp[i]
            top = np.argsort(-row, kind="stable")[:TOP_K]
            want = {}
            if i + 1 < len(ids):
                want[ids[i + 1]] = row[ids[i + 1]]
            if i == len(ids) - 1:
                for t in label_ids:
                    want[t] = row[t]
            positions.append({
                "pos": i,
                "argmax": int(top[0]),
                "top": [[int(t), r(row[t])] for t in top],
                "logprobs_of": {str(int(t)): r(v) for t, v in want.items()},
            })
        out.append({"text": text, "ids": [int(t) for t in ids], "positions": positions})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--sst2", default=SST2_TEST)
    ap.add_argument("--out-dir", default=HERE)
    args = ap.parse_args()

    with open(args.model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    if sha != EXPECTED_SHA256:
        sys.exit(f"model sha256 mismatch: {sha} != {EXPECTED_SHA256}")

    # type_k/type_v = 0 (GGML_TYPE_F32): keep the KV cache in f32. llama.cpp's default f16 cache
    # is a memory optimisation, not the model; it moves SmolLM2's log-probs by up to ~0.2 nats.
    llm = Llama(model_path=args.model, logits_all=True, n_ctx=512, n_threads=2,
                seed=0, verbose=False, type_k=0, type_v=0)

    # ---- tokens.json ----
    texts = tokenizer_cases(args.sst2)
    cases = [{"text": t, "ids": [int(i) for i in llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)]}
             for t in texts]
    with open(os.path.join(args.out_dir, "tokens.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": GENERATOR, "model_sha256": sha, "cases": cases},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"tokens.json: {len(cases)} cases")

    # ---- logprobs.json ----
    label_ids = []
    for lab in (" positive", " negative"):
        label_ids += llm.tokenize(lab.encode("utf-8"), add_bos=False, special=True)
    texts = make_logprobs(llm, label_ids)
    with open(os.path.join(args.out_dir, "logprobs.json"), "w", encoding="utf-8") as f:
        json.dump({
            "generator": f"llama-cpp-python {llama_cpp.__version__}; Llama(logits_all=True, n_ctx=512, "
                         "n_threads=2, type_k=f32, type_v=f32); logprob = float64 log_softmax of full-vocab logits; "
                         "positions[i] = distribution of the token after ids[0..=i]",
            "model_sha256": sha,
            "label_ids": {" positive": label_ids[0], " negative": label_ids[1]},
            "texts": texts,
        }, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"logprobs.json: {len(texts)} texts, {sum(len(t['ids']) for t in texts)} positions")


if __name__ == "__main__":
    main()
