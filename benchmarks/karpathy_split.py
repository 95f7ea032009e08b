"""Submitting the test split of a full-size Karpathy COCO file: what reading the file, choosing the
split, checking the chosen items' media and storing them costs, and that no other entry's media
is opened.

    python benchmarks/karpathy_split.py [--entries 123287] [--test 5000] [--keep DIR]

A dataset_coco.json of 123,287 entries in the shape Karpathy's file ships (train 82,783, restval
30,504, val 5,000, test 5,000 by default; five sentences each, with "raw" and "tokens"; our own
words) is written, and a media folder in which only the test entries have a file: hard links to
12 small copies (96 px) of the bundled scikit-image photos. Then, in a fresh process, `mils batch
submit NAME dataset_coco.json --media DIR --split test` is done as the CLI does it (open_dataset,
then submit_batch) into a throw-away PostgreSQL database, with no worker running (the batch's
first jobs go to a SQLite queue in a temporary MILS_HOME, the rest are stored held). That process
reports the wall time of each phase, its peak RSS (VmHWM) after each (and before, once the code
is imported), Python's own peak allocation (tracemalloc) of the read in a second pass, and the
media files it opened (an audit hook on `open`). Writes benchmarks/results/karpathy_split.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Karpathy's dataset_coco.json: 113,287 train (82,783 train + 30,504 restval), 5,000 val, 5,000 test.
SPLIT_SHARES = {"train": 82_783, "restval": 30_504, "val": 5_000}
WORDS = ("a man woman dog cat sitting standing on in at the with of table street bus train plate pizza "
         "red white black large small two people next to near holding riding field grass water sky").split()

CHILD = r"""
import json, sys, time, tracemalloc
from pathlib import Path

def status(field):
    return round(int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) / 1024, 1)

path, media, url, passes = Path(sys.argv[1]), Path(sys.argv[2]).resolve(), sys.argv[3], sys.argv[4]
from worker.batches import submit_batch
from worker.datasets import Selection, open_dataset
from worker.store.db import open_store
import worker.kinds, worker.media, worker.submission  # noqa: F401 (imported before measuring)

opened = []
prefix = str(media) + "/"
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(prefix):
        opened.append(args[0])
sys.addaudithook(hook)
sessions = open_store(url)
out = {"peak_rss_mib_imported": status("VmHWM")}
t0 = time.perf_counter()
dataset = open_dataset(path, "image", media_root=media, selection=Selection("test"))
out["read_seconds"] = round(time.perf_counter() - t0, 2)
out["peak_rss_mib_after_read"] = status("VmHWM")
out["opened_during_read"] = len(opened)
out["dataset"] = dataset.describe()
t1 = time.perf_counter()
report = submit_batch(sessions, "karpathy-test", dataset, task="image-caption")
out["check_store_seconds"] = round(time.perf_counter() - t1, 2)
out["total_seconds"] = round(time.perf_counter() - t0, 2)
out["peak_rss_mib_after_store"] = status("VmHWM")
out["rss_mib_at_end"] = status("VmRSS")
out["added"], out["rejected"], out["requeued"] = report.added, len(report.rejected), report.requeued
out["media_opened"] = len(opened)
out["media_opened_distinct"] = len(set(opened))
out["opened_names"] = sorted({p.rsplit("/", 1)[1] for p in opened})
del dataset, report
if passes == "2":  # Python's own allocations of the read alone (tracemalloc slows it several times)
    tracemalloc.start()
    again = open_dataset(path, "image", media_root=media, selection=Selection("test"))
    out["tracemalloc_peak_mib_read"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    tracemalloc.stop()
print(json.dumps(out))
"""


def write_dataset(folder: Path, entries: int, test: int) -> tuple[Path, Path, set[str]]:
    """dataset_coco.json and the media folder (only the test entries' files); the test file names."""
    import random

    from PIL import Image

    from worker.media.samples import SKIMAGE_PHOTOS, sample_path

    rng = random.Random(0)
    shares = dict(SPLIT_SHARES)
    scale = (entries - test) / sum(shares.values())
    shares = {split: round(n * scale) for split, n in shares.items()}
    shares["train"] += entries - test - sum(shares.values())
    splits = [split for split, n in {**shares, "test": test}.items() for _ in range(n)]
    rng.shuffle(splits)
    small = folder / "photos"
    small.mkdir()
    photos = []
    for name in SKIMAGE_PHOTOS:
        with Image.open(sample_path(name)) as image:
            image = image.convert("RGB")
            image.thumbnail((96, 96))
            photos.append(small / f"{name}.jpg")
            image.save(photos[-1], quality=85)
    media = folder / "coco"
    for sub in ("val2014", "train2014"):
        (media / sub).mkdir(parents=True)
    path = folder / "dataset_coco.json"
    test_names, sentid = set(), 0
    with open(path, "w") as out:
        out.write('{"images": [')
        for imgid, split in enumerate(splits):
            sub = "train2014" if split == "train" else "val2014"
            cocoid = 9 + 3 * imgid
            filename = f"COCO_{sub}_{cocoid:012d}.jpg"
            sentences = []
            for _ in range(5):
                tokens = [rng.choice(WORDS) for _ in range(rng.randint(8, 14))]
                sentences.append({"tokens": tokens, "raw": " ".join(tokens).capitalize() + ".", "imgid": imgid,
                                  "sentid": sentid})
                sentid += 1
            entry = {"filepath": sub, "sentids": [s["sentid"] for s in sentences], "filename": filename,
                     "imgid": imgid, "split": split, "sentences": sentences, "cocoid": cocoid}
            out.write(("" if imgid == 0 else ", ") + json.dumps(entry))
            if split == "test":
                test_names.add(filename)
                target = media / sub / filename
                try:
                    os.link(photos[imgid % len(photos)], target)
                except OSError:
                    target.write_bytes(photos[imgid % len(photos)].read_bytes())
        out.write('], "dataset": "coco"}')
    return path, media, test_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=123_287, help="Entries of the file (default: Karpathy's).")
    parser.add_argument("--test", type=int, default=5_000, help="Of them in the test split (default: Karpathy's).")
    parser.add_argument("--keep", type=Path, help="Write the file and media here and keep them (default: a "
                                                  "temporary folder, removed).")
    parser.add_argument("--no-tracemalloc", action="store_true", help="Skip the second, tracemalloc'd read.")
    parser.add_argument("--out", default="karpathy_split", help="The results file's name under benchmarks/results/.")
    args = parser.parse_args()

    info = _common.machine_info()
    with tempfile.TemporaryDirectory(prefix="mils-karpathy-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        path, media, test_names = write_dataset(folder, args.entries, args.test)
        made = time.perf_counter() - t0
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.entries} entries, {args.test} test) "
              f"in {made:.1f} s", flush=True)
        home = Path(tmp) / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MILS_")}
        env.update(MILS_HOME=str(home), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
                   PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
        with _common.throwaway_database("mils_bench_karpathy_split", upgrade=True) as url:
            child = subprocess.run([sys.executable, "-c", CHILD, str(path), str(media), url,
                                    "1" if args.no_tracemalloc else "2"],
                                   env=env, cwd=ROOT, capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"the measuring process failed:\n{child.stderr[-4000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        names = set(result.pop("opened_names"))
        result["opened_only_test_media"] = names <= test_names
        result["file_mb"] = round(path.stat().st_size / 1e6, 1)
    data = {"benchmark": "karpathy_split", "machine": info, "entries": args.entries, "test": args.test,
            "write_seconds": round(made, 1), **result}
    _common.write_results(args.out, data)
    print(json.dumps(data, indent=2))
    print(f"\nread + split: {result['read_seconds']} s; check + store {result['added']} items: "
          f"{result['check_store_seconds']} s; total {result['total_seconds']} s; peak RSS "
          f"{result['peak_rss_mib_after_store']} MiB ({result['peak_rss_mib_imported']} MiB once imported); "
          f"media files opened: {result['media_opened']} ({result['media_opened_distinct']} distinct; only test "
          f"ones: {result['opened_only_test_media']})")


if __name__ == "__main__":
    main()
