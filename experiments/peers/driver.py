#!/usr/bin/env python3
"""Runs one external prompt optimiser (a "peer") for a promptevo benchmark run.

`promptevo bench` writes a job file into the run folder and calls

    target/peers-venv/bin/python experiments/peers/driver.py RUN/peer-job.json

The job gives the peer (capo, evoprompt-ga, opro: promptolution 2.3.0; gepa: gepa 0.1.4), the
task's labels, template, initial prompts and the exact dev / validation / test examples the
benchmark's own arms use, the budget of example evaluations, the seed, and the model: a GGUF
file, served for the run by a llama.cpp server this driver starts on 127.0.0.1 and stops, or
the URL of an OpenAI-compatible server already running. The peer's answer is written to
RUN/peer.json; promptevo then scores it itself on the same test examples.

peer.json: {"status": "ok" | "failed" | "skipped", "reason": why not ok, "best_prompt",
"peer_test_accuracy" (the peer's own score of its answer on the test examples, its own way),
"evals_used" (example evaluations of the downstream model during the search), "candidates",
"search_seconds", "cpu_seconds" and "peak_rss_mb" (of this process and the server it started,
during the search), "settings" (every setting the peer ran with), "errors" (errors the peer
logged and carried on past), "versions"}.

Budget: each (prompt, example) the downstream model is asked to answer counts once (the peers
cache pairs they have seen; those are not asked again and not counted). promptolution has no
budget of its own: the downstream model refuses calls past the budget, which ends the step in
progress (promptolution then returns its population as of the last finished step). gepa's
`max_metric_calls` is the same count.
"""

import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request

PEERS = ("capo", "evoprompt-ga", "opro", "gepa")
# Tokens of a downstream answer: a label word and a little more (the peers extract the label
# from generated text).
ANSWER_TOKENS = 8
# Tokens of a meta-prompt answer (a new instruction, or gepa's reflection).
META_TOKENS = 256
# Seconds to wait for the llama.cpp server to load the model.
SERVER_START_S = 120
# Context of the served model (prompts with few-shot examples and the meta-prompts fit).
SERVER_CONTEXT = 4096


class BudgetExhausted(RuntimeError):
    """The downstream model was asked for more example evaluations than the budget allows."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=600):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class Server:
    """A llama.cpp server on 127.0.0.1 for the run (or an existing server's URL)."""

    def __init__(self, job, log_path):
        self.proc = None
        if job.get("server_url"):
            self.url = job["server_url"].rstrip("/")
            self.settings = {"server": self.url}
            return
        binary = job["llama_server"]
        if not os.path.isfile(binary):
            raise FileNotFoundError(
                f"no llama.cpp server at {binary}; build one (see experiments/peers/README.md)"
            )
        port = free_port()
        threads = str(job.get("threads", 1))
        args = [binary, "-m", job["model"], "--host", "127.0.0.1", "--port", str(port),
                "-c", str(SERVER_CONTEXT), "-t", threads, "-np", "1", "--no-webui"]
        self.settings = {"server": "llama.cpp llama-server (started by the driver)",
                         "server_args": args[1:]}
        self.log = open(log_path, "w")
        env = dict(os.environ)
        lib = os.path.dirname(binary)
        env["LD_LIBRARY_PATH"] = lib + ":" + env.get("LD_LIBRARY_PATH", "")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=die_with_parent)
        self.url = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + SERVER_START_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"llama-server did not answer /health within {SERVER_START_S} s")

    def usage(self):
        """(CPU seconds, peak RSS MB) of the server process so far (0, 0 for a remote one)."""
        if self.proc is None:
            return 0.0, 0.0
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            with open(f"/proc/{self.proc.pid}/status") as f:
                hwm = next(l for l in f if l.startswith("VmHWM:"))
            return cpu, int(hwm.split()[1]) / 1024.0
        except (OSError, StopIteration, IndexError, ValueError):
            return 0.0, 0.0

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Chat:
    """Chat completions from the server, counting downstream example evaluations."""

    def __init__(self, url, seed, budget):
        self.url = url + "/chat/completions"
        self.seed = seed
        self.budget = budget
        self.used = 0

    def complete(self, messages, max_tokens, temperature, seed=None):
        body = {"model": "peer", "messages": messages, "max_tokens": max_tokens,
                "temperature": temperature, "seed": self.seed if seed is None else seed}
        out = post(self.url, body)
        return out["choices"][0]["message"]["content"] or ""

    def charge(self, n):
        if self.used + n > self.budget:
            raise BudgetExhausted(f"budget of {self.budget} example evaluations spent ({self.used} used)")
        self.used += n


def render_input(template, text):
    """The task template with the prompt taken out and the input put in: the text after the
    instruction (for SST-2, "Review: <text>\\nSentiment:")."""
    return template.replace("{prompt}", "").replace("{input}", text).strip()


def first_label(labels, response):
    """The first label that occurs (as a word, case-insensitive) in a response, else None."""
    lowered = [l.lower() for l in labels]
    for word in response.split():
        w = "".join(c for c in word if c.isalnum()).lower()
        if w in lowered:
            return labels[lowered.index(w)]
    return None


def run_promptolution(job, chat, record):
    import numpy as np
    import pandas as pd
    import promptolution
    from promptolution.llms.api_llm import APILLM
    from promptolution.optimizers.capo import CAPO
    from promptolution.optimizers.evoprompt_ga import EvoPromptGA
    from promptolution.optimizers.opro import OPRO
    from promptolution.predictors.first_occurrence_predictor import FirstOccurrencePredictor
    from promptolution.tasks.classification_tasks import ClassificationTask

    record["versions"]["promptolution"] = promptolution.__version__ if hasattr(promptolution, "__version__") else "2.3.0"
    seed = job["seed"]
    random.seed(seed)
    np.random.seed(seed)
    labels = [l.lower() for l in job["labels"]]

    class Downstream(APILLM):
        """promptolution's API model, charging each answered example to the budget."""

        def _get_response(self, prompts, system_prompts):
            if prompts:
                chat.charge(len(prompts))
            return super()._get_response(prompts, system_prompts)

    common = dict(api_url=chat.url.rsplit("/chat/completions", 1)[0], model_id="peer",
                  api_key="none", max_concurrent_calls=1)
    downstream = Downstream(max_tokens=ANSWER_TOKENS,
                            call_kwargs={"temperature": 0.0, "seed": seed}, **common)
    meta = APILLM(max_tokens=META_TOKENS, call_kwargs={"seed": seed}, **common)
    seen = set()

    class Predictor(FirstOccurrencePredictor):
        """The first-occurrence predictor, remembering which prompts it answered with."""

        def predict(self, prompts, xs, system_prompts=None):
            out = super().predict(prompts, xs, system_prompts)
            seen.update([prompts] if isinstance(prompts, str) else prompts)
            return out

    predictor = Predictor(downstream, classes=labels)
    df = pd.DataFrame({"x": [render_input(job["template"], e["input"]) for e in job["dev"]],
                       "y": [e["target"].lower() for e in job["dev"]]})
    peer = job["peer"]
    # As promptolution's own entry point (promptolution.utils.optimize) builds the task for
    # every optimizer: blocks of n_subsamples (30) dev examples.
    strategy = "sequential_block"
    task = ClassificationTask(df, task_description=job["description"], x_column="x", y_column="y",
                              eval_strategy=strategy, seed=seed)
    kinds = {"capo": CAPO, "evoprompt-ga": EvoPromptGA, "opro": OPRO}
    optimizer = kinds[peer](predictor=predictor, task=task, meta_llm=meta,
                            initial_prompts=job["initial_prompts"])
    record["settings"].update({
        "library": "promptolution 2.3.0", "optimizer": kinds[peer].__name__,
        "llm_class": "APILLM (OpenAI-compatible chat completions) at the llama.cpp server",
        "predictor": "FirstOccurrencePredictor (first label word in the answer; else the first label)",
        "task": f"ClassificationTask(eval_strategy={strategy!r} as promptolution.optimize() builds it, n_subsamples=30 (its default block size), seed={seed})",
        "downstream": f"max_tokens {ANSWER_TOKENS}, temperature 0, seed {seed}",
        "meta_llm": f"max_tokens {META_TOKENS}, server default temperature, seed {seed}",
        "input_format": "prompt + newline + the task template without its prompt (as promptolution's predictor joins them)",
        "optimizer_arguments": "library defaults besides predictor, task, meta_llm, initial_prompts",
        "n_steps": "until the budget is spent (a step past it is cut short)",
    })
    errors = record["errors"]

    import logging

    class Collect(logging.Handler):
        def emit(self, rec):
            if rec.levelno >= logging.ERROR:
                msg = rec.getMessage()
                if rec.exc_info and rec.exc_info[1] is not None:
                    msg += f": {type(rec.exc_info[1]).__name__}: {rec.exc_info[1]}"
                errors.append(msg)

    logging.getLogger("promptolution").addHandler(Collect())
    steps = 0
    start = time.time()
    optimizer._pre_optimization_loop()
    while chat.used < chat.budget:
        before = chat.used
        try:
            optimizer.prompts = optimizer._step()
        except BudgetExhausted:
            break
        steps += 1
        if chat.used == before:
            errors.append(f"step {steps} spent no evaluations (every candidate cached); stopped")
            break
    record["search_seconds"] = time.time() - start
    record["settings"]["steps_finished"] = steps
    record["candidates"] = len(seen)
    best = optimizer.prompts[0]
    return best.construct_prompt(), lambda prompt: promptolution_test(job, predictor, prompt, labels)


def promptolution_test(job, predictor, prompt, labels):
    """The peer's own accuracy of its answer on the test examples (its predictor, no budget)."""
    xs = [render_input(job["template"], e["input"]) for e in job["test"]]
    preds, _ = predictor.predict([prompt] * len(xs), xs)
    return sum(p == e["target"].lower() for p, e in zip(preds, job["test"])) / max(1, len(xs))


def run_gepa(job, chat, record):
    import gepa
    from gepa.adapters.default_adapter.default_adapter import DefaultAdapter, EvaluationResult

    labels = job["labels"]

    def task_lm(messages):
        chat.charge(1)
        return chat.complete(list(messages), ANSWER_TOKENS, 0.0)

    def evaluator(data, response):
        got = first_label(labels, response)
        ok = got is not None and got.lower() == data["answer"].lower()
        if ok:
            return EvaluationResult(1.0, f"Correct: the answer is '{data['answer']}'.")
        return EvaluationResult(0.0, f"Incorrect: the correct label is '{data['answer']}' "
                                f"(the answer must contain one of {', '.join(labels)}).")

    def reflection_lm(prompt):
        return chat.complete([{"role": "user", "content": prompt}], META_TOKENS, 1.0, seed=random.randrange(1 << 30))

    def data(split):
        return [{"input": render_input(job["template"], e["input"]), "additional_context": {},
                 "answer": e["target"]} for e in split]

    # gepa keeps its own budget (max_metric_calls, checked between iterations, so its last
    # iteration may run past it); the count here records what it spent, without a cap.
    chat.budget = float("inf")
    random.seed(job["seed"])
    train = data(job["dev"])
    val = data(job["validation"]) if job["validation"] else train
    adapter = DefaultAdapter(model=task_lm, evaluator=evaluator)
    record["versions"]["gepa"] = getattr(gepa, "__version__", "0.1.4")
    record["settings"].update({
        "library": "gepa 0.1.4", "api": "gepa.optimize with DefaultAdapter(model=callable, evaluator=first-label match)",
        "seed_candidate": "the task's first initial prompt (gepa optimises one system prompt)",
        "trainset": f"dev ({len(train)} examples)",
        "valset": f"validation ({len(val)} examples)" if job["validation"] else f"dev (no validation split; {len(val)} examples)",
        "max_metric_calls": job["budget"],
        "task_lm": f"chat completions, system = prompt, user = input in the task template, max_tokens {ANSWER_TOKENS}, temperature 0",
        "reflection_lm": f"the same served model, max_tokens {META_TOKENS}, temperature 1",
        "other_arguments": "library defaults (reflection_minibatch_size, candidate selection, no merge)",
        "seed": job["seed"],
    })
    # gepa saves its state in run_dir after every iteration and resumes from it when it finds
    # one; a state left by an interrupted attempt would be resumed with this attempt's cost,
    # evaluation count and log only. The run is redone from its start instead.
    run_dir = os.path.join(job["out"], "gepa")
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    start = time.time()
    result = gepa.optimize(
        seed_candidate={"instruction": job["initial_prompts"][0]}, trainset=train, valset=val,
        adapter=adapter, reflection_lm=reflection_lm, max_metric_calls=job["budget"],
        seed=job["seed"], display_progress_bar=False, raise_on_exception=True,
        run_dir=run_dir,
    )
    record["search_seconds"] = time.time() - start
    best = result.best_candidate["instruction"]
    record["candidates"] = len(result.candidates)
    record["settings"]["gepa_total_metric_calls"] = getattr(result, "total_metric_calls", None)

    def own_test(prompt):
        out = adapter.evaluate(data(job["test"]), {"instruction": prompt})
        return sum(out.scores) / max(1, len(out.scores))

    return best, own_test


def usage(server):
    me = resource.getrusage(resource.RUSAGE_SELF)
    cpu, rss = server.usage() if server else (0.0, 0.0)
    return {"cpu_seconds": me.ru_utime + me.ru_stime + cpu,
            "peak_rss_mb": me.ru_maxrss / 1024.0 + rss,
            "driver_cpu_seconds": me.ru_utime + me.ru_stime, "driver_peak_rss_mb": me.ru_maxrss / 1024.0,
            "server_cpu_seconds": cpu, "server_peak_rss_mb": rss}


def die_with_parent():
    """Asks Linux to send this process SIGTERM when its parent exits (prctl PR_SET_PDEATHSIG),
    so that a benchmark that is killed takes its driver and the driver's llama.cpp server with
    it instead of leaving them running on the run folder. Elsewhere it does nothing."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main():
    die_with_parent()
    if os.getppid() == 1:  # the benchmark was gone before the request above
        sys.exit(143)
    # SIGTERM ends the driver through the `finally` below, which stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    job_path = sys.argv[1]
    with open(job_path) as f:
        job = json.load(f)
    out = os.path.join(job["out"], "peer.json")
    record = {"status": "ok", "reason": None, "peer": job["peer"], "best_prompt": None,
              "peer_test_accuracy": None, "evals_used": 0, "candidates": 0, "search_seconds": 0.0,
              "cpu_seconds": None, "peak_rss_mb": None, "settings": {"budget": job["budget"], "seed": job["seed"]},
              "errors": [], "versions": {"python": sys.version.split()[0]}}

    def finish():
        with open(out + ".tmp", "w") as f:
            json.dump(record, f, indent=2)
        os.replace(out + ".tmp", out)

    if job["peer"] not in PEERS:
        record.update(status="skipped", reason=f"unknown peer {job['peer']!r}; one of {', '.join(PEERS)}")
        return finish()
    module = "gepa" if job["peer"] == "gepa" else "promptolution"
    try:
        __import__(module)
    except Exception as e:  # noqa: BLE001 - any import failure means: not installed
        record.update(status="skipped", reason=f"cannot import {module} ({type(e).__name__}: {e}); run experiments/peers/install.sh")
        return finish()
    server = None
    try:
        server = Server(job, os.path.join(job["out"], "peer-server.log"))
        record["settings"].update(server.settings)
        chat = Chat(server.url, job["seed"], job["budget"])
        runner = run_gepa if job["peer"] == "gepa" else run_promptolution
        best, own_test = runner(job, chat, record)
        record.update(usage(server))
        record["evals_used"] = chat.used
        record["best_prompt"] = best
        record["candidates"] = record["candidates"] or None
        chat.budget = float("inf")  # the peer's own test score is not charged to the search
        try:
            record["peer_test_accuracy"] = own_test(best)
        except Exception as e:  # noqa: BLE001 - the answer stands without the peer's own score
            record["errors"].append(f"scoring its answer on test: {type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - a peer that fails is a result
        record.update(usage(server))
        record["evals_used"] = chat.used if "chat" in locals() else 0
        record.update(status="failed", reason=f"{type(e).__name__}: {e}")
        record["traceback"] = traceback.format_exc()[-4000:]
    finally:
        if server:
            server.stop()
    finish()


if __name__ == "__main__":
    main()
