"""A plain Python client for the server throughput bench (benches/server.rs): the same
`/v1/completions` requests promptevo's server backend sends for label log-probs
(`max_tokens: 1`, `temperature: 0`, `logprobs: K`), from N threads, with only the standard
library (urllib + concurrent.futures).

Usage: python openai_client.py REQUESTS.json
REQUESTS.json: {"url": ".../v1", "model": "...", "prompts": [...], "labels": [...],
                "concurrency": N, "logprobs": K}
Prints one JSON object: {"seconds": wall time of all requests, "n": prompts,
"label_logprobs": per prompt, each label's log-prob (null when outside the top K)}.
"""

import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    url = job["url"].rstrip("/") + "/completions"

    def one(prompt):
        body = json.dumps(
            {
                "model": job["model"],
                "prompt": prompt,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": job["logprobs"],
            }
        ).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            answer = json.load(response)
        top = answer["choices"][0]["logprobs"]["top_logprobs"][0]
        return [top.get(label) for label in job["labels"]]

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=job["concurrency"]) as pool:
        results = list(pool.map(one, job["prompts"]))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "n": len(results), "label_logprobs": results}))


if __name__ == "__main__":
    main()
