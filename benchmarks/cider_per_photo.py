"""Per-photo CIDEr of the step-0 and final captions of one re-ranking variant, and a bootstrap
interval of the mean change over the photos: is "final above step 0" more than noise?

    python benchmarks/cider_per_photo.py [--results benchmarks/results/rerank_photos_distinct_topk.json]
        [--variant "shipped fluency=0.15"]

Reads the captions stored by rerank_photos.py (whose "shipped" variant reproduces the real run) and
the references in tests/data/photo_references.json; CIDEr-D as pycocoevalcap computes it, each
photo's value from the same corpus call. 10,000 resamples of the photos, seed 0. Prints only.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "rerank_photos_distinct_topk.json"))
    parser.add_argument("--variant", default="shipped fluency=0.15")
    args = parser.parse_args()
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = json.loads(Path(args.results).read_text())["variants"][args.variant]["captions"]
    references = defaultdict(list)
    for annotation in json.loads((ROOT / "tests" / "data" / "photo_references.json").read_text())["annotations"]:
        references[str(annotation["image_id"])].append({"caption": annotation["caption"]})
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({key: references[key] for key in captions})
    per_photo = {}
    for index, label in enumerate(("step0", "final")):
        res = tokenizer.tokenize({key: [{"caption": pair[index]}] for key, pair in captions.items()})
        total, values = Cider().compute_score(gts, res)
        per_photo[label] = dict(zip(gts, values))
        print(f"{label}: CIDEr {100 * total:.1f}")
    changes = [per_photo["final"][key] - per_photo["step0"][key] for key in gts]
    for key, change in zip(gts, changes):
        print(f"photo {key}: {100 * per_photo['step0'][key]:.1f} -> {100 * per_photo['final'][key]:.1f}  "
              f"{captions[key][0]!r} -> {captions[key][1]!r}")
    rng = random.Random(0)
    means = sorted(sum(rng.choice(changes) for _ in changes) / len(changes) for _ in range(10_000))
    print(f"rose {sum(c > 0 for c in changes)}, fell {sum(c < 0 for c in changes)}, level {sum(c == 0 for c in changes)}; "
          f"mean change {100 * sum(changes) / len(changes):+.1f}; 95% bootstrap interval "
          f"{100 * means[250]:+.1f} to {100 * means[9750]:+.1f}; resamples above 0: {sum(m > 0 for m in means) / 100:.1f}%")


if __name__ == "__main__":
    main()
