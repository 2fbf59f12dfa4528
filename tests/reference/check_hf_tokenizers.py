#!/usr/bin/env python3
"""Cross-check tokens.json against HuggingFace `tokenizers`, rebuilt from the GGUF vocab/merges.

Pre-tokenizer = Digits(individual_digits) + ByteLevel (GPT-2 regex), i.e. the SmolLM2
tokenizer.json recipe; control tokens (token_type 3) are added as special tokens.
Usage: pip install tokenizers gguf; python3 tests/reference/check_hf_tokenizers.py
Exit status 0 iff every case matches exactly.
"""
import json
import os

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
reader = gguf.GGUFReader(os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))


def field(name):
    f = reader.fields[name]
    return [f.parts[i] for i in f.data]


toks = [bytes(p).decode("utf-8") for p in field("tokenizer.ggml.tokens")]
merges = [tuple(bytes(p).decode("utf-8").split(" ", 1)) for p in field("tokenizer.ggml.merges")]
ttype = [int(p[0]) for p in field("tokenizer.ggml.token_type")]

tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(toks)}, merges=merges))
tk.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Digits(individual_digits=True),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
])
tk.decoder = decoders.ByteLevel()
tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                       for t, ty in zip(toks, ttype) if ty == 3])

cases = json.load(open(os.path.join(ROOT, "tests", "reference", "tokens.json"), encoding="utf-8"))["cases"]
bad = 0
for c in cases:
    hf = tk.encode(c["text"], add_special_tokens=False).ids
    if hf != c["ids"]:
        bad += 1
        print("MISMATCH", repr(c["text"]), c["ids"], hf)
print(f"{bad} mismatches / {len(cases)} cases")
raise SystemExit(1 if bad else 0)
