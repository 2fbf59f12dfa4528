"""Scorer of larger_animal_lenient.toml (promptevo's `command` metric): reads one JSON line
{"input", "output", "targets"} per answer on stdin and writes one score per line: 1 when the
answer's first line, lower-cased, without punctuation and a leading article (a, an, the),
names an accepted animal ("The whale." counts for "whale"), else 0."""
import json
import string
import sys

ARTICLES = ("a ", "an ", "the ")


def normalise(text):
    text = text.strip().split("\n")[0].lower()
    text = text.translate(str.maketrans("", "", string.punctuation)).strip()
    for article in ARTICLES:
        if text.startswith(article):
            text = text[len(article):]
    return " ".join(text.split())


for line in sys.stdin:
    if not line.strip():
        continue
    answer = json.loads(line)
    output = normalise(answer["output"])
    hit = any(output == normalise(t) for t in answer["targets"])
    print(1 if hit else 0)
