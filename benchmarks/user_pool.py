"""Step 0 of a job given a pool file the size of the reference code's (about 29,000 lines), against
the bundled 5,000-caption pool in the same run: what checking, storing and scoring it cost, and
that a second job of the same file stores nothing again.

    python benchmarks/user_pool.py [--lines 29000] [--home /tmp/mils-user-pool]

A pool file of `--lines` distinct captions (our own words, combined with a seeded random choice)
is written. Each case runs in a fresh process on the embedded scorer (EfficientNet-Lite0 +
MiniLM), in one MILS_HOME whose SQLite store it shares; "cold" first deletes the scorer's cache of
pool embeddings, "warm" finds it. A process submits a job of the bundled photo `chelsea` as
`mils caption --pool-file` does (worker.submission.user_files, store_job), runs its step 0
(worker.runner.execute_step; the generator is not loaded, step 0 does not use it), and reports
the wall time of each phase and its peak RSS (VmHWM) after the imports, after loading the scorer
and after step 0. The warm user-pool process then submits and runs a second job of the same file
and counts the stored pools. Writes benchmarks/results/user_pool.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SUBJECTS = ("man", "woman", "child", "dog", "cat", "horse", "bird", "car", "bus", "train", "boat", "bicycle",
            "plate of food", "cup of coffee", "vase of flowers", "bowl of fruit", "laptop", "clock", "statue",
            "building", "bridge", "tree", "mountain", "lighthouse", "kite", "umbrella", "guitar", "chair")
LOOKS = ("small", "large", "old", "young", "red", "white", "black", "brown", "wooden", "shiny", "striped",
         "colourful", "tall", "tiny", "wet", "dusty")
DOING = ("standing", "sitting", "lying", "parked", "resting", "waiting", "shown", "placed", "seen")
WHERE = ("on a table", "in a park", "on a street", "by the sea", "in a kitchen", "on the grass", "in the snow",
         "next to a wall", "under a tree", "in a field", "on a beach", "in a room", "at night", "in the rain",
         "near a window", "on a shelf", "in a garden", "on a road")


def pool_lines(n: int, seed: int = 0) -> list[str]:
    """`n` distinct captions like "A small red dog sitting on a table." (our own words)."""
    rng = random.Random(seed)
    found: dict[str, None] = {}
    while len(found) < n:
        looks = " ".join(rng.sample(LOOKS, rng.randint(1, 2)))
        found[f"A {looks} {rng.choice(SUBJECTS)} {rng.choice(DOING)} {rng.choice(WHERE)}."] = None
    return list(found)


CHILD = r"""
import json, sys, time
from pathlib import Path
from types import SimpleNamespace

def rss():
    return round(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024, 1)

pool_file, jobs = sys.argv[1], int(sys.argv[2])
from sqlalchemy import func, select
from worker.kinds import TASK_KINDS
from worker.models import load_scorer
from worker.runner import JobModels, execute_step
from worker.store.db import open_store
from worker.store.schema import Pool, PoolScores
from worker.submission import job_request, store_job, task_input, user_files

out = {"peak_rss_mib_imported": rss()}
t = time.perf_counter()
scorer = load_scorer("embedded")
out["load_scorer_s"], out["peak_rss_mib_scorer"] = round(time.perf_counter() - t, 2), rss()
models = JobModels(SimpleNamespace(name="not loaded: step 0 asks no LLM"), scorer)
sessions = open_store()
kind = TASK_KINDS["image-caption"]
out["jobs"] = []
for _ in range(jobs):
    job = {}
    t = time.perf_counter()
    files = user_files(kind.name, pool=(Path(pool_file).read_bytes(), Path(pool_file).name)) if pool_file else \
        user_files(kind.name)
    job["read_and_check_s"] = round(time.perf_counter() - t, 3)
    media, info = task_input(kind, sample="chelsea")
    request = job_request(kind.name, media, info, files=files)
    t = time.perf_counter()
    with sessions.begin() as session:
        job_id = store_job(session, request)[0].id
    job["store_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    result = execute_step(sessions, job_id, lambda g, s: models)
    job["step0_s"] = round(time.perf_counter() - t, 2)
    job["step0_scoring_s"] = round(result.scoring_seconds, 2)
    job["texts_scored"] = len(result.candidates)
    job["best"] = [result.best.text, round(result.best.score, 4)]
    job["peak_rss_mib"] = rss()
    out["jobs"].append(job)
with sessions() as session:
    out["pools_stored"] = session.scalar(select(func.count()).select_from(Pool))
    out["pool_scores_bytes"] = session.scalar(select(func.max(func.length(PoolScores.scores))))
print(json.dumps(out))
"""


def run_case(home: Path, pool_file: Path | None, *, cold: bool, jobs: int = 1) -> dict:
    if cold:
        shutil.rmtree(home / "cache" / "pool-embeddings", ignore_errors=True)
    env = {**os.environ, "MILS_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(pool_file or ""), str(jobs)], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=29_000)
    parser.add_argument("--home", default="/tmp/mils-user-pool")
    args = parser.parse_args()
    shutil.rmtree(args.home, ignore_errors=True)
    home = _common.use_home(args.home)
    info = _common.machine_info()
    pool_file = home / "pool.txt"
    pool_file.write_text("\n".join(pool_lines(args.lines)) + "\n")

    from worker.config import cache_dir

    assert cache_dir("pool-embeddings").parent == home / "cache", "the cache folder moved: update run_case"
    cases = {
        "bundled_cold": run_case(home, None, cold=True),
        "bundled_warm": run_case(home, None, cold=False),
        "user_cold": run_case(home, pool_file, cold=True),
        "user_warm_two_jobs": run_case(home, pool_file, cold=False, jobs=2),
    }
    data = {"machine": info, "lines": args.lines, "pool_file_bytes": pool_file.stat().st_size, "cases": cases}
    path = _common.write_results("user_pool", data)
    rows = [[name, case["jobs"][0]["texts_scored"], case["jobs"][0]["read_and_check_s"], case["jobs"][0]["store_s"],
             case["jobs"][0]["step0_s"], case["jobs"][-1]["peak_rss_mib"], case["pools_stored"]]
            for name, case in cases.items()]
    print(_common.md_table(["case", "texts", "check s", "store s", "step 0 s", "peak RSS MiB", "pools stored"], rows))
    second = cases["user_warm_two_jobs"]["jobs"][1]
    print(f"second job of the same file: store {second['store_s']} s, step 0 {second['step0_s']} s; {path}")


if __name__ == "__main__":
    main()
