"""Caption every bundled skimage photo with the default embedded job, as `mils caption --sample NAME`
does (default settings, seed 0, SQLite store in MILS_HOME), and report whether the steps after the
bootstrap improved on step 0.

    python benchmarks/skimage_photos.py [--home /tmp/mils-bench] [--seed 0] [--samples chelsea coffee]
        [--generator embedded-transformers]

Scores are seeded and deterministic; wall times depend on the machine's load. Results are written to
benchmarks/results/skimage_photos.json after every photo (a partial run keeps what it finished).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=_common.DEFAULT_HOME, help="MILS_HOME for this run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", nargs="*", help="subset of worker.media.samples.SKIMAGE_PHOTOS (default: all)")
    parser.add_argument("--generator", default="embedded", help="generator spec (default: embedded)")
    parser.add_argument("--out", default="skimage_photos", help="results file name (no extension)")
    args = parser.parse_args()

    home = _common.use_home(args.home)
    _common.quiet_transformers()
    info = _common.machine_info()
    info["mils_home"] = str(home)

    from worker.runner import default_models, run_in_process
    from worker.store.jobs import create_job
    from worker.media import load_image_file
    from worker.media.samples import SKIMAGE_PHOTOS, sample_path
    from worker.store.db import open_store
    from worker.kinds import job_settings

    names = args.samples or list(SKIMAGE_PHOTOS)
    unknown = [n for n in names if n not in SKIMAGE_PHOTOS]
    if unknown:
        parser.error(f"not skimage photos: {unknown}; known: {SKIMAGE_PHOTOS}")

    Session = open_store()
    started = time.perf_counter()
    default_models(args.generator, "embedded")  # cached per process, as in `mils caption`
    load_seconds = time.perf_counter() - started
    print(f"models loaded in {load_seconds:.1f} s", file=sys.stderr, flush=True)

    settings = job_settings("image-caption", args.generator, "embedded", seed=args.seed)

    data = {"benchmark": "skimage_photos", "generator": args.generator, "machine": info, "settings": settings.to_dict(),
            "model_load_seconds": round(load_seconds, 2), "photos": []}
    for name in names:
        media = load_image_file(sample_path(name))
        with Session.begin() as session:
            job_id = create_job(session, task="image-caption", settings=settings,
                                generator=args.generator, scorer="embedded", media=media).id
        t0 = time.perf_counter()
        steps = []
        for result in run_in_process(Session, job_id):
            steps.append({
                "step": result.step, "best_score": result.best.score, "best_text": result.best.text,
                "mean_topk": result.mean_topk, "n_new": len(result.candidates),
                "generation_seconds": round(result.generation_seconds, 2),
                "scoring_seconds": round(result.scoring_seconds, 3),
            })
        wall = time.perf_counter() - t0
        bests = [s["best_score"] for s in steps]
        row = {
            "name": name, "job_id": job_id, "steps_run": len(steps) - 1,
            "step0_score": bests[0], "step0_caption": steps[0]["best_text"],
            "final_score": bests[-1], "final_caption": steps[-1]["best_text"],
            "improved": bests[-1] > bests[0],
            "improving_step": next((s["step"] for s in steps if s["best_score"] > bests[0]), None),
            "monotone": all(b >= a for a, b in zip(bests, bests[1:])),
            "wall_seconds": round(wall, 1), "steps": steps,
        }
        data["photos"].append(row)
        data["machine"]["load_average_at_end"] = _common.load_average()
        _common.write_results(args.out, data)
        print(f"{name}: {row['step0_score']:.4f} -> {row['final_score']:.4f} "
              f"({'improved' if row['improved'] else 'no change'}) in {wall:.0f} s", file=sys.stderr, flush=True)

    photos = data["photos"]
    improved = sum(p["improved"] for p in photos)
    data["summary"] = {"improved": improved, "photos": len(photos),
                       "all_monotone": all(p["monotone"] for p in photos),
                       "total_wall_seconds": round(sum(p["wall_seconds"] for p in photos), 1),
                       "peak_rss_mib": _common.peak_rss_mib()}
    path = _common.write_results(args.out, data)

    print(f"Machine: {_common.machine_line(info)}\n")
    print(f"Command: `{info['command']}` (MILS_HOME={home}); models loaded in {load_seconds:.1f} s before the first job\n")
    rows = [[p["name"], f"{p['step0_score']:.4f}", p["step0_caption"], f"{p['final_score']:.4f}", p["final_caption"],
             "yes" if p["improved"] else "no", p["improving_step"] or "-", "yes" if p["monotone"] else "NO",
             f"{p['wall_seconds']:.0f}"] for p in photos]
    print(_common.md_table(["photo", "step-0 best", "step-0 caption", "final best", "final caption",
                            "final > step 0", "first better step", "best never decreased", "wall s"], rows))
    s = data["summary"]
    print(f"\n**{s['improved']} of {s['photos']} photos improved on step 0**; best never decreased on "
          f"{'every' if s['all_monotone'] else 'NOT every'} photo; total {s['total_wall_seconds']:.0f} s; "
          f"peak RSS {s['peak_rss_mib']:.0f} MiB.")
    print(f"\nResults: {path}")


if __name__ == "__main__":
    main()
