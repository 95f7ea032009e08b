"""The 12 scikit-image and 2 scikit-learn sample photos as one batch on the embedded default,
run by a real `mils worker` (SQLite store and queue in MILS_HOME), then evaluated against the
hand-written references in tests/data/photo_references.json (three captions per photo) with
pycocoevalcap: the metrics of the step-0 best caption and of the final one.

    python benchmarks/batch_photos.py [--home /tmp/mils-batch-photos] [--seed 0] [--name photos]
        [--references benchmarks/data/heldout_photo_references.json]
        [--prompt-file benchmarks/data/own_prompt.txt] [--pool-file benchmarks/data/own_pool.txt]
    python benchmarks/batch_photos.py --home SAME_HOME --name NEW --like OLD -- --top-k-overlap 1

--references runs another set of photos: a COCO captions file whose images name a bundled
sample ("sample") or a file inside an installed package ("package_file": "skimage.data/brick.png").
--prompt-file and --pool-file run the batch with a prompt template and an initial pool of one's own.
--like runs a variant of a batch already in the same home: its photos, references and settings,
with the options after `--` changed.

It uses the commands a user would: `mils batch submit NAME captions.json` (a COCO captions file
beside the exported photos), `mils worker`, `mils batch eval NAME --json`. Results go to
benchmarks/results/batch_photos.json (and the batch stays in MILS_HOME for the web page).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

REFERENCES = Path(__file__).resolve().parents[1] / "tests" / "data" / "photo_references.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/mils-batch-photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="photos")
    parser.add_argument("--references", default=str(REFERENCES))
    parser.add_argument("--out", help="results file name (default batch_photos, or batch_<references file's name>)")
    parser.add_argument("--prompt-file", help="the batch's prompt template (default: the task's own)")
    parser.add_argument("--pool-file", help="the batch's initial pool (default: the task's own)")
    parser.add_argument("--like", help="a variant of this batch (already in --home): its photos and settings, "
                                       "with the options after -- changed (`mils batch submit NAME --like OLD`)")
    parser.add_argument("changes", nargs="*", help="with --like: the options that differ, e.g. -- --top-k-overlap 1")
    args = parser.parse_args()
    own = [arg for flag, path in (("--prompt-file", args.prompt_file), ("--pool-file", args.pool_file)) if path
           for arg in (flag, str(Path(path).resolve()))]
    if args.out is None:  # another set of photos must not overwrite the bundled photos' results
        stem = Path(args.references).stem
        args.out = "batch_photos" if Path(args.references).resolve() == REFERENCES.resolve() else f"batch_{stem}"
    home = _common.use_home(args.home)
    info = _common.machine_info()

    from scorer_mrr import photo_bytes

    from worker.media.samples import SAMPLES

    photos = home / "photos"
    photos.mkdir(exist_ok=True)
    references_file = Path(args.references)
    references = json.loads(references_file.read_text())
    for image in references["images"]:
        (photos / image["file_name"]).write_bytes(photo_bytes(image.get("sample") or image["package_file"]))
        assert "sample" not in image or SAMPLES[image["sample"]][1] == image["file_name"]
    shutil.copy(references_file, photos / "captions.json")

    def mils(*argv: str) -> str:
        return subprocess.run(["mils", *argv], check=True, capture_output=True, text=True).stdout

    mils("db", "upgrade")
    submitted = time.time()
    if args.like:
        print(mils("batch", "submit", args.name, "--like", args.like, *own, *args.changes))
    else:
        print(mils("batch", "submit", args.name, str(photos / "captions.json"), "--seed", str(args.seed), *own))
    worker = subprocess.Popen(["mils", "worker"], stdout=open(home / "worker.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        while True:
            time.sleep(10)
            progress = json.loads(mils("batch", "status", args.name, "--json"))
            print(f"{progress['done']}/{progress['jobs']} jobs, {progress['steps_done']} steps", flush=True)
            if progress["finished"]:
                break
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
    wall = time.time() - submitted
    metrics = json.loads(mils("batch", "eval", args.name, "--json"))
    results = [json.loads(line) for line in mils("batch", "results", args.name, "--format", "jsonl").splitlines()]
    step0 = metrics["per_step"][0]
    data = {"machine": info, "references": str(references_file), "prompt_file": args.prompt_file,
            "pool_file": args.pool_file, "wall_seconds": round(wall, 1),
            "seconds_per_job": round(wall / len(results), 1),
            "jobs": len(results), "succeeded": sum(r["status"] == "succeeded" for r in results),
            "step0": step0, "final": metrics["final"], "per_step": metrics["per_step"], "spice": metrics["spice"],
            "captions": {r["key"]: r["output"] for r in results}}
    # The fluency guard's defects in every final caption (its goal: none may repeat a content word
    # or carry commentary or a score), and the scorer's MRR over the references (scorer_mrr.py).
    from scorer_mrr import mean_reciprocal_rank, references as reference_captions

    from worker.models import load_scorer
    from worker.models.fluency import defects

    data["defects"] = {key: found for key, caption in data["captions"].items() if any((found := defects(caption)).values())}
    names_, captions_, owners_ = reference_captions(references_file)
    data["scorer_mrr"] = round(mean_reciprocal_rank(load_scorer("embedded"), names_, captions_, owners_)[0], 4)
    path = _common.write_results(args.out, data)
    names = ["Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]
    print(_common.md_table(["", *names], [[label, *(f"{100 * row[m]:.1f}" for m in names)]
                                          for label, row in (("step 0 best", step0), ("final", metrics["final"]))]))
    print(f"{wall:.0f} s for {len(results)} jobs; scorer MRR {data['scorer_mrr']}; "
          f"finals with defects: {data['defects'] or 'none'}; {path}")


if __name__ == "__main__":
    main()
