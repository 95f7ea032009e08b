"""Caption jobs per hour with 1, 2, 4 and 8 jobs in flight against one LLM engine: llama.cpp in this
process (the embedded default; MILS_LLM_SLOTS = jobs in flight) and `mils llm-server` (its own process,
--parallel = jobs in flight, reached through the openai client), in one run.

Each configuration runs the same 8 jobs (8 bundled photos, the embedded default's settings with
`--steps` steps) on the local PostgreSQL, each job's steps one after another through
`worker.runner.run_in_process` (what a worker does), C jobs at a time in threads sharing one scorer
and one generator (what `mils worker --concurrency C` does). Reported: jobs per hour and the ratio to
1 in flight, the engine's tokens per second (completion tokens it reported / wall time), and the
slowest and fastest job (every job progresses). The bootstrap pool is scored once first, unmeasured, so
that no configuration pays for filling the scorer's pool-embedding cache.

    python benchmarks/concurrency.py [--steps 2] [--flights 1 2 4 8] [--threads 2]

Writes benchmarks/results/concurrency.json and prints a markdown table. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

DATABASE = "mils_bench_concurrency"
PHOTOS = ["chelsea", "coffee", "rocket", "camera", "motorcycle", "horse", "coins", "astronaut"]


def start_llm_server(slots: int, threads: int, port: int) -> subprocess.Popen:
    mils = Path(sys.executable).with_name("mils")
    proc = subprocess.Popen([str(mils), "llm-server", "--port", str(port), "--parallel", str(slots), "--threads",
                             str(threads), "--reproducible"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("llm-server did not start")


def run_jobs(url: str, generator, scorer, flights: int, steps: int) -> dict:
    from worker.kinds import job_settings
    from worker.media import load_image_file
    from worker.media.samples import sample_path
    from worker.runner import JobModels, run_in_process
    from worker.store.db import open_store
    from worker.store.jobs import create_job

    sessions = open_store(url)
    settings = job_settings("image-caption", "embedded", "embedded", steps=steps)
    job_ids = []
    with sessions.begin() as session:
        for name in PHOTOS:
            job_ids.append(create_job(session, task="image-caption", settings=settings, generator="embedded",
                                      scorer="embedded", media=load_image_file(sample_path(name))).id)
    models = JobModels(generator, scorer)
    before = dict(generator.usage)
    started = time.perf_counter()

    def one(job_id: int) -> float:
        for _ in run_in_process(sessions, job_id, lambda *_: models):
            pass
        return time.perf_counter() - started

    with ThreadPoolExecutor(flights) as pool:
        finished = list(pool.map(one, job_ids))
    wall = time.perf_counter() - started
    tokens = generator.usage["completion_tokens"] - before.get("completion_tokens", 0)
    return {"jobs": len(job_ids), "wall_seconds": round(wall, 1), "jobs_per_hour": round(len(job_ids) * 3600 / wall, 1),
            "completion_tokens": tokens, "engine_tokens_per_second": round(tokens / wall, 1),
            "first_job_done_seconds": round(min(finished), 1), "last_job_done_seconds": round(max(finished), 1)}


def warm_up(scorer) -> None:
    """Score the bootstrap pool once before any measurement: it fills the scorer's on-disk
    pool-embedding cache, which would otherwise slow down whichever configuration runs first."""
    from worker.kinds import TASK_KINDS, job_settings
    from worker.kinds.base import JobInput
    from worker.media import load_image_file
    from worker.media.samples import sample_path

    kind = TASK_KINDS["image-caption"]
    media = load_image_file(sample_path("chelsea"))
    job = JobInput(data=media.data, name="chelsea.png", options={}, settings=job_settings("image-caption", "embedded", "embedded"))
    scorer.score_pool(scorer.encode_sample(kind.decode(job)), kind.initial_pool(job))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/mils-bench-concurrency")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--flights", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="LLM engine threads")
    parser.add_argument("--port", type=int, default=18123)
    parser.add_argument("--out", default="concurrency", help="results file name (no extension)")
    parser.add_argument("--engines", nargs="*", default=["in-process", "llm-server"],
                        help="a subset reruns those engines and keeps the other rows of the results file")
    args = parser.parse_args()

    home = _common.use_home(args.home)
    _common.quiet_transformers()
    os.environ["MILS_LLM_THREADS"] = str(args.threads)
    from worker.models import load_scorer
    from worker.models.chat import llamacpp_generator, openai_generator
    from worker.models.embedded_llm import EMBEDDED_SAMPLING, embedded_gguf
    from worker.runner import serialized

    info = _common.machine_info()
    scorer = serialized(load_scorer("embedded"))  # shared by the threads, as in a worker
    gguf = embedded_gguf()
    warm_up(scorer)
    previous = _common.RESULTS_DIR / f"{args.out}.json"
    kept = [r for r in json.loads(previous.read_text()).get("rows", []) if r["engine"] not in args.engines] \
        if previous.exists() else []
    rows = []
    for engine in args.engines:
        for flights in args.flights:
            server = None
            if engine == "in-process":
                os.environ["MILS_LLM_SLOTS"] = str(flights)
                generator = llamacpp_generator(gguf, name="embedded", version="bench", extra=EMBEDDED_SAMPLING)
            else:
                server = start_llm_server(flights, args.threads, args.port)
                generator = openai_generator(f"openai:embedded@http://127.0.0.1:{args.port}/v1")
                generator.extra = dict(EMBEDDED_SAMPLING)  # the same sampling as in process
            try:
                with _common.throwaway_database(DATABASE, upgrade=True) as url:  # a new one per configuration
                    row = {"engine": engine, "in_flight": flights,
                           **run_jobs(url, generator, scorer, flights, args.steps)}
            finally:
                if server is not None:
                    server.kill()
                    server.wait()
                del generator
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
            _common.write_results(args.out, {"benchmark": "concurrency", "machine": info, "rows": kept + rows})
    rows = kept + rows
    for row in rows:
        one = next(r for r in rows if r["engine"] == row["engine"] and r["in_flight"] == min(args.flights))
        row["ratio_to_1_in_flight"] = round(row["jobs_per_hour"] / one["jobs_per_hour"], 2)
    path = _common.write_results(args.out, {"benchmark": "concurrency", "machine": info, "steps": args.steps,
                                                 "photos": PHOTOS, "rows": rows, "mils_home": str(home)})
    print(f"Machine: {_common.machine_line(info)}\n\nCommand: `{info['command']}`\n")
    print(_common.md_table(
        ["engine", "jobs in flight", "jobs per hour", "vs 1 in flight", "engine tokens/s", "first job done s",
         "last job done s"],
        [[r["engine"], r["in_flight"], f"{r['jobs_per_hour']:.0f}", f"{r['ratio_to_1_in_flight']:.2f}x",
          f"{r['engine_tokens_per_second']:.1f}", f"{r['first_job_done_seconds']:.0f}", f"{r['last_job_done_seconds']:.0f}"]
         for r in rows]))
    print(f"\nResults: {path}")


if __name__ == "__main__":
    main()
