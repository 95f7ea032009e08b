"""What the disk cache of the initial pool's text embeddings saves, with the embedded scorer.

    python benchmarks/pool_cache.py [--home /tmp/mils-bench] [--repeats 3] [--sample chelsea]

Runs in its own MILS_HOME subfolder (HOME/pool-cache), so deleting the pool's .npy there does not
touch other runs. The pool is the 5,000-caption image pool, deduplicated exactly as `bootstrap` does.

A. One scorer object, the pool file already filled once (the first fill is timed too):
   - recompute: `embed_texts(pool) @ features` (what every bootstrap would cost without the cache);
   - disk:      `score_pool(features, pool)` after dropping the object's in-memory memo, so the
                 matrix is read from the .npy;
   - memo:      `score_pool` again on the same object (the in-memory copy).
B. A per-image bootstrap in a fresh scorer object (what a new worker process does):
   `worker.core.bootstrap(pool, scorer, features, settings)` on a new `RecogniserScorer` built from the
   already-loaded networks, with the .npy on disk vs with it deleted (computed and saved again).
Repeats are interleaved (A: recompute, disk, memo; B: disk, no-cache) so load changes hit all alike.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=_common.DEFAULT_HOME, help="base MILS_HOME; this run uses HOME/pool-cache")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", default="chelsea")
    parser.add_argument("--out", default="pool_cache")
    args = parser.parse_args()

    home = _common.use_home(Path(args.home) / "pool-cache")
    _common.quiet_transformers()
    info = _common.machine_info()
    info["mils_home"] = str(home)

    import numpy as np

    from worker.config import cache_dir
    from worker.core import bootstrap, normalize
    from worker.media import decode_image
    from worker.models.recogniser_scorer import RecogniserScorer
    from worker.media.samples import sample_path
    from worker.kinds import TASK_KINDS, default_settings

    kind = TASK_KINDS["image-caption"]
    settings = default_settings("image-caption", "embedded")
    unique: dict[str, str] = {}
    for text in kind.pool:  # as bootstrap() dedupes
        key = normalize(text)
        if key and key not in unique:
            unique[key] = text
    pool = list(unique.values())

    t = time.perf_counter()
    scorer = RecogniserScorer.load()
    load_seconds = time.perf_counter() - t
    features = scorer.encode_sample(decode_image(sample_path(args.sample).read_bytes()))
    # The cache file's name, as EmbeddingScorer.pool_embeddings makes it (checked to exist below).
    key = hashlib.sha256("\n".join([scorer.version, *pool]).encode()).hexdigest()[:24]
    npy = cache_dir("pool-embeddings") / f"{key}.npy"
    npy.unlink(missing_ok=True)

    def timeit(fn):
        s = time.perf_counter()
        out = fn()
        return time.perf_counter() - s, out

    # First fill: compute + save.
    scorer._pool_memo = None
    first_fill, _ = timeit(lambda: scorer.score_pool(features, pool))
    assert npy.exists(), f"expected the pool cache at {npy}"
    print(f"first fill {first_fill:.2f} s ({npy.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr, flush=True)

    a = {"recompute": [], "disk": [], "memo": []}
    for r in range(args.repeats):
        dt, recomputed = timeit(lambda: (scorer.embed_texts(pool) @ features).tolist())
        a["recompute"].append(dt)
        scorer._pool_memo = None  # force the .npy read
        dt, from_disk = timeit(lambda: scorer.score_pool(features, pool))
        a["disk"].append(dt)
        dt, _ = timeit(lambda: scorer.score_pool(features, pool))
        a["memo"].append(dt)
        print(f"A{r}: recompute {a['recompute'][-1]:.2f}, disk {a['disk'][-1]:.4f}, memo {a['memo'][-1]:.4f}",
              file=sys.stderr, flush=True)
    max_diff = float(np.max(np.abs(np.asarray(recomputed) - np.asarray(from_disk))))

    b = {"disk": [], "no_cache": [], "disk_scoring": [], "no_cache_scoring": []}
    best_texts = set()
    for r in range(args.repeats):
        for mode in ("disk", "no_cache"):
            if mode == "no_cache":
                npy.unlink()
            fresh = RecogniserScorer(scorer.recogniser, scorer.embedder, _labels())
            dt, result = timeit(lambda: bootstrap(kind.pool, fresh, features, settings))
            b[mode].append(dt)
            b[f"{mode}_scoring"].append(result.scoring_seconds)
            best_texts.add((result.best.text, round(result.best.score, 6)))
            assert npy.exists()
        print(f"B{r}: disk {b['disk'][-1]:.3f}, no cache {b['no_cache'][-1]:.2f}", file=sys.stderr, flush=True)

    med = _common.med
    data = {
        "benchmark": "pool_cache", "machine": info, "pool_size": len(pool), "sample": args.sample,
        "npy_bytes": npy.stat().st_size, "scorer_load_seconds": round(load_seconds, 2),
        "first_fill_seconds": first_fill, "same_object": a, "fresh_object_bootstrap": b,
        "max_abs_diff_recomputed_vs_disk": max_diff, "bootstrap_best_identical": len(best_texts) == 1,
        "medians": {
            "recompute": med(a["recompute"]), "disk": med(a["disk"]), "memo": med(a["memo"]),
            "bootstrap_disk": med(b["disk"]), "bootstrap_no_cache": med(b["no_cache"]),
        },
    }
    data["speedups"] = {
        "disk_vs_recompute": data["medians"]["recompute"] / data["medians"]["disk"],
        "memo_vs_recompute": data["medians"]["recompute"] / data["medians"]["memo"],
        "bootstrap_disk_vs_no_cache": data["medians"]["bootstrap_no_cache"] / data["medians"]["bootstrap_disk"],
    }
    data["machine"]["load_average_at_end"] = _common.load_average()
    path = _common.write_results(args.out, data)

    def cells(xs, digits):
        return ", ".join(f"{x:.{digits}f}" for x in xs)

    print(f"Machine: {_common.machine_line(info)}\n")
    print(f"Command: `{info['command']}` (MILS_HOME={home}); pool of {len(pool)} captions, sample `{args.sample}`, "
          f"{args.repeats} interleaved repeats; .npy {npy.stat().st_size / 2**20:.1f} MiB; first fill "
          f"(embed + save) {first_fill:.2f} s\n")
    m, sp = data["medians"], data["speedups"]
    rows = [
        ["A. recompute: `embed_texts(pool) @ v`", cells(a["recompute"], 2), f"{m['recompute']:.3f}", "1.0x (baseline)"],
        ["A. disk cache: `score_pool` reading the .npy", cells(a["disk"], 4), f"{m['disk']:.4f}", f"{sp['disk_vs_recompute']:.0f}x"],
        ["A. in-memory memo: `score_pool` again", cells(a["memo"], 4), f"{m['memo']:.4f}", f"{sp['memo_vs_recompute']:.0f}x"],
        ["B. bootstrap, fresh scorer, no .npy (embed + save)", cells(b["no_cache"], 2), f"{m['bootstrap_no_cache']:.3f}", "1.0x (baseline)"],
        ["B. bootstrap, fresh scorer, .npy on disk", cells(b["disk"], 4), f"{m['bootstrap_disk']:.4f}", f"{sp['bootstrap_disk_vs_no_cache']:.0f}x"],
    ]
    print(_common.md_table(["what", "seconds per repeat", "median s", "speed-up"], rows))
    print(f"\nRecomputed vs cached scores: max |diff| = {max_diff:.2e}; every bootstrap chose the same best "
          f"caption: {'yes' if data['bootstrap_best_identical'] else 'NO'}. In B the optimizer's own scoring_seconds "
          f"(score_pool only) had medians {med(b['no_cache_scoring']):.3f} s (no cache) / {med(b['disk_scoring']):.4f} s (disk).")
    print(f"\nResults: {path}")


def _labels():
    from worker.models.recogniser_scorer import imagenet_labels

    return imagenet_labels()


if __name__ == "__main__":
    main()
