"""Check a stored comparison's confidence intervals against scipy.stats.bootstrap run directly.

`mils batch compare A B --json > FILE` stores, for each batch against the baseline and each
metric, the per-item differences and the interval worker.comparison computed from them. This
script runs `scipy.stats.bootstrap` on those same numbers, in the same order, with the file's own
confidence, resamples, method and seed, and prints both intervals side by side. It exits 1 if any
pair differs, so a comparison written in BENCHMARKS.md is one a reader can check.

    python benchmarks/compare_intervals.py benchmarks/results/compare_overlap.json
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="the JSON of `mils batch compare ... --json`")
    args = parser.parse_args()
    import numpy as np
    from scipy.stats import bootstrap

    found = json.loads(open(args.file).read())
    unequal = 0
    for pair in found["paired"]:
        for metric, d in pair["metrics"].items():
            differences = np.array(list(d["per_item"].values()), dtype=float)
            direct = bootstrap((differences,), np.mean, confidence_level=found["confidence"],
                               n_resamples=found["resamples"], method=found["method"],
                               random_state=np.random.default_rng(found["seed"])).confidence_interval
            same = (d["low"], d["high"]) == (float(direct.low), float(direct.high))
            unequal += not same
            print(f"{pair['batch']} - {pair['baseline']} {metric} over {len(differences)} items: "
                  f"mean {100 * d['difference']:+.2f}, stored [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}], "
                  f"scipy [{100 * direct.low:+.2f}, {100 * direct.high:+.2f}] (x100): "
                  + ("equal" if same else "DIFFERENT"))
    sys.exit(1 if unequal else 0)


if __name__ == "__main__":
    main()
