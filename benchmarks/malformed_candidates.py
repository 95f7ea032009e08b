"""Count the malformed candidates stored by runs of `benchmarks/skimage_photos.py` (or any home):
generated captions (steps after the bootstrap) that still carry list markup, leftover scores,
JSON or table punctuation, unbalanced brackets or comments about the answer.

    python benchmarks/malformed_candidates.py /tmp/bench-before /tmp/bench-after [--examples 3]

Each argument is a MILS_HOME whose mils.db holds the runs. The checks here are written apart from
the parser (worker.core.parsing) on purpose: they look at what was stored, not at how it was made.
Writes benchmarks/results/malformed_candidates.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

# What a clean caption does not contain; each check names one kind of leftover.
CHECKS = {
    "list markup": re.compile(r"^\s*(?:\(?\d+\s*[.)\]:、]|[-*•·▪●→#]\s)"),
    "leftover score": re.compile(r"^\s*[\[(]?[-+]?(?:\d*\.\d+|0\d+)[\])]?\s*[:\-–]?\s|\d\.\d{3,}"),
    "table or JSON punctuation": re.compile(r"\||^\s*[\[{\"“']|[\]}\"”'],?\s*$|\",\s*$|,\s*$"),
    "label left on": re.compile(r"^\s*[(\[（]?\s*(?:best|worst|new|scor\w*|caption\w*|prompt\w*)\s*\d*\s*[)\]）]?\s*[:：=]",
                                re.IGNORECASE),
    "wrapped in brackets": re.compile(r"^\s*[(\[{<].*[)\]}>]\s*$"),
    "unbalanced brackets": None,  # counted below
    "comment about the answer": re.compile(
        r"\b(?:this is (?:a |an )?(?:very |very very |even |really )?(?:good|great|better|nice|excellent|well)"
        r"|good mention|(?:best|worst|most|only) descri\w*|best described|here (?:are|is)|I hope"
        r"|captions? (?:above|below))\b",
        re.IGNORECASE),
    "markdown emphasis": re.compile(r"\*\*|__|`"),
}
PAIRS = {"(": ")", "[": "]", "{": "}"}


def problems(text: str) -> list[str]:
    found = [name for name, pattern in CHECKS.items() if pattern is not None and pattern.search(text)]
    if any(text.count(a) != text.count(b) for a, b in PAIRS.items()):
        found.append("unbalanced brackets")
    return found


def count(home: Path, examples: int) -> dict:
    with sqlite3.connect(home / "mils.db") as db:
        rows = db.execute("SELECT j.id, c.text FROM candidates c JOIN jobs j ON j.id = c.job_id "
                          "WHERE c.step > 0 AND j.task = 'image-caption' ORDER BY c.id").fetchall()
        jobs = db.execute("SELECT count(*) FROM jobs WHERE task = 'image-caption'").fetchone()[0]
        rejected = db.execute("SELECT count(*) FROM job_events WHERE kind = 'rejected'").fetchone()[0] \
            if db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'job_events'").fetchone()[0] else 0
    by_kind, shown, malformed = Counter(), {}, 0
    for _, text in rows:
        found = problems(text)
        malformed += bool(found)
        for kind in found:
            by_kind[kind] += 1
            shown.setdefault(kind, [])
            if len(shown[kind]) < examples:
                shown[kind].append(text)
    return {"home": str(home), "jobs": jobs, "generated": len(rows), "malformed": malformed,
            "by_kind": dict(by_kind), "examples": shown, "rejected_events": rejected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("homes", nargs="+", type=Path)
    parser.add_argument("--examples", type=int, default=3)
    args = parser.parse_args()
    data = {"benchmark": "malformed_candidates", "machine": _common.machine_info(),
            "runs": [count(home, args.examples) for home in args.homes]}
    _common.write_results("malformed_candidates", data)
    print("| home | jobs | generated candidates | malformed | by kind |\n|---|---|---|---|---|")
    for run in data["runs"]:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(run["by_kind"].items())) or "-"
        print(f"| `{run['home']}` | {run['jobs']} | {run['generated']} | {run['malformed']} | {kinds} |")
    for run in data["runs"]:
        for kind, texts in run["examples"].items():
            print(f"- {run['home']} {kind}: " + "; ".join(repr(t) for t in texts))


if __name__ == "__main__":
    main()
