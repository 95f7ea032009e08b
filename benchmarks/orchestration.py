"""Orchestration overhead of the durable service against the in-process loop.

The same job (same image, settings and seed, so the same candidates and the same model
work) runs twice on one PostgreSQL database:
  - in-process: `worker.runner.run_in_process`, the loop `mils caption` uses;
  - distributed: `mils submit` to Redis, one step per Celery task in a real `mils worker`.
From the stored step rows: the wall time of steps 1..N (finished_at[k] - finished_at[k-1])
and the gap between steps (started_at[k] - finished_at[k-1]: commit, queue hop, state load).
The worker is warmed with one job first, so model loading is not counted.

    python benchmarks/orchestration.py [--rounds 2] [--sample chelsea]

Needs PostgreSQL on 127.0.0.1:5432 (or MILS_TEST_PG; a throw-away database made and dropped by
`_common.throwaway_database`) and Redis on 127.0.0.1:6379 (uses Redis db 15).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from statistics import fmean

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import _common  # noqa: E402

DB = "mils_bench_orchestration"
BROKER = "redis://127.0.0.1:6379/15"


def step_times(Session, job_id: int) -> tuple[list[float], list[float]]:
    from sqlalchemy import select

    from worker.store.schema import Step

    with Session() as session:
        rows = session.scalars(select(Step).where(Step.job_id == job_id).order_by(Step.step)).all()
    walls = [(b.finished_at - a.finished_at).total_seconds() for a, b in zip(rows, rows[1:])]
    gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in zip(rows, rows[1:])]
    return walls, gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sample", default="chelsea")
    args = parser.parse_args()
    with _common.throwaway_database(DB) as url:
        run(args, url)


def run(args: argparse.Namespace, url: str) -> None:
    env = dict(os.environ, MILS_DATABASE_URL=url, MILS_BROKER_URL=BROKER)
    os.environ.update(MILS_DATABASE_URL=url, MILS_BROKER_URL=BROKER)
    subprocess.run(["mils", "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run(["redis-cli", "-n", "15", "flushdb"], check=True, capture_output=True)

    from worker.runner import run_in_process
    from worker.store.jobs import create_job
    from worker.media import load_image_file
    from worker.media.samples import sample_path
    from worker.kinds import default_settings
    from worker.store.db import open_store
    from worker.store.schema import Job, JobStatus

    Session = open_store(url)
    log_path = Path(tempfile.gettempdir()) / "mils-bench-orchestration-worker.log"
    print(f"worker log: {log_path}", file=sys.stderr)
    log = open(log_path, "w")
    worker = subprocess.Popen(["mils", "worker", "--loglevel", "WARNING"], env=env, stdout=log, stderr=log)

    def submit() -> int:
        out = subprocess.run(["mils", "submit", "--sample", args.sample], env=env, check=True,
                             capture_output=True, text=True)
        return int(out.stdout.strip())

    def wait(job_id: int) -> None:
        while True:
            with Session() as session:
                status = session.get(Job, job_id).status
            if status.finished:
                assert status == JobStatus.SUCCEEDED, status
                return
            time.sleep(0.5)

    def new_inprocess_job() -> int:
        """The same job as `mils submit --sample` stores, but not queued."""
        with Session.begin() as session:
            return create_job(session, task="image-caption", settings=default_settings("image-caption", "embedded"),
                              generator="embedded", scorer="embedded",
                              media=load_image_file(sample_path(args.sample))).id

    try:
        wait(submit())  # warm-up: the worker loads its models
        results = []
        for round_ in range(args.rounds):
            local = new_inprocess_job()
            list(run_in_process(Session, local))
            remote = submit()
            wait(remote)
            results.append((local, remote))
    finally:
        worker.terminate()
        worker.wait(60)

    rows = []
    for local, remote in results:
        lw, lg = step_times(Session, local)
        rw, rg = step_times(Session, remote)
        rows.append({"in_process_job": local, "distributed_job": remote,
                     "in_process_steps_s": sum(lw), "distributed_steps_s": sum(rw),
                     "in_process_gap_s": fmean(lg), "distributed_gap_s": fmean(rg),
                     "step_mean_s": fmean(lw), "steps": len(lw)})
    overhead = fmean(r["distributed_steps_s"] / r["in_process_steps_s"] - 1 for r in rows)
    gap_share = fmean((r["distributed_gap_s"] - r["in_process_gap_s"]) / r["step_mean_s"] for r in rows)
    summary = {"date": str(date.today()), "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
               "command": " ".join(["python", *sys.argv]), "rows": rows,
               "overhead_ratio": overhead, "extra_gap_share_of_step": gap_share}
    out = ROOT / "benchmarks" / "results" / "orchestration.json"
    out.write_text(json.dumps(summary, indent=2))
    print("| round | in-process steps 1..N (s) | distributed (s) | ratio | gap in-process (s) | gap distributed (s) | mean step (s) |")
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows):
        print(f"| {i + 1} | {r['in_process_steps_s']:.2f} | {r['distributed_steps_s']:.2f} | "
              f"{r['distributed_steps_s'] / r['in_process_steps_s']:.3f} | {r['in_process_gap_s']:.3f} | "
              f"{r['distributed_gap_s']:.3f} | {r['step_mean_s']:.2f} |")
    print(f"\noverhead of the distributed run over in-process: {overhead * 100:+.1f}% "
          f"(extra gap between steps: {gap_share * 100:.2f}% of a step)")


if __name__ == "__main__":
    main()
