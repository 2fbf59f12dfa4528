"""Derives larger_animal_json/ from larger_animal/: the same inputs ("a, b"), each target
rewritten as the JSON object {"larger": <target>, "smaller": <the other animal>}.
Run from experiments/data: python3 derive_larger_animal_json.py"""
import json

for split in ["train", "dev", "test"]:
    out = []
    with open(f"larger_animal/{split}.jsonl") as f:
        for line in f:
            e = json.loads(line)
            a, b = [x.strip() for x in e["input"].split(",")]
            smaller = b if e["target"] == a else a
            target = json.dumps({"larger": e["target"], "smaller": smaller})
            out.append(json.dumps({"input": e["input"], "target": target, "targets": [target]}))
    with open(f"larger_animal_json/{split}.jsonl", "w") as f:
        f.write("\n".join(out) + "\n")
