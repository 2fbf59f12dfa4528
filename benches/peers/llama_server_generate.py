#!/usr/bin/env python3
"""Generation peer: greedy answers from llama.cpp's own llama-server, many requests in flight.

Reads a JSON job on stdin:
  {"prompts": [full prompt text, ...], "max_new_tokens": N, "stop": [...], "warmup": "text"}
starts `llama-server` (the path given) on 127.0.0.1 with --parallel SLOTS slots, sends one warm-up
request (untimed), then every prompt to /completion with SLOTS requests in flight (greedy:
temperature 0, top_k 1; cache_prompt on, so each slot reuses the KV cache of the prompt prefix
its previous request shared: llama.cpp's own prefix reuse), and prints one JSON object: engine,
answers, tokens generated (the server's tokens_predicted), prompt tokens evaluated (after its
prefix reuse), seconds (first request sent to last answer), and the answers in prompt order. The
server is stopped before the script exits. Standard library only.

  python3 llama_server_generate.py --server PATH --model M.gguf [--slots 16] [--threads 2] < job.json
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=600):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser(description="llama-server generation peer")
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx-per-slot", type=int, default=512)
    ap.add_argument("--label", default="llama-server")
    args = ap.parse_args()
    job = json.load(sys.stdin)
    port = free_port()
    cmd = [args.server, "-m", args.model, "--host", "127.0.0.1", "--port", str(port),
           "-t", str(args.threads), "-tb", str(args.threads), "-np", str(args.slots),
           "-c", str(args.slots * args.ctx_per_slot), "--no-webui", "--log-disable"]
    log = open(os.devnull, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(1200):  # up to 120 s to load
            if proc.poll() is not None:
                sys.exit(f"llama-server exited with {proc.returncode} before it was ready: {' '.join(cmd)}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.1)
        else:
            sys.exit("llama-server did not become ready in 120 s")

        def ask(prompt):
            return post(base + "/completion", {
                "prompt": prompt, "n_predict": job["max_new_tokens"], "stop": job["stop"],
                "temperature": 0.0, "top_k": 1, "cache_prompt": True, "seed": 0,
            })

        ask(job.get("warmup", "Hello"))
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.slots) as pool:
            results = list(pool.map(ask, job["prompts"]))
        secs = time.perf_counter() - t0
        print(json.dumps({
            "engine": f"{args.label}, {args.slots} slots, cache_prompt, {args.threads} threads",
            "answers": len(results),
            "tokens_generated": sum(r.get("tokens_predicted", 0) for r in results),
            "prompt_tokens_evaluated": sum(r.get("timings", {}).get("prompt_n", 0) for r in results),
            "seconds": secs,
            "outputs": [r.get("content", "") for r in results],
        }))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
