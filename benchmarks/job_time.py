"""Time per job of the README's first command, `mils caption --sample chelsea`, for this checkout
and for an earlier commit (default e3867e4, the last before the scorer's eyes and the fluency guard),
run alternately so that the machine's drift falls on both alike.

    python benchmarks/job_time.py [--before e3867e4] [--runs 3] [--sample chelsea]

Each tree runs from its own `git worktree` (the earlier one under /tmp) with PYTHONPATH pointing
at it and its own MILS_HOME; the first run of each is the cold one (an empty MILS_HOME: caches of
the LLM's joined weights, the pool's embeddings, the scorer's background), reported apart. Times
are of the whole command, as a user waits for it; each run also reports its steps' generation and
scoring seconds as the job stored them. Results: benchmarks/results/job_time.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import _common  # noqa: E402


MILS = "import sys; from worker.cli import main; sys.argv[0] = 'mils'; main()"  # the `mils` script, from PYTHONPATH


def run_once(tree: Path, home: Path, sample: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MILS_DATABASE_URL"}  # the job goes to the home's SQLite
    env.update(PYTHONPATH=str(tree), MILS_HOME=str(home))
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", MILS, "caption", "--sample", sample, "--json"],
                         cwd=tree, env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    result = json.loads(out.stdout)
    with contextlib.closing(sqlite3.connect(home / "mils.db")) as db:  # the steps' timings, as stored
        generation, scoring = db.execute("SELECT SUM(generation_seconds), SUM(scoring_seconds) FROM steps "
                                         "WHERE job_id = ?", (result["job_id"],)).fetchone()
    return {"seconds": round(seconds, 1), "caption": result["caption"], "score": result["score"],
            "generation_seconds": round(generation, 1), "scoring_seconds": round(scoring, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="e3867e4")
    parser.add_argument("--runs", type=int, default=3, help="warm runs of each tree")
    parser.add_argument("--sample", default="chelsea")
    args = parser.parse_args()
    machine = _common.machine_info()  # the load average before the runs
    commit = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    before = Path(f"/tmp/mils-tree-{commit}")
    if not before.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(before), commit], cwd=ROOT, check=True,
                       capture_output=True)
    trees = {f"before ({commit})": before, "now": ROOT}
    homes = {label: Path(f"/tmp/mils-job-time-{i}") for i, label in enumerate(trees)}
    for home in homes.values():
        shutil.rmtree(home, ignore_errors=True)
    runs: dict[str, list[dict]] = {label: [] for label in trees}
    for index in range(args.runs + 1):  # run 0 is cold
        for label, tree in trees.items():
            runs[label].append(run_once(tree, homes[label], args.sample))
            print(label, index, runs[label][-1], flush=True)
    summary = {label: {"cold_seconds": r[0]["seconds"], "warm_seconds": [x["seconds"] for x in r[1:]],
                       "warm_median": statistics.median(x["seconds"] for x in r[1:]), "caption": r[-1]["caption"]}
               for label, r in runs.items()}
    first, now = summary[f"before ({commit})"], summary["now"]
    data = {"machine": machine, "command": f"mils caption --sample {args.sample} --json",
            "summary": summary, "warm_ratio_now_over_before": round(now["warm_median"] / first["warm_median"], 3),
            "runs": runs}
    print(_common.md_table(["tree", "cold s", "warm s (each)", "warm median s", "caption"],
                           [[label, s["cold_seconds"], ", ".join(map(str, s["warm_seconds"])), s["warm_median"],
                             s["caption"]] for label, s in summary.items()]))
    print("warm median, now / before:", data["warm_ratio_now_over_before"])
    print(_common.write_results("job_time", data))


if __name__ == "__main__":
    main()
