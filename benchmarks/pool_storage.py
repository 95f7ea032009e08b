"""Database bytes per job and the time to load a step's state, with the paper's pool size.

    OMP_NUM_THREADS=1 python benchmarks/pool_storage.py [--pool-sizes 5000 29000] [--jobs 4] \
        [--steps 10] [--candidates 50] [--top-k 50] [--repeats 30] [--baseline-commit SHA]

Each pool size gets a throw-away PostgreSQL database on the local server
(postgresql://postgres@127.0.0.1:5432 or MILS_TEST_PG; `_common.throwaway_database`, dropped at
the end), schema by `worker.store.db.upgrade`. `--jobs` jobs share one pool of `--pool-sizes` texts (the bundled
5,000 captions and variations of them, "... at dusk", "Close-up of ...": realistic lengths,
every text distinct after normalization). Each job runs through the store as a worker does it:
`create_job`, `core.bootstrap` + `record_step` (step 0), then per step `load_state` +
`core.step` + `record_step`, with instant fakes (a scorer hashing the text to a float, a
generator writing `--candidates` new captions per step).

Measured:
- bytes: the sum of pg_total_relation_size (heap, TOAST, indexes) of every table of the schema,
  before the first job and after each job: the first job (which may store what jobs share) and
  the mean of the others (each further job of the same pool);
- state load: `load_state` at the last step of the last job, each call in a fresh session,
  `--repeats` times after one warm-up call (whose time is kept as `first_ms`), median and min;
  then once more with the process's cache of decoded pools emptied (`pool_uncached_ms`: what the
  first step of a pool version costs a fresh worker process; none in code without that cache).

`--baseline-commit SHA` measures the same in the same run on that commit's code: a `git worktree`
of it under a temporary folder, this script run there in a subprocess (`--measure-only`), and
its figures stored beside this code's with the ratios. Writes benchmarks/results/pool_storage.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import _common  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# Ways one caption is varied into more pool texts (the paper's pool is ~29,000 descriptions).
PREFIXES = ["", "Close-up of ", "A photo of ", "A blurry picture of ", "An old photograph of ",
            "A wide shot of "]
SUFFIXES = ["", " at dusk", " in soft morning light", " seen from above", " on a rainy day",
            " in black and white", " with a blurred background"]


def pool_texts(size: int) -> list[str]:
    """`size` captions, distinct after normalization: the bundled pool, then its variations."""
    from worker.core import normalize

    base = (REPO / "worker" / "data" / "image_caption_pool.txt").read_text().splitlines()
    texts, keys = [], set()
    for prefix in PREFIXES:
        for suffix in SUFFIXES:
            for caption in base:
                caption = caption.strip().rstrip(".")
                if prefix:
                    caption = caption[0].lower() + caption[1:]
                text = f"{prefix}{caption}{suffix}."
                key = normalize(text)
                if key and key not in keys:
                    keys.add(key)
                    texts.append(text)
                    if len(texts) == size:
                        return texts
    raise SystemExit(f"cannot make {size} distinct pool texts")


class HashScorer:
    """A float in [0.1, 0.4) from the text's SHA-256: every mantissa bit used, like a cosine."""

    name = "bench-hash-scorer"

    def encode_sample(self, sample):
        return None

    def score(self, features, texts):
        return [0.1 + 0.3 * int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big") / 2**64 for t in texts]

    score_pool = score


class VariantGenerator:
    """Numbered lists of new captions built from the prompt's examples."""

    name = "bench-variant-generator"

    def complete(self, conversations, *, seed, temperature, top_p, max_tokens):
        answers = []
        for c, conversation in enumerate(conversations):
            user = next(m["content"] for m in conversation if m["role"] == "user")
            examples = [line.split(": ", 1)[1] for line in user.splitlines() if ": " in line][:50] or ["a cat"]
            answers.append("\n".join(
                f"{i + 1}. {examples[i % len(examples)].rstrip('.')} variant {seed % 100_000} {c} {i}"
                for i in range(60)))
        return answers


def table_bytes(engine) -> dict[str, int]:
    """pg_total_relation_size of every table of the public schema (heap, TOAST and indexes)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"))
        return {name: int(size) for name, size in rows}


def run_job(Session, settings, pool: list[str], media) -> int:
    """One job through the store as the runner does it; its id."""
    from worker import core
    from worker.kinds import TASK_KINDS
    from worker.store.jobs import create_job, get_job, load_state, record_step

    kind = TASK_KINDS["image-caption"]
    scorer, generator = HashScorer(), VariantGenerator()
    with Session.begin() as session:
        job_id = create_job(session, task="image-caption", settings=settings, generator=generator.name,
                            scorer=scorer.name, media=media).id
    result = core.bootstrap(pool, scorer, None, settings)
    while True:
        with Session.begin() as session:
            record_step(session, get_job(session, job_id, for_update=True), result, datetime.now(timezone.utc))
        if result.step >= settings.steps:
            return job_id
        with Session() as session:
            state = load_state(session, job_id)
        result = core.step(state, generator, scorer, None, kind.template, settings)


def measure_size(pool_size: int, args) -> dict:
    from sqlalchemy import func, select

    from worker.core import Settings
    from worker.media import load_image_file
    from worker.media.samples import sample_path
    from worker.store.db import get_engine, open_store
    from worker.store.jobs import load_state
    from worker.store.schema import Candidate

    with _common.throwaway_database(f"mils_bench_pool_storage_{os.getpid()}_{pool_size}", upgrade=True) as url:
        Session = open_store(url, auto_upgrade=False)
        engine = get_engine(url)
        settings = Settings(steps=args.steps, top_k=args.top_k, candidates=args.candidates, seed=1)
        pool = pool_texts(pool_size)
        media = load_image_file(sample_path("chelsea"))
        sizes = [table_bytes(engine)]
        job_ids, write_seconds = [], []
        for _ in range(args.jobs):
            started = time.perf_counter()
            job_ids.append(run_job(Session, settings, pool, media))
            write_seconds.append(time.perf_counter() - started)
            sizes.append(table_bytes(engine))
        totals = [sum(s.values()) for s in sizes]
        deltas = [b - a for a, b in zip(totals, totals[1:])]
        per_table = {t: sizes[-1].get(t, 0) - sizes[1].get(t, 0) for t in sizes[-1]}
        with Session() as session:
            rows = session.scalar(select(func.count()).select_from(Candidate).where(Candidate.job_id == job_ids[-1]))

        def load() -> float:
            with Session() as session:
                started = time.perf_counter()
                state = load_state(session, job_ids[-1])
                elapsed = time.perf_counter() - started
            assert state.step == args.steps
            return elapsed * 1000

        first = load()
        times = [load() for _ in range(args.repeats)]
        try:  # the first load of a pool version in a process decodes and keys its texts (code with pools)
            from worker.store import pools
        except ImportError:
            cold = None
        else:
            pools._pools.clear()
            cold = round(load(), 2)
        return {
            "pool_size": pool_size,
            "jobs": args.jobs,
            "bytes_before_jobs": totals[0],
            "bytes_first_job": deltas[0],
            "bytes_each_further_job": round(sum(deltas[1:]) / len(deltas[1:])) if len(deltas) > 1 else None,
            "bytes_further_jobs_by_table": {t: round(b / max(1, len(deltas) - 1)) for t, b in
                                            sorted(per_table.items()) if b},
            "candidate_rows_per_job": rows,
            "write_seconds_per_job": [round(s, 2) for s in write_seconds],
            "state_load_first_ms": round(first, 2),
            "state_load_pool_uncached_ms": cold,
            "state_load_median_ms": round(median(times), 3),
            "state_load_min_ms": round(min(times), 3),
        }


def measure(args) -> dict:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"commit": commit, "sizes": [measure_size(size, args) for size in args.pool_sizes]}


def baseline(args) -> dict:
    """This script's measurements on `args.baseline_commit`'s code, in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="mils-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline_commit], cwd=REPO,
                       check=True, capture_output=True)
        try:
            out = Path(tmp) / "baseline.json"
            command = [sys.executable, str(tree / "benchmarks" / "pool_storage.py"), "--measure-only", str(out),
                       "--pool-sizes", *map(str, args.pool_sizes), "--jobs", str(args.jobs), "--steps",
                       str(args.steps), "--candidates", str(args.candidates), "--top-k", str(args.top_k),
                       "--repeats", str(args.repeats)]
            subprocess.run(command, cwd=tree, check=True)
            return json.loads(out.read_text())
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=True)


def ratios(before: dict, after: dict) -> list[dict]:
    rows = []
    for b, a in zip(before["sizes"], after["sizes"], strict=True):
        rows.append({
            "pool_size": a["pool_size"],
            "bytes_each_further_job": round(b["bytes_each_further_job"] / a["bytes_each_further_job"], 1),
            "bytes_first_job": round(b["bytes_first_job"] / a["bytes_first_job"], 1),
            "state_load_median": round(b["state_load_median_ms"] / a["state_load_median_ms"], 1),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-sizes", type=int, nargs="+", default=[5000, 29000])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--baseline-commit", help="also measure this commit's code (git worktree, subprocess)")
    parser.add_argument("--measure-only", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _common.use_home(tempfile.mkdtemp(prefix="mils-bench-pool-"))
    if args.measure_only:
        Path(args.measure_only).write_text(json.dumps(measure(args)))
        return
    info = _common.machine_info()
    before = baseline(args) if args.baseline_commit else None
    after = measure(args)
    data = {"machine": info, "after": after, "before": before,
            "ratios_before_over_after": ratios(before, after) if before else None,
            "load_average_at_end": _common.load_average()}
    path = _common.write_results("pool_storage", data)
    headers = ["code", "pool", "bytes 1st job", "bytes per further job", "candidate rows/job",
               "load_state median ms", "first ms", "pool uncached ms"]
    rows = [[label, s["pool_size"], s["bytes_first_job"], s["bytes_each_further_job"], s["candidate_rows_per_job"],
             s["state_load_median_ms"], s["state_load_first_ms"], s.get("state_load_pool_uncached_ms")]
            for label, run in (("before", before), ("after", after)) if run for s in run["sizes"]]
    print(_common.md_table(headers, rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
