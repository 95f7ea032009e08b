"""The queue at scale: a batch of thousands of jobs through real workers, with instant fake models.

Real PostgreSQL (a private database, made and dropped by `_common.throwaway_database`), real Redis (db 14 of 127.0.0.1:6379), real `mils worker`
processes; the models are the tests' named fakes (`py:tests.support.fakes:worker_generator` /
`worker_scorer`, no sleep), so what is measured is the service itself: database, broker, workers.

    python benchmarks/queue_scale.py --jobs 10000 --steps 10 --workers 4

1. Solo: one job alone on the idle workers; its time from submission to finish.
2. A batch of `--jobs` items (one manifest line each, the same photo) at the batch default
   (priority low, `--in-flight` jobs on the queue at once); when a quarter of its jobs are done,
   one single job (priority normal) is submitted in the middle of the backlog, and timed.
3. From the record: every step committed exactly once (step rows, and the workers' logs), no
   false interruption or requeue (job events), the Spearman correlation between submission order
   and completion order, throughput, and where a step's time goes.

MILS_STALE_SECONDS is 5 s, far below the queue waits, so a liveness check that took a long queue
for dead workers would show up as interruptions.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path
from statistics import fmean, median

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import _common  # noqa: E402
from _common import machine_info, machine_line, write_results  # noqa: E402

DB = "mils_bench_queue"
URL = ""  # the throw-away database's SQLAlchemy URL, set by main()
BROKER = "redis://127.0.0.1:6379/14"
GENERATOR = "py:tests.support.fakes:worker_generator"
SCORER = "py:tests.support.fakes:worker_scorer"
COMMITTED = re.compile(r"job (\d+) step (\d+) committed")


def sql(query: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(_common.libpq_url(URL)) as conn:
        return conn.execute(query, params).fetchall()


def env(**extra: str) -> dict[str, str]:
    return dict(os.environ, MILS_DATABASE_URL=URL, MILS_BROKER_URL=BROKER, PYTHONPATH=str(ROOT),
                OMP_NUM_THREADS="1", MILS_FAKE_STEP_SECONDS="0", MILS_STALE_SECONDS="5", MILS_REAP_SECONDS="2",
                MILS_HEARTBEAT_SECONDS="1", **extra)


def wait_done(job_ids: list[int] | None, total: int, label: str, timeout: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if job_ids is None:
            done = sql("SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL")[0][0]
        else:
            done = sql("SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL AND id = ANY(%s)", (job_ids,))[0][0]
        if done >= total:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{label}: not done in {timeout} s")


def submit_single(sessions, image: bytes, steps: int) -> tuple[int, float]:
    from worker.kinds import get_kind
    from worker.submission import job_request, submit, task_input

    media, info = task_input(get_kind("image-caption"), data=image, name="probe.png")
    request = job_request("image-caption", media, info, generator=GENERATOR, scorer=SCORER,
                          overrides={"steps": steps, "candidates": 6, "top_k": 5})
    return submit(sessions, request), time.time()


def cpu_seconds(workers: list[subprocess.Popen]) -> dict[str, float]:
    """CPU seconds used so far by the database server, the broker, the workers and this process
    (the submitting client): where a step's time goes."""
    import psutil

    worker_pids = {p.pid for p in workers}
    totals = {"database": 0.0, "broker": 0.0, "workers": 0.0, "client": 0.0}
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            times = proc.cpu_times()
            used = times.user + times.system
            name = proc.info["name"] or ""
            if name.startswith("postgres"):
                totals["database"] += used
            elif name.startswith("redis-server"):
                totals["broker"] += used
            elif proc.info["pid"] in worker_pids or proc.ppid() in worker_pids:
                totals["workers"] += used
            elif proc.info["pid"] == os.getpid():
                totals["client"] += used
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return totals


def finished_at(job_id: int) -> float:
    return float(sql("SELECT extract(epoch FROM finished_at) FROM jobs WHERE id = %s", (job_id,))[0][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    args = parser.parse_args()
    global URL
    with _common.throwaway_database(DB) as URL:
        run(args)


def run(args: argparse.Namespace) -> None:
    from scipy.stats import spearmanr

    os.environ.update(env())
    subprocess.run(["mils", "db", "upgrade"], env=env(), check=True, capture_output=True)
    subprocess.run(["redis-cli", "-n", "14", "flushdb"], check=True, capture_output=True)

    from worker.datasets import open_dataset
    from worker.media.samples import sample_input
    from worker.store.db import open_store
    from worker.batches import submit_batch

    sessions = open_store()
    image, _ = sample_input("chelsea", "image")
    folder = Path(tempfile.mkdtemp(prefix="mils-queue-scale-"))
    (folder / "chelsea.png").write_bytes(image)
    with open(folder / "items.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "path"])
        writer.writerows([i, "chelsea.png"] for i in range(args.jobs))

    logs = [folder / f"worker-{n}.log" for n in range(args.workers)]
    workers = [subprocess.Popen(["mils", "worker", "--name", f"w{n}@bench"], env=env(), stdout=open(log, "w"),
                                stderr=subprocess.STDOUT, cwd=ROOT) for n, log in enumerate(logs)]
    try:
        # Warm-up: every worker loads the fakes and the pool once.
        warm = [submit_single(sessions, image, args.steps)[0] for _ in range(args.workers * 2)]
        wait_done(warm, len(warm), "warm-up", 300)

        solo_id, solo_sent = submit_single(sessions, image, args.steps)
        wait_done([solo_id], 1, "solo job", 300)
        solo_seconds = finished_at(solo_id) - solo_sent

        print(f"submitting a batch of {args.jobs} jobs", flush=True)
        cpu_before = cpu_seconds(workers)
        t0 = time.time()
        report = submit_batch(sessions, "scale", open_dataset(folder / "items.csv", "image"), task="image-caption",
                              generator=GENERATOR, scorer=SCORER,
                              overrides={"steps": args.steps, "candidates": 6, "top_k": 5},
                              max_in_flight=args.in_flight)
        submit_seconds = time.time() - t0
        assert report.added == args.jobs, report
        batch_jobs = [r[0] for r in sql("SELECT bi.job_id FROM batch_items bi ORDER BY bi.position")]

        while True:  # the probe goes in when a quarter of the batch is done
            done = sql("SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL AND id = ANY(%s)", (batch_jobs,))[0][0]
            if done >= args.jobs // 4:
                break
            time.sleep(1)
        probe_id, probe_sent = submit_single(sessions, image, args.steps)
        backlog_at_probe = args.jobs - done
        wait_done([probe_id], 1, "probe job", args.timeout)
        probe_seconds = finished_at(probe_id) - probe_sent
        print(f"probe: {probe_seconds:.1f} s (solo {solo_seconds:.1f} s) with {backlog_at_probe} jobs left", flush=True)

        last_report = time.monotonic()
        while True:
            done = sql("SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL AND id = ANY(%s)", (batch_jobs,))[0][0]
            if done >= args.jobs:
                break
            if time.monotonic() - last_report > 60:
                print(f"{done}/{args.jobs} jobs done after {time.time() - t0:.0f} s", flush=True)
                last_report = time.monotonic()
            if time.time() - t0 > args.timeout:
                raise TimeoutError("the batch did not finish")
            time.sleep(2)
        wall = time.time() - t0
        cpu_after = cpu_seconds(workers)
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(timeout=60)

    # ---------------------------------------------------------------- what the record says
    statuses = dict(sql("SELECT status, count(*) FROM jobs GROUP BY status"))
    per_job = Counter(n for (n,) in sql("SELECT count(*) FROM steps WHERE job_id = ANY(%s) GROUP BY job_id",
                                        (batch_jobs,)))
    commits = Counter()
    for log in logs:
        for match in COMMITTED.finditer(log.read_text(errors="replace")):
            commits[int(match.group(1)), int(match.group(2))] += 1
    step_rows = sql("SELECT count(*) FROM steps")[0][0]
    events = dict(sql("SELECT kind, count(*) FROM job_events GROUP BY kind"))
    order = sql("SELECT bi.position, extract(epoch FROM j.finished_at) FROM batch_items bi "
                "JOIN jobs j ON j.id = bi.job_id ORDER BY bi.position")
    rho = float(spearmanr([p for p, _ in order], [float(f) for _, f in order]).statistic)
    span = sql("SELECT extract(epoch FROM min(s.started_at)), extract(epoch FROM max(s.finished_at)), count(*) "
               "FROM steps s WHERE s.job_id = ANY(%s)", (batch_jobs,))[0]
    throughput = span[2] / float(span[1] - span[0])
    # A step's time, from the step rows of the batch: compute (the fakes: generation + scoring),
    # in the step (started..finished: compute plus the commit), and the gap to the job's next
    # step (commit, broker hop, queue wait, claim, state load).
    rows = sql("SELECT job_id, step, extract(epoch FROM started_at), extract(epoch FROM finished_at), "
               "generation_seconds + scoring_seconds FROM steps WHERE job_id = ANY(%s) ORDER BY job_id, step",
               (batch_jobs[: min(len(batch_jobs), 2000)],))
    rows = [(j, n, float(s), float(f), c) for j, n, s, f, c in rows]
    inside = [f - s for _, _, s, f, _ in rows]
    compute = [c for *_, c in rows]
    gaps = [b[2] - a[3] for a, b in zip(rows, rows[1:]) if a[0] == b[0]]
    db_bytes = sql("SELECT pg_database_size(current_database())")[0][0]

    result = {
        "machine": machine_info(), "date": date.today().isoformat(),
        "command": "python benchmarks/queue_scale.py " + " ".join(sys.argv[1:]),
        "jobs": args.jobs, "steps": args.steps, "workers": args.workers, "in_flight": args.in_flight,
        "statuses": statuses, "steps_per_job": dict(per_job), "step_rows": step_rows,
        "steps_committed_once": all(n == 1 for n in commits.values()) and len(commits) == step_rows,
        "commit_log_lines": sum(commits.values()), "distinct_commits": len(commits),
        "events": events, "false_interruptions": events.get("interrupted", 0) + events.get("requeued", 0),
        "spearman": rho, "solo_seconds": solo_seconds, "probe_seconds": probe_seconds,
        "probe_multiple": probe_seconds / solo_seconds, "backlog_at_probe": backlog_at_probe,
        "submit_seconds": submit_seconds, "wall_seconds": wall, "steps_per_second": throughput,
        "step_median_ms": {"compute": 1000 * median(compute), "in_step": 1000 * median(inside),
                           "between_steps": 1000 * median(gaps)},
        "step_mean_ms": {"compute": 1000 * fmean(compute), "in_step": 1000 * fmean(inside),
                         "between_steps": 1000 * fmean(gaps)},
        "cpu_ms_per_step": {k: 1000 * (cpu_after[k] - cpu_before[k]) / span[2] for k in cpu_after},
        "database_bytes": db_bytes, "database_bytes_per_job": db_bytes / (args.jobs + len(warm) + 2),
    }
    path = write_results(f"queue_scale_{args.jobs}", result)
    print(machine_line(result["machine"]))
    for key, value in result.items():
        if key != "machine":
            print(f"{key}: {value}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
