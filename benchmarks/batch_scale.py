"""Server time and memory of the batch pages and API at 1,000 and 10,000 items (generated rows).

    python benchmarks/batch_scale.py [--sizes 1000 10000] [--repeats 15]

A throw-away PostgreSQL database on the local server (`_common.throwaway_database`:
postgresql://postgres@127.0.0.1:5432 or MILS_TEST_PG; dropped at the end), schema by
`worker.store.db.upgrade`, filled with bulk inserts
as the workers would have left it: one batch per size, each item a job (the chelsea photo as
input, stored once) with 6 Step rows, 90 % succeeded, 5 % running, 5 % queued, and a reference
caption per item; then ANALYZE (as autovacuum would).

Requests go through the Flask test client (the app's own time, no network), interleaved across
URLs and sizes after warm-up, `--repeats` each; the baseline of the same run is GET
/static/app.css (no database). Memory: tracemalloc's peak of the Python heap during one request
(the CSV export consumed chunk by chunk, as a client would). Writes benchmarks/results/batch_scale.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import _common  # noqa: E402

PG_DB = "mils_bench_batch_scale"


def fill(url: str, name: str, n: int) -> None:
    from sqlalchemy import insert, select, text

    from worker.core import Settings
    from worker.media import load_image_file
    from worker.media.samples import sample_path
    from worker.store.db import get_engine, open_store
    from worker.store.jobs import store_artifact
    from worker.store.schema import Batch, BatchItem, Job, JobStatus, Step

    Session = open_store(url, auto_upgrade=False)
    settings = Settings(steps=5, top_k=8, candidates=15).to_dict()
    now = datetime.now(timezone.utc)
    with Session.begin() as session:
        artifact = store_artifact(session, load_image_file(sample_path("chelsea")))
        batch = Batch(name=name, task="image-caption", settings=settings, generator="embedded", scorer="embedded",
                      options={}, sources={"submissions": [{"kind": "csv", "name": "generated.csv", "items": n}]})
        session.add(batch)
        session.flush()
        first = (session.scalar(select(Job.id).order_by(Job.id.desc()).limit(1)) or 0) + 1
        jobs, items, steps = [], [], []
        for i in range(n):
            job_id = first + i
            status = JobStatus.SUCCEEDED if i % 20 < 18 else (JobStatus.RUNNING if i % 20 == 18 else JobStatus.QUEUED)
            done = 6 if status == JobStatus.SUCCEEDED else (3 if status == JobStatus.RUNNING else 0)
            created = now - timedelta(seconds=(n - i) * 2)
            jobs.append({"id": job_id, "task": "image-caption", "status": status, "settings": settings,
                         "generator": "embedded", "scorer": "embedded", "model_versions": {}, "options": {},
                         "input_info": {}, "input_sha256": artifact.sha256, "input_name": f"img{i:05d}.png",
                         "created_at": created, "cancel_requested": False, "auto_resumes": 0, "attempts": 0,
                         "result_text": f"A tabby cat number {i} on a wooden table." if done else None,
                         "result_score": 0.3 + (i % 97) / 1000 if done else None})
            items.append({"batch_id": batch.id, "item_key": str(100000 + i), "position": i,
                          "source": f"images/img{i:05d}.png", "references": [f"A cat number {i} on a table."],
                          "job_id": job_id, "queued": True})
            for s in range(done):
                steps.append({"job_id": job_id, "step": s, "started_at": created + timedelta(seconds=s),
                              "finished_at": now - timedelta(seconds=(n - i) % 600 + 6 - s), "best_score": 0.3 + s / 100,
                              "best_text": f"A cat number {i} at step {s}.", "mean_topk": 0.28, "n_candidates": 15,
                              "improved": True, "generation_seconds": 10.0, "scoring_seconds": 0.1})
        for rows, table in ((jobs, Job), (items, BatchItem), (steps, Step)):
            for k in range(0, len(rows), 5000):
                session.execute(insert(table), rows[k:k + 5000])
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(text("SELECT setval(pg_get_serial_sequence('jobs', 'id'), (SELECT max(id) FROM jobs))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


def timed(client, url: str) -> float:
    start = time.perf_counter()
    response = client.get(url)
    body = response.get_data()  # a streamed body is produced here
    response.close()  # ends the request: its database session goes back to the pool
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200 and body, (url, response.status_code, body[:300])
    return elapsed


def peak_kib(client, url: str) -> float:
    tracemalloc.start()
    response = client.get(url)
    for _ in response.response:  # consumed chunk by chunk and dropped
        pass
    response.close()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return round(peak / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    _common.use_home("/tmp/mils-bench-batch-scale")
    info = _common.machine_info()

    with _common.throwaway_database(PG_DB, upgrade=True) as url:
        fill_seconds = {}
        for n in args.sizes:
            start = time.perf_counter()
            fill(url, f"b{n}", n)
            fill_seconds[n] = round(time.perf_counter() - start, 1)

        from web import create_app

        app = create_app({"DATABASE_URL": url, "WTF_CSRF_ENABLED": False})
        client = app.test_client()
        urls = {"baseline /static/app.css": "/static/app.css", "batches list": "/batches",
                "api batches list": "/api/batches"}
        for n in args.sizes:
            deep, left = "", n - 50  # the cursor after item n-50, walked in pages of at most 1,000
            while left:
                take = min(left, 1000)
                with client.get(f"/api/batches/b{n}/items?limit={take}&cursor={deep}") as response:
                    deep = response.get_json()["next_cursor"]
                left -= take
            urls |= {f"batch page {n}": f"/batches/b{n}", f"live panel {n}": f"/batches/b{n}/live",
                     f"api batch {n}": f"/api/batches/b{n}",
                     f"items first 50 {n}": f"/api/batches/b{n}/items?limit=50",
                     f"items last 50 {n}": f"/api/batches/b{n}/items?limit=50&cursor={deep}",
                     f"results csv {n}": f"/batches/b{n}/results.csv",
                     f"results coco {n}": f"/batches/b{n}/results.coco"}
        for url_ in urls.values():
            timed(client, url_)
            timed(client, url_)
        times: dict[str, list[float]] = {label: [] for label in urls}
        for _ in range(args.repeats):
            for label, url_ in urls.items():
                times[label].append(timed(client, url_))
        base = median(times["baseline /static/app.css"])
        rows = {label: {"median_ms": round(median(t), 2), "x_baseline": round(median(t) / base, 1),
                        "peak_heap_kib": peak_kib(client, urls[label])} for label, t in times.items()}
        data = {"machine": info, "sizes": args.sizes, "fill_seconds": fill_seconds, "repeats": args.repeats,
                "requests": rows}
        path = _common.write_results("batch_scale", data)
        print(_common.md_table(["request", "median ms", "x baseline", "peak heap KiB"],
                               [[label, r["median_ms"], r["x_baseline"], r["peak_heap_kib"]] for label, r in rows.items()]))
        print(path)


if __name__ == "__main__":
    main()
