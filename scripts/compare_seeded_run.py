"""Run the same seeded embedded job on two commits and compare what they store, byte for byte.

    python scripts/compare_seeded_run.py BEFORE_REV [AFTER_REV] [--seed 7] [--sample chelsea]

For each revision (AFTER_REV defaults to the working tree) the code is exported into a temporary
folder with `git archive` and run from there (`PYTHONPATH` first, so the installed checkout is not
used): `mils caption --sample S --seed N --json`, then `mils history JOB --format csv`. Both runs
share one MILS_HOME (the model caches) and each has its own SQLite database. The script prints
where the two differ and exits 1 if they do, 0 if the JSON (without the job id, which is the
same anyway on a fresh database) and the CSV history (texts, scores, ranks, steps) are identical.

Written for the move of the code into layers ("the house"), which had to change no behaviour
(BENCHMARKS.md, history: "The move into layers").
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MILS = "import sys; from worker.cli import main; sys.argv[0] = 'mils'; main()"


def export(rev: str | None, into: Path) -> Path:
    """The tree of `rev` (None: the working tree, tracked and untracked files) in `into`."""
    into.mkdir(parents=True)
    if rev is None:
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                               cwd=ROOT, check=True, capture_output=True).stdout.split(b"\0")
        subprocess.run(["tar", "-C", str(ROOT), "--null", "-T", "-", "-cf", str(into / "tree.tar")],
                       input=b"\0".join(f for f in files if f and (ROOT / f.decode()).exists()), check=True)
    else:
        subprocess.run(["git", "archive", "-o", str(into / "tree.tar"), rev], cwd=ROOT, check=True)
    subprocess.run(["tar", "-C", str(into), "-xf", str(into / "tree.tar")], check=True)
    return into


def run(tree: Path, home: Path, db: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "MILS_HOME": str(home), "MILS_DATABASE_URL": f"sqlite:///{db}"}
    out = subprocess.run([sys.executable, "-c", MILS, *args], env=env, cwd=tree, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"mils {' '.join(args)} failed in {tree}:\n{out.stderr[-3000:]}")
    return out.stdout


def one_run(label: str, rev: str | None, work: Path, home: Path, seed: int, sample: str) -> tuple[dict, str]:
    tree = export(rev, work / label)
    db = tree / "run.db"
    result = json.loads(run(tree, home, db, "caption", "--sample", sample, "--seed", str(seed), "--json"))
    csv = run(tree, home, db, "history", str(result["job_id"]), "--format", "csv")
    return result, csv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", help="default: the working tree")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sample", default="chelsea")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("MILS_HOME", Path.home() / ".mils")),
                        help="MILS_HOME with the model caches (shared by both runs)")
    parser.add_argument("--keep", type=Path, help="also write both runs' outputs into this folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mils-compare-") as tmp:
        runs = [one_run(label, rev, Path(tmp), args.home, args.seed, args.sample)
                for label, rev in (("before", args.before), ("after", args.after))]
    (json_a, csv_a), (json_b, csv_b) = runs
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for label, (result, csv) in zip(("before", "after"), runs):
            (args.keep / f"{label}.json").write_text(json.dumps(result, indent=2) + "\n")
            (args.keep / f"{label}.csv").write_text(csv)
    rows = csv_a.count("\n") - 1
    print(f"before {args.before}: {json_a['caption']!r} {json_a['score']:.6f}, {rows} candidates")
    print(f"after  {args.after or 'working tree'}: {json_b['caption']!r} {json_b['score']:.6f}, "
          f"{csv_b.count(chr(10)) - 1} candidates")
    same_json = {**json_a, "job_id": None} == {**json_b, "job_id": None}
    same_csv = csv_a == csv_b
    if not same_csv:
        sys.stdout.writelines(list(difflib.unified_diff(csv_a.splitlines(True), csv_b.splitlines(True),
                                                        "before.csv", "after.csv", n=0))[:40])
    print(f"JSON result identical: {same_json}; CSV history byte-identical: {same_csv}")
    return 0 if same_json and same_csv else 1


if __name__ == "__main__":
    sys.exit(main())
