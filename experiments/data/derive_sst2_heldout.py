"""Derives sst2_heldout/ from sst2/: larger dev and validation splits for SST-2 tasks, taken from
the 1,321 SST-2 test reviews that test@500 never scores (sst2/test.jsonl is already shuffled
with seed 0, so its rows 500..1820 are a random sample of it, disjoint from rows 0..499).
  test.jsonl       = sst2/test.jsonl rows 0..499    (exactly what test@500 scores)
  dev.jsonl        = sst2/test.jsonl rows 500..1159 (660 reviews)
  validation.jsonl = sst2/test.jsonl rows 1160..1820 (661 reviews)
train stays sst2/train.jsonl (597). Run from experiments/data: python3 derive_sst2_heldout.py"""

with open("sst2/test.jsonl") as f:
    rows = f.readlines()
assert len(rows) == 1821, len(rows)
for name, part in [("test", rows[:500]), ("dev", rows[500:1160]), ("validation", rows[1160:])]:
    with open(f"sst2_heldout/{name}.jsonl", "w") as f:
        f.writelines(part)
