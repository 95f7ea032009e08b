"""Server time of the web pages and the JSON API, and paging/streaming of a 100,000-candidate history.

    python benchmarks/web_pages.py [--home /tmp/mils-bench] [--repeats 30] [--profile] [--no-pg]

Two databases, filled with the same data: a throw-away PostgreSQL database on the local server
(postgresql://postgres@127.0.0.1:5432 or MILS_TEST_PG; `_common.throwaway_database`, dropped at the
end) and a SQLite file in
HOME/web-pages. Schema by `worker.store.db.upgrade`; rows written directly through the ORM (bulk
inserts), as the worker would have left them after finished jobs:

  A     a job of the paper's shape: 10 steps of 50 candidates, K=50, after a step 0 that holds the whole
        5,000-caption image pool (what a default job stores at its bootstrap): 5,500 candidates
  A200  the same with a 200-candidate step 0 (2 + 10 x 50 = 700 candidates)
  B     100,000 candidates: step 0 = the pool, then 95 steps of 1,000, K=50
  C     a small finished job (6 step rows, no candidates) whose input is a 22.5 MB PNG of noise
  + 60 small finished jobs like C with the chelsea input, so the jobs list shows a full page.

Every job but C has the real chelsea photo as input (`load_image_file(sample_path('chelsea'))`,
stored once as an artifact), Step rows, TopEntry rows (the top K after every step), candidate ranks,
result_text/result_score and lifecycle events. Candidate texts are pool captions extended with a
fragment of another one (10-15 words, unique per job). Scores are seeded random numbers (the pool
around 0.20, later steps better). PostgreSQL gets an ANALYZE after the load (as autovacuum would);
SQLite gets none (the app runs none).

1. Requests (Flask test client on `create_app`, so "server time" is the app's own time, no network):
   each URL gets warm-up requests, then `--repeats` timed requests, interleaved across URLs and
   databases. Baseline in the same run: GET /static/app.css (no database).
2. Paging: /api/jobs/B/candidates?limit=1000 walked through all 100 pages by next_cursor for the
   sorts `step` and `-score` (checks: 100,000 distinct texts, in order); then page 1, page 50 and
   the last page timed again (`--page-repeats`, interleaved) with the cursors of the walk; the job
   page's own history fragment (50 rows) first vs after row 99,000 (the walk's last cursor); and the
   SQL alone: `worker.store.queries.candidates_page(limit=50)` first vs deep, and `count_candidates`, which
   every history request also runs; and the same SQL with a redundant bound on the first sort column
   (`bounded_page`, a possible fix, checked to return the same rows).
3. Memory (Python heap by tracemalloc; and the process's peak RSS growth, measured by resetting
   VmHWM through /proc/self/clear_refs): one 1,000-row page, the whole history streamed as CSV and
   as JSON (consumed chunk by chunk and dropped), against `list(history(...))` (all 100,000 rows
   held at once: what not streaming would cost) and the size of the whole CSV; and job A's CSV
   (5,500 rows), to show the streaming peak does not grow with the history.

Writes benchmarks/results/web_pages.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import ctypes
import gc
import io
import math
import os
import pstats
import random
import sys
import time
import tracemalloc
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The repository root too: `web` is imported from the checkout even where an older editable
# install only maps `worker` and `migrations`.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import _common  # noqa: E402

PG_DB = "mils_bench_web_pages"
TARGET_MS = 300.0
CONNECTORS = ["next to", "with", "near", "beside", "behind", "in front of", "under", "and", "while", "across from"]


# --------------------------------------------------------------------------- the data


def make_plan(seed: int = 0) -> dict:
    """The jobs as plain data (the same rows go into both databases)."""
    from worker.core import normalize
    from worker.kinds import TASK_KINDS

    rng = random.Random(seed)
    pool = []
    seen = set()
    for text in TASK_KINDS["image-caption"].pool:
        key = normalize(text)
        if key and key not in seen:
            seen.add(key)
            pool.append(text)

    def new_texts(n: int, taken: set[str]) -> list[str]:
        out = []
        while len(out) < n:
            a, b = rng.choice(pool).rstrip("."), rng.choice(pool).rstrip(".").split()
            k = rng.randint(3, 6)
            frag = " ".join(b[:k])
            text = f"{a} {rng.choice(CONNECTORS)} {frag[0].lower() + frag[1:]}."
            key = normalize(text)
            if key not in taken:
                taken.add(key)
                out.append(text)
        return out

    def job(name: str, pool_size: int, steps: int, per_step: int, top_k: int) -> dict:
        taken = {normalize(t) for t in pool[:pool_size]}
        step_texts = [pool[:pool_size]] + [new_texts(per_step, taken) for _ in range(steps)]
        return {"name": name, "steps": steps, "per_step": per_step, "top_k": top_k, "step_texts": step_texts,
                # the pool around 0.20; later steps better, levelling off (new bests now and then)
                "scores": [[max(0.01, rng.gauss(0.20 + 0.15 * (1 - math.exp(-s / 5)), 0.05)) for _ in texts]
                           for s, texts in enumerate(step_texts)]}

    return {"A": job("A", 5000, 10, 50, 50), "A200": job("A200", 200, 10, 50, 50),
            "B": job("B", 5000, 95, 1000, 50)}


def fill(url: str, plan: dict, media, big_media, n_small: int = 60) -> dict[str, int]:
    """Store `n_small` small finished jobs, the planned jobs, and job C: a small job whose input is
    `big_media`; returns name -> job id."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import insert, text

    from worker.core import Settings, normalize
    from worker.store.jobs import add_event, create_job
    from worker.store.db import get_engine, open_store
    from worker.store.schema import Candidate, JobStatus, Step, TopEntry

    Session = open_store(url, auto_upgrade=False)
    t0 = datetime(2026, 11, 27, 0, 0, tzinfo=timezone.utc)
    ids: dict[str, int] = {}
    next_id = 1
    with Session.begin() as session:
        for i in range(n_small + 1):
            job = create_job(session, task="image-caption", settings=Settings(steps=5, top_k=8, candidates=15),
                             generator="embedded", scorer="embedded", media=media if i < n_small else big_media)
            if i == n_small:
                ids["C"] = job.id
            job.created_at = job.started_at = t0 + timedelta(minutes=i)
            for s in range(6):
                session.add(Step(job_id=job.id, step=s, started_at=job.created_at + timedelta(seconds=13 * s),
                                 finished_at=job.created_at + timedelta(seconds=13 * s + 12), best_score=0.3 + 0.01 * s,
                                 best_text=f"A small job's caption number {i} at step {s}.", mean_topk=0.25,
                                 n_candidates=15, improved=True))
            job.status, job.finished_at = JobStatus.SUCCEEDED, job.created_at + timedelta(seconds=80)
            job.result_text, job.result_score = f"A small job's caption number {i} at step 5.", 0.35
            add_event(session, job, "running", "step 0")
            add_event(session, job, "succeeded")
        for name, spec in plan.items():
            job = create_job(session, task="image-caption",
                             settings=Settings(steps=spec["steps"], top_k=spec["top_k"], candidates=spec["per_step"]),
                             generator="embedded", scorer="embedded", media=media)
            start = t0 + timedelta(hours=2)
            job.created_at, job.started_at = start, start
            job.model_versions = {"generator": {"name": "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M", "version": "sha256:0f1e"},
                                  "scorer": {"name": "recogniser", "version": "skimage+sklearn"}}
            add_event(session, job, "running", "step 0")
            cand_rows, top_rows, step_rows = [], [], []
            top: list[tuple[float, int, int, str]] = []  # (score, order, id, text)
            best = None
            for s, (texts, scores) in enumerate(zip(spec["step_texts"], spec["scores"])):
                new = []
                for t, sc in zip(texts, scores):
                    cand_rows.append({"id": next_id, "job_id": job.id, "step": s, "text": t, "text_key": normalize(t),
                                      "score": sc, "rank": None})
                    new.append((sc, next_id, next_id, t))
                    next_id += 1
                top = sorted(top + new, key=lambda x: (-x[0], x[1]))[:spec["top_k"]]
                first_new = len(cand_rows) - len(texts)
                for rank, (_sc, _o, cid, _t) in enumerate(top, 1):
                    top_rows.append({"job_id": job.id, "step": s, "rank": rank, "candidate_id": cid})
                    if cid >= cand_rows[first_new]["id"]:
                        cand_rows[first_new + cid - cand_rows[first_new]["id"]]["rank"] = rank
                improved = best is None or top[0][0] > best
                best = top[0][0]
                begun = start + timedelta(seconds=13 * s)
                step_rows.append({"job_id": job.id, "step": s, "started_at": begun,
                                  "finished_at": begun + timedelta(seconds=12.5), "best_score": top[0][0],
                                  "best_text": top[0][3], "mean_topk": sum(x[0] for x in top) / len(top),
                                  "n_candidates": len(texts), "improved": improved,
                                  "generation_seconds": 0.0 if s == 0 else 12.4, "scoring_seconds": 0.05})
            for i in range(0, len(cand_rows), 5000):
                session.execute(insert(Candidate), cand_rows[i:i + 5000])
            session.execute(insert(TopEntry), top_rows)
            session.execute(insert(Step), step_rows)
            job.status, job.finished_at = JobStatus.SUCCEEDED, start + timedelta(seconds=13 * (spec["steps"] + 1))
            job.result_text, job.result_score = top[0][3], top[0][0]
            add_event(session, job, "succeeded")
            ids[name] = job.id
    engine = get_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # explicit ids: move the sequence past them, as real inserts would
            conn.execute(text("SELECT setval(pg_get_serial_sequence('candidates', 'id'), (SELECT max(id) FROM candidates))"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))  # what autovacuum does shortly after a bulk load
    return ids


# --------------------------------------------------------------------------- measuring


def noise_png(width: int, height: int):
    """A seeded random RGB picture as PNG: incompressible, so its file is about width*height*3 bytes."""
    from PIL import Image

    from worker.media import image_media

    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), random.Random(1).randbytes(width * height * 3)).save(
        buf, format="PNG", compress_level=1)
    return image_media(buf.getvalue(), "big-noise.png")


def get(client, url: str) -> tuple[float, int]:
    t = time.perf_counter()
    response = client.get(url)
    body = response.get_data()
    dt = time.perf_counter() - t
    assert response.status_code == 200, (url, response.status_code, body[:300])
    return dt, len(body)


def p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def walk(client, job_id: int, sort: str, limit: int = 1000) -> dict:
    """All pages by next_cursor: per-page times, the cursor that opens each page, and checks."""
    import json

    cursors, times, texts, keys = [None], [], set(), []
    n = 0
    while True:
        cursor = cursors[-1]
        url = f"/api/jobs/{job_id}/candidates?limit={limit}&sort={sort}" + (f"&cursor={cursor}" if cursor else "")
        t = time.perf_counter()
        response = client.get(url)
        body = json.loads(response.get_data())
        times.append(time.perf_counter() - t)
        assert response.status_code == 200, body
        for c in body["candidates"]:
            texts.add(c["text"])
            keys.append((c["step"], -c["score"]) if sort == "step" else (-c["score"],))
        n += len(body["candidates"])
        if body["next_cursor"] is None:
            break
        cursors.append(body["next_cursor"])
    return {"cursors": cursors, "times": times, "rows": n, "distinct_texts": len(texts),
            "in_order": all(a <= b for a, b in zip(keys, keys[1:])), "total": body["total"]}


def _rss_kib() -> tuple[int, int]:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                fields[line.split(":")[0]] = int(line.split()[1])
    return fields["VmRSS"], fields["VmHWM"]


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def consume(client, url: str) -> tuple[int, int, int]:
    """Stream a response chunk by chunk, keeping nothing: (bytes, newlines, chunks)."""
    response = client.get(url, buffered=False)
    assert response.status_code == 200, url
    size = lines = chunks = 0
    try:
        for chunk in response.iter_encoded():
            size += len(chunk)
            lines += chunk.count(b"\n")
            chunks += 1
    finally:
        response.close()
    return size, lines, chunks


def bounded_page(session, job_id: int, sort: str, cursor: str | None, limit: int) -> list:
    """`candidates_page`'s SQL with one more, redundant, condition: the first sort column bounded by
    the cursor's value (<= for a descending column, >= for an ascending one), which an index can use;
    the rows are the same (checked on every call against candidates_page)."""
    from sqlalchemy import and_

    from worker.store.queries import CANDIDATE_SORTS, _after, _candidate_query, candidates_page, decode_cursor

    order = CANDIDATE_SORTS[sort]
    query = _candidate_query(job_id, None, False, None)
    if cursor:
        values = decode_cursor(cursor, len(order))
        column, descending = order[0]
        query = query.where(and_(column <= values[0] if descending else column >= values[0], _after(order, values)))
    query = query.order_by(*(col.desc() if desc else col.asc() for col, desc in order)).limit(limit + 1)
    rows = session.execute(query).all()[:limit]
    key = (str(session.get_bind().url), sort, cursor)
    if key not in _bounded_checked:
        expected = candidates_page(session, job_id, sort=sort, cursor=cursor, limit=limit).items
        assert [(r.step, r.score, r.text) for r in rows] == [(c["step"], c["score"], c["text"]) for c in expected]
        _bounded_checked[key] = True
    return rows


_bounded_checked: dict = {}


def _in_session(Session, fn):
    with Session() as session:
        return fn(session)


def _malloc_trim() -> None:
    """Give the C heap's free memory back to the system, so RSS growth is growth, not reuse."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def measure_memory(fn) -> dict:
    """Run fn twice: once for peak RSS growth (no tracemalloc, also timed), once under tracemalloc."""
    gc.collect()
    _malloc_trim()
    hwm_ok = _reset_hwm()
    rss0, _ = _rss_kib()
    t = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t
    _, hwm = _rss_kib()
    del result
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": seconds, "tracemalloc_peak_bytes": peak - base,
            "rss_peak_growth_bytes": (hwm - rss0) * 1024 if hwm_ok else None, "result": result}


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=_common.DEFAULT_HOME, help="base MILS_HOME; this run uses HOME/web-pages")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--page-repeats", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="cProfile the job page (always done when it misses 300 ms)")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--out", default="web_pages")
    args = parser.parse_args()

    home = _common.use_home(Path(args.home) / "web-pages")
    os.environ.pop("MILS_DATABASE_URL", None)
    info = _common.machine_info()
    info["mils_home"] = str(home)
    import flask
    import sqlalchemy
    from importlib.metadata import version

    info.update(flask=version("flask"), sqlalchemy=sqlalchemy.__version__, werkzeug=version("werkzeug"))
    del flask

    from web import create_app
    from worker.media import load_image_file
    from worker.media.samples import sample_path
    from worker.store.db import forget_engines, open_store, upgrade

    sqlite_path = home / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(sqlite_path) + suffix).unlink(missing_ok=True)
    dbs = {"sqlite": f"sqlite:///{sqlite_path}"}
    databases = contextlib.ExitStack()  # the throw-away PostgreSQL database, dropped in the finally below
    if not args.no_pg:
        import psycopg

        pg_url = databases.enter_context(_common.throwaway_database(PG_DB))
        with psycopg.connect(_common.libpq_url(pg_url)) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        dbs = {"postgresql": pg_url, **dbs}

    out_lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        out_lines.append(line)

    try:
        t = time.perf_counter()
        plan = make_plan()
        media = load_image_file(sample_path("chelsea"))
        big_media = noise_png(3000, 2500)  # a large upload (the limit is 50 MB): 22.5 MB of noise
        words = [len(t.split()) for t in plan["B"]["step_texts"][1]]
        info["new_candidate_words_mean"] = round(sum(words) / len(words), 1)
        ids, fill_seconds = {}, {}
        for db, url in dbs.items():
            t1 = time.perf_counter()
            upgrade(url)
            ids[db] = fill(url, plan, media, big_media)
            fill_seconds[db] = round(time.perf_counter() - t1, 1)
        info["plan_seconds"] = round(time.perf_counter() - t - sum(fill_seconds.values()), 1)
        info["fill_seconds"] = fill_seconds
        assert len({tuple(sorted(v.items())) for v in ids.values()}) == 1, ids
        J = next(iter(ids.values()))
        info["job_ids"] = J
        info["input_bytes"] = len(media.data)
        info["big_input_bytes"] = len(big_media.data)
        print(f"filled {fill_seconds} s; job ids {J}", file=sys.stderr, flush=True)

        big_media_mb = len(big_media.data) / 1e6
        apps = {db: create_app({"DATABASE_URL": url, "WTF_CSRF_ENABLED": False, "AUTH": "none", "TESTING": True})
                for db, url in dbs.items()}
        clients = {db: app.test_client() for db, app in apps.items()}

        # ------------------------------------------------------------------ 1. requests
        a, a2, b, c = J["A"], J["A200"], J["B"], J["C"]
        urls = [
            ("baseline: static file", "/static/app.css"),
            ("OpenAPI description", "/api/openapi.json"),
            ("jobs list (50 of 64 jobs)", "/jobs"),
            ("API jobs list", "/api/jobs"),
            ("**job page A** (5,500 cands)", f"/jobs/{a}"),
            ("live panel A", f"/jobs/{a}/live"),
            ("history fragment A (50 rows)", f"/jobs/{a}/candidates"),
            ("API job A", f"/api/jobs/{a}"),
            ("job page A200 (700 cands)", f"/jobs/{a2}"),
            ("job page B (100,000 cands, 96 steps)", f"/jobs/{b}"),
            ("history fragment B, text filter 'cat'", f"/jobs/{b}/candidates?q=cat"),
            ("live panel, small job, 0.2 MB input", f"/jobs/{c - 1}/live"),
            (f"live panel C, {big_media_mb:.0f} MB input", f"/jobs/{c}/live"),
            (f"API job C, {big_media_mb:.0f} MB input", f"/api/jobs/{c}"),
        ]
        sizes: dict[str, int] = {}
        for _ in range(args.warmup):
            for db, client in clients.items():
                for _label, url in urls:
                    sizes[url] = get(client, url)[1]
        times: dict[tuple[str, str], list[float]] = {(db, url): [] for db in dbs for _l, url in urls}
        for _ in range(args.repeats):
            for db, client in clients.items():
                for _label, url in urls:
                    times[(db, url)].append(get(client, url)[0])
        requests_out = []
        for db in dbs:
            base = median(times[(db, urls[0][1])])
            for label, url in urls:
                v = times[(db, url)]
                requests_out.append({"db": db, "what": label, "url": url, "bytes": sizes[url],
                                     "median_ms": median(v) * 1e3, "p95_ms": p95(v) * 1e3, "max_ms": max(v) * 1e3,
                                     "ratio_to_baseline": median(v) / base, "times_ms": [x * 1e3 for x in v]})

        # ------------------------------------------------------------------ 2. paging 100,000
        paging_out = []
        cursors_by = {}
        for db, client in clients.items():
            for sort in ("step", "-score"):
                w = walk(client, b, sort)
                cursors_by[(db, sort)] = w["cursors"]
                paging_out.append({"db": db, "sort": sort, "pages": len(w["cursors"]), "rows": w["rows"],
                                   "distinct_texts": w["distinct_texts"], "in_order": w["in_order"],
                                   "total": w["total"], "walk_seconds": sum(w["times"]),
                                   "walk_page_ms": [x * 1e3 for x in w["times"]]})
                assert w["rows"] == w["distinct_texts"] == w["total"] == 100_000 and w["in_order"], (db, sort, w["rows"])
        page_urls = []
        for db in dbs:
            for sort in ("step", "-score"):
                cs = cursors_by[(db, sort)]
                for label, k in (("page 1", 0), ("page 50", 49), (f"page {len(cs)} (last)", len(cs) - 1)):
                    cur = f"&cursor={cs[k]}" if cs[k] else ""
                    page_urls.append((db, f"API limit=1000 sort={sort}", label,
                                      f"/api/jobs/{b}/candidates?limit=1000&sort={sort}{cur}"))
                # the page's own history fragment (50 rows), first vs after row 99,000 (same cursor format)
                for label, k in (("first", 0), ("after row 99,000", len(cs) - 1)):
                    cur = f"&cursor={cs[k]}" if cs[k] else ""
                    page_urls.append((db, f"HTML fragment 50 rows sort={sort}", label,
                                      f"/jobs/{b}/candidates?sort={sort}{cur}"))
        for db, _w, _l, url in page_urls:
            get(clients[db], url)
        ptimes = {(db, url): [] for db, _w, _l, url in page_urls}  # same URL on both databases
        for _ in range(args.page_repeats):
            for db, _w, _l, url in page_urls:
                ptimes[(db, url)].append(get(clients[db], url)[0])
        page_rows = []
        first_of: dict[tuple[str, str], float] = {}
        for db, what, label, url in page_urls:
            v = ptimes[(db, url)]
            m = median(v)
            first_of.setdefault((db, what), m)
            page_rows.append({"db": db, "what": what, "page": label, "median_ms": m * 1e3, "p95_ms": p95(v) * 1e3,
                              "ratio_to_first_page": m / first_of[(db, what)], "url": url})
        # The same pages' SQL alone (no HTTP, no JSON/HTML, no count): worker.store.queries.candidates_page
        # with limit=50, first page vs the cursor after row 99,000; and the count every request also runs.
        from worker.store.queries import candidates_page, count_candidates

        query_calls = []
        for db, url in dbs.items():
            Session = open_store(url, auto_upgrade=False)
            for sort in ("step", "-score"):
                cs = cursors_by[(db, sort)]
                for label, cursor in (("first", None), ("after row 99,000", cs[-1])):
                    query_calls.append((db, f"query alone: candidates_page(limit=50, sort={sort})", label,
                                        lambda S=Session, so=sort, c=cursor: _in_session(
                                            S, lambda s: candidates_page(s, b, sort=so, cursor=c, limit=50))))
                for label, cursor in (("first", None), ("after row 99,000", cs[-1])):
                    query_calls.append((db, f"same SQL + a bound on the first sort column (sort={sort})", label,
                                        lambda S=Session, so=sort, c=cursor: _in_session(
                                            S, lambda s: bounded_page(s, b, so, c, 50))))
            query_calls.append((db, "query alone: count_candidates (run by every history request)", "whole job",
                                lambda S=Session: _in_session(S, lambda s: count_candidates(s, b))))
        for *_x, fn in query_calls:
            fn()
        qtimes = {i: [] for i in range(len(query_calls))}
        for _ in range(3 * args.page_repeats):
            for i, (*_x, fn) in enumerate(query_calls):
                t1 = time.perf_counter()
                fn()
                qtimes[i].append(time.perf_counter() - t1)
        for i, (db, what, label, _fn) in enumerate(query_calls):
            m = median(qtimes[i])
            first_of.setdefault((db, what), m)
            page_rows.append({"db": db, "what": what, "page": label, "median_ms": m * 1e3,
                              "p95_ms": p95(qtimes[i]) * 1e3, "ratio_to_first_page": m / first_of[(db, what)]})

        # ------------------------------------------------------------------ 3. memory
        from worker.store.queries import history

        memory_out = []
        for db, client in clients.items():
            last_page = f"/api/jobs/{b}/candidates?limit=1000&sort=step&cursor={cursors_by[(db, 'step')][-1]}"
            Session = open_store(dbs[db], auto_upgrade=False)

            def materialise(Session=Session):
                with Session() as session:
                    rows = list(history(session, b))
                return len(rows)

            for job_name, what, fn in [
                ("B", "one API page (1,000 rows, last page)", lambda cl=client, u=last_page: consume(cl, u)),
                ("B", "history CSV, streamed", lambda cl=client: consume(cl, f"/api/jobs/{b}/history?format=csv")),
                ("B", "history JSON, streamed", lambda cl=client: consume(cl, f"/api/jobs/{b}/history?format=json")),
                ("B", "all rows in a list: list(history(...))", materialise),
                ("A", "history CSV, streamed", lambda cl=client: consume(cl, f"/api/jobs/{a}/history?format=csv")),
            ]:
                fn()  # warm
                m = measure_memory(fn)
                res = m.pop("result")
                if isinstance(res, tuple):
                    m.update(bytes=res[0], lines=res[1], chunks=res[2])
                else:
                    m.update(rows=res)
                memory_out.append({"db": db, "job": job_name, "what": what, **m})
        csv_size = {(r["db"], r["job"]): r["bytes"] for r in memory_out if r["what"].startswith("history CSV")}
        for r in memory_out:
            if r["what"].startswith("history CSV"):  # header + every candidate
                assert r["lines"] == 1 + (100_000 if r["job"] == "B" else 5_500), r
            r["csv_bytes_of_job"] = csv_size[(r["db"], r["job"])]
            r["tracemalloc_peak_over_csv_size"] = r["tracemalloc_peak_bytes"] / r["csv_bytes_of_job"]

        # ------------------------------------------------------------------ profile (optional)
        profiles = {}
        job_page_ms = {r["db"]: r["median_ms"] for r in requests_out if r["url"] == f"/jobs/{a}"}
        for db, client in clients.items():
            if args.profile or job_page_ms[db] > TARGET_MS:
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(10):
                    get(client, f"/jobs/{a}")
                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
                profiles[db] = buf.getvalue()
    finally:
        forget_engines()
        databases.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(sqlite_path) + suffix).unlink(missing_ok=True)

    info["load_average_at_end"] = _common.load_average()
    info["peak_rss_mib"] = _common.peak_rss_mib()
    data = {"benchmark": "web_pages", "machine": info, "target_ms": TARGET_MS, "repeats": args.repeats,
            "warmup": args.warmup, "page_repeats": args.page_repeats, "requests": requests_out,
            "paging_walk": paging_out, "paging": page_rows, "memory": memory_out, "profiles": profiles}
    path = _common.write_results(args.out, data)

    say(f"Machine: {_common.machine_line(info)}; load average at end {info['load_average_at_end']}")
    say()
    say(f"Command: `{info['command']}` (MILS_HOME={home}); PostgreSQL {info.get('postgresql', '-')}, SQLite file; "
        f"flask {info['flask']}, werkzeug {info['werkzeug']}, SQLAlchemy {info['sqlalchemy']}; "
        f"{args.warmup} warm-up + {args.repeats} timed requests per URL, interleaved; fill {fill_seconds} s")
    say()
    say("Requests (server time, Flask test client; ratio = median / median of the static-file baseline of the same database):")
    say()
    rows = []
    for label, url in urls:
        row = [label, f"{sizes[url] / 1024:.1f}"]
        for db in dbs:
            r = next(x for x in requests_out if x["db"] == db and x["url"] == url)
            row += [f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['ratio_to_baseline']:.1f}x"]
        rows.append(row)
    say(_common.md_table(["request", "KiB"] + [f"{db} {h}" for db in dbs for h in ("median ms", "p95 ms", "vs baseline")], rows))
    say()
    for db in dbs:
        say(f"Job page A on {db}: median {job_page_ms[db]:.1f} ms, p95 "
            f"{next(r['p95_ms'] for r in requests_out if r['db'] == db and r['url'] == f'/jobs/{a}'):.1f} ms "
            f"against the {TARGET_MS:.0f} ms target: {'met' if job_page_ms[db] < TARGET_MS else 'MISSED'}")
    say()
    say("Paging job B (100,000 candidates), cursors from one walk through all pages; "
        f"{args.page_repeats} interleaved repeats per page:")
    say()
    say(_common.md_table(["db", "request", "page", "median ms", "p95 ms", "vs first page"],
                         [[r["db"], r["what"], r["page"], f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}",
                           f"{r['ratio_to_first_page']:.2f}x"] for r in page_rows]))
    say()
    for w in paging_out:
        say(f"- walk {w['db']} sort={w['sort']}: {w['pages']} pages, {w['rows']:,} rows, {w['distinct_texts']:,} distinct, "
            f"in order: {w['in_order']}, total {w['total']:,}; {w['walk_seconds']:.2f} s "
            f"(page ms min {min(w['walk_page_ms']):.1f}, median {median(w['walk_page_ms']):.1f}, max {max(w['walk_page_ms']):.1f})")
    say()
    say("Memory (tracemalloc: peak Python heap during the request over the heap before it; RSS: growth of the "
        "process's peak resident set, VmHWM reset first, a run without tracemalloc, also timed):")
    say()
    say(_common.md_table(
        ["db", "job", "what", "s", "output MiB", "tracemalloc peak MiB", "peak / the job's whole CSV",
         "RSS peak growth MiB"],
        [[r["db"], r["job"], r["what"], f"{r['seconds']:.2f}",
          f"{r['bytes'] / 2**20:.2f}" if "bytes" in r else f"({r['rows']:,} rows)",
          f"{r['tracemalloc_peak_bytes'] / 2**20:.2f}", f"{r['tracemalloc_peak_over_csv_size']:.3f}",
          f"{r['rss_peak_growth_bytes'] / 2**20:.1f}" if r["rss_peak_growth_bytes"] is not None else "-"]
         for r in memory_out]))
    for db, text in profiles.items():
        say()
        say(f"cProfile of 10 job-page requests on {db}:")
        say("```")
        say(text.rstrip())
        say("```")
    (path.with_suffix(".md")).write_text("\n".join(out_lines) + "\n")
    print(f"\nwrote {path} and {path.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
