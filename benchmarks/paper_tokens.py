"""What an image costs at the paper's settings (K=50, N=50, 10 steps, temperature 0.5, top_p 0.9,
all N asked for in one request as the reference code does), counted on the embedded LLM served by
`mils llm-server`, and the projection to images per hour on one GPU.

    python benchmarks/paper_tokens.py [--samples chelsea coffee astronaut] [--port 8093]
        [--tokens-per-second 2179 --rate-source "..."]

A `mils llm-server --parallel 1 --reproducible` process serves the embedded GGUF (Qwen2.5-Coder-0.5B);
each sample photo is captioned by `mils caption --llm openai:embedded@...` with the paper's
settings and the embedded scorer, one after the other, in a fresh MILS_HOME. The tokens are the
usage llama.cpp reported for each request, as the store keeps them per step (`mils status --json`,
"cost"); seconds are this machine's and say nothing about a GPU.

The projection: an engine that decodes R answer tokens per second over many requests at once
serves R * 3600 / (answer tokens per image) images an hour. Answer tokens dominate: a GPU reads a
prompt about 10-100x faster than it writes, so prompt tokens are left out of that bound and given
beside it. Tokens are counted with Qwen2.5's tokenizer; Llama-3's differs by a few per cent on
English text. Writes benchmarks/results/paper_tokens.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

MILS = str(Path(sys.executable).with_name("mils"))
PAPER = ["--steps", "10", "--candidates", "50", "--top-k", "50", "--temperature", "0.5", "--top-p", "0.9",
         "--prompts-per-step", "1"]


def _wait_for_server(port: int, server: subprocess.Popen, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"mils llm-server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit("mils llm-server did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", nargs="+", default=["chelsea", "coffee", "astronaut"])
    parser.add_argument("--home", default="/tmp/mils-paper-tokens")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--tokens-per-second", type=float, nargs="*", default=[],
                        help="engines' answer tokens per second to project with (each with a --rate-source)")
    parser.add_argument("--rate-source", nargs="*", default=[], help="where each rate comes from")
    parser.add_argument("--out", default="paper_tokens")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: report the succeeded jobs already in --home (a run cut short)")
    args = parser.parse_args()
    if args.report_only:
        env = dict(os.environ, MILS_HOME=args.home)
        jobs = []
        for job_id in range(1, 1000):
            status = _status(job_id, env)
            if status is None:
                break
            if status["status"] == "succeeded":
                jobs.append(_job_figures(status, status["input_name"], wall=None))
        return _report(args, jobs)
    home = _common.use_home(args.home)
    env = dict(os.environ, MILS_HOME=str(home))
    server = subprocess.Popen([MILS, "llm-server", "--port", str(args.port),
                               "--parallel", "1", "--reproducible"], env=env, start_new_session=True)
    jobs = []
    try:
        _wait_for_server(args.port, server)
        for sample in args.samples:
            started = time.perf_counter()
            out = subprocess.run([MILS, "caption", "--sample", sample, *PAPER,
                                  "--llm", f"openai:embedded@http://127.0.0.1:{args.port}/v1", "--json"],
                                 env=env, check=True, capture_output=True, text=True).stdout
            wall = time.perf_counter() - started
            job_id = json.loads(out)["job_id"]
            jobs.append(_job_figures(_status(job_id, env), sample, wall))
            cost = jobs[-1]
            print(f"{sample}: {cost['llm_requests']} requests, {cost['prompt_tokens']} + {cost['completion_tokens']} "
                  f"tokens, LLM {cost['llm_seconds']:.0f} s, scoring {cost['scoring_seconds']:.1f} s", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    _report(args, jobs)


def _status(job_id: int, env: dict) -> dict | None:
    """`mils status JOB --json` (the job's cost included), None when there is no such job."""
    done = subprocess.run([MILS, "status", str(job_id), "--json"], env=env, capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _job_figures(status: dict, sample: str, wall: float | None) -> dict:
    return {"sample": sample, "job": status["id"], "wall_seconds": round(wall, 1) if wall is not None else None,
            "steps_done": status["steps_done"], "best": status["best_text"], "best_score": status["best_score"],
            **status["cost"]}


def _report(args: argparse.Namespace, jobs: list[dict]) -> None:
    n = len(jobs)
    per_image = {key: sum(job[key] for job in jobs) / n
                 for key in ("llm_requests", "prompt_tokens", "completion_tokens", "llm_seconds", "scoring_seconds",
                             "rejected_lines")}
    projections = [{"answer_tokens_per_second": rate, "source": source,
                    "images_per_hour": round(rate * 3600 / per_image["completion_tokens"], 1)}
                   for rate, source in zip(args.tokens_per_second, args.rate_source, strict=True)]
    data = {"machine": _common.machine_info(), "settings": " ".join(PAPER), "llm": "embedded GGUF via mils llm-server "
            "(--parallel 1 --reproducible)", "scorer": "embedded", "jobs": jobs,
            "per_image": {k: round(v, 1) for k, v in per_image.items()}, "projections": projections}
    path = _common.write_results(args.out, data)
    print(json.dumps(data["per_image"]), json.dumps(projections), f"-> {path}")


if __name__ == "__main__":
    main()
