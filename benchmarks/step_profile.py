"""Where the time of a default embedded job goes, step by step; model load cold vs cached; peak memory.

    python benchmarks/step_profile.py [--home /tmp/mils-bench] [--samples chelsea coffee] [--skip-load]

1. Load times, each in a fresh process (subprocess of this script):
   - cold: a new, empty MILS_HOME subfolder, so the embedded LLM's GGUF parts are joined, sha256-checked
     and de-quantised into the safetensors cache (and the scorer embeds its 1000 ImageNet labels once);
   - cached: a second process on the same subfolder.
   Each child reports its own peak RSS (ru_maxrss). The subfolder is deleted afterwards unless --keep-cold-home.
2. The jobs: for each sample, the default embedded job (seed 0) run in this process through
   `worker.runner.run_in_process` on a SQLite store in MILS_HOME, as `mils caption --sample NAME` does.
   Per step: wall time of `execute_step`, the optimizer's own generation/scoring seconds, and
   overhead = wall - generation - scoring. The overhead is split by wrapping (in this process only)
   `worker.runner.load_state`, `worker.runner.record_step` and `worker.runner._sample_features`, and by timing
   every session commit (SQLAlchemy before_commit -> after_commit, which includes the final flush).
   Note: prompt building and list parsing happen inside `generate_candidates`, so they are part of the
   generation seconds, not of the overhead.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def load_child(home: str) -> None:
    """Runs in a fresh process: time the imports and the two model loads; print one JSON line."""
    _common.use_home(home)
    t0 = time.perf_counter()
    _common.quiet_transformers()
    from worker.models import llm, load_generator, load_scorer

    imports = time.perf_counter() - t0
    parts: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            s = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                parts[name] += time.perf_counter() - s
        return wrapper

    llm._build_embedded_qwen_cache = timed("build_cache", llm._build_embedded_qwen_cache)
    llm.int8_dynamic = timed("int8_quantise", llm.int8_dynamic)
    cache_existed = (llm.cache_dir("models") / llm.EMBEDDED_QWEN_NAME / "config.json").exists()
    t1 = time.perf_counter()
    load_generator("embedded")
    generator = time.perf_counter() - t1
    t2 = time.perf_counter()
    load_scorer("embedded")
    scorer = time.perf_counter() - t2
    print(json.dumps({
        "llm_cache_existed": cache_existed, "import_seconds": round(imports, 2),
        "generator_seconds": round(generator, 2), "scorer_seconds": round(scorer, 2),
        "build_cache_seconds": round(parts["build_cache"], 2),
        "int8_quantise_seconds": round(parts["int8_quantise"], 2),
        "peak_rss_mib": _common.peak_rss_mib(),
    }))


def run_load_child(home: Path) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--load-child", str(home)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"load child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_seconds"] = round(wall, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=_common.DEFAULT_HOME, help="MILS_HOME for this run")
    parser.add_argument("--samples", nargs="*", default=["chelsea", "coffee"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-load", action="store_true", help="skip the cold/cached load measurement")
    parser.add_argument("--keep-cold-home", action="store_true")
    parser.add_argument("--out", default="step_profile")
    parser.add_argument("--load-child", metavar="HOME", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_child:
        load_child(args.load_child)
        return

    home = _common.use_home(args.home)
    info = _common.machine_info()
    info["mils_home"] = str(home)
    data: dict = {"benchmark": "step_profile", "machine": info}

    # 1. Cold and cached loads, each in a fresh process.
    if not args.skip_load:
        cold_home = home / f"cold-load-{int(time.time())}"
        shutil.rmtree(cold_home, ignore_errors=True)
        print(f"cold load in {cold_home} ...", file=sys.stderr, flush=True)
        cold = run_load_child(cold_home)
        print(f"cold: {cold}", file=sys.stderr, flush=True)
        cached = run_load_child(cold_home)
        print(f"cached: {cached}", file=sys.stderr, flush=True)
        assert not cold["llm_cache_existed"] and cached["llm_cache_existed"]
        data["load"] = {"cold": cold, "cached": cached}
        if not args.keep_cold_home:
            shutil.rmtree(cold_home, ignore_errors=True)

    # 2. The jobs, in this process.
    _common.quiet_transformers()
    from sqlalchemy import event

    from worker import runner as jobs
    from worker.store.jobs import create_job
    from worker.media import decode_image, load_image_file
    from worker.media.samples import sample_path
    from worker.store.db import open_store
    from worker.kinds import default_settings

    acc: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            s = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                acc[name] += time.perf_counter() - s
        return wrapper

    jobs.load_state = timed("state_load", jobs.load_state)
    jobs.record_step = timed("record", jobs.record_step)
    jobs._sample_features = timed("features", jobs._sample_features)

    Session = open_store()
    commit_started: dict[int, float] = {}

    @event.listens_for(Session, "before_commit")
    def _before(session):
        commit_started[id(session)] = time.perf_counter()

    @event.listens_for(Session, "after_commit")
    def _after(session):
        s = commit_started.pop(id(session), None)
        if s is not None:
            acc["commit"] += time.perf_counter() - s

    t0 = time.perf_counter()
    models = jobs.default_models("embedded", "embedded")
    data["in_process_load_seconds"] = round(time.perf_counter() - t0, 2)
    print(f"models loaded in-process in {data['in_process_load_seconds']} s", file=sys.stderr, flush=True)

    settings = default_settings("image-caption", "embedded").replace(seed=args.seed)
    if settings.prompts_per_step > settings.candidates:
        settings = settings.replace(prompts_per_step=settings.candidates)
    data["settings"] = settings.to_dict()
    data["samples"] = []
    for name in args.samples:
        media = load_image_file(sample_path(name))
        # Informational: the scorer's encode_sample alone (the job computes it again in step 0).
        s = time.perf_counter()
        models.scorer.encode_sample(decode_image(media.data))
        encode_alone = time.perf_counter() - s
        with Session.begin() as session:
            job_id = create_job(session, task="image-caption", settings=settings,
                                     generator="embedded", scorer="embedded", media=media).id
        steps = []
        iterator = jobs.run_in_process(Session, job_id)
        while True:
            acc.clear()
            s = time.perf_counter()
            result = next(iterator, None)
            wall = time.perf_counter() - s
            if result is None:  # the final execute_step call that finds the job finished
                final_check = wall
                break
            overhead = wall - result.generation_seconds - result.scoring_seconds
            known = acc["state_load"] + acc["record"] + acc["commit"] + acc["features"]
            steps.append({
                "step": result.step, "wall": wall, "generation": result.generation_seconds,
                "scoring": result.scoring_seconds, "overhead": overhead,
                "state_load": acc["state_load"], "record": acc["record"], "commit": acc["commit"],
                "features": acc["features"], "other": overhead - known,
                "n_new": len(result.candidates), "best_score": result.best.score,
            })
            print(f"{name} step {result.step}: wall {wall:.2f} s", file=sys.stderr, flush=True)
        totals = {k: sum(st[k] for st in steps) for k in
                  ("wall", "generation", "scoring", "overhead", "state_load", "record", "commit", "features", "other")}
        data["samples"].append({"name": name, "job_id": job_id, "steps": steps, "totals": totals,
                                "final_check_seconds": final_check, "encode_sample_alone_seconds": encode_alone})
    data["peak_rss_mib"] = _common.peak_rss_mib()
    data["machine"]["load_average_at_end"] = _common.load_average()
    path = _common.write_results(args.out, data)

    # Markdown.
    print(f"Machine: {_common.machine_line(info)}\n")
    print(f"Command: `{info['command']}` (MILS_HOME={home})\n")
    if "load" in data:
        rows = []
        for label, r in (("cold (fresh MILS_HOME)", data["load"]["cold"]), ("cached (2nd process)", data["load"]["cached"])):
            rows.append([label, f"{r['process_wall_seconds']:.1f}", f"{r['import_seconds']:.1f}",
                         f"{r['generator_seconds']:.1f}", f"{r['build_cache_seconds']:.1f}",
                         f"{r['int8_quantise_seconds']:.1f}", f"{r['scorer_seconds']:.1f}", f"{r['peak_rss_mib']:.0f}"])
        c, w = data["load"]["cold"], data["load"]["cached"]
        print("Model load, each in a fresh process:\n")
        print(_common.md_table(["load", "process wall s", "imports s", "LLM load s", "of which GGUF join+check+dequantise s",
                                "of which int8 quantise s", "scorer load s", "peak RSS MiB"], rows))
        print(f"\nLLM load cold / cached = {c['generator_seconds']:.1f} / {w['generator_seconds']:.1f} s = "
              f"{c['generator_seconds'] / w['generator_seconds']:.1f}x; whole process "
              f"{c['process_wall_seconds'] / w['process_wall_seconds']:.1f}x.\n")
    print(f"In-process load (cache warm) before the jobs: {data['in_process_load_seconds']:.1f} s. "
          f"Peak RSS of this process after both jobs: {data['peak_rss_mib']:.0f} MiB.\n")
    for sample in data["samples"]:
        print(f"`--sample {sample['name']}` (job {sample['job_id']}; encode_sample alone "
              f"{sample['encode_sample_alone_seconds']:.2f} s; the last execute_step call that finds the job done "
              f"{sample['final_check_seconds']:.2f} s):\n")
        rows = [[st["step"], st["n_new"], f"{st['wall']:.2f}", f"{st['generation']:.2f}", f"{st['scoring']:.3f}",
                 f"{st['overhead']:.3f}", f"{st['state_load']:.3f}", f"{st['record']:.3f}", f"{st['commit']:.3f}",
                 f"{st['features']:.3f}", f"{st['other']:.3f}", f"{st['best_score']:.4f}"] for st in sample["steps"]]
        t = sample["totals"]
        rows.append(["**total**", "", f"{t['wall']:.2f}", f"{t['generation']:.2f}", f"{t['scoring']:.3f}",
                     f"{t['overhead']:.3f}", f"{t['state_load']:.3f}", f"{t['record']:.3f}", f"{t['commit']:.3f}",
                     f"{t['features']:.3f}", f"{t['other']:.3f}", ""])
        rows.append(["**share of wall**", "", "100%", f"{100 * t['generation'] / t['wall']:.1f}%",
                     f"{100 * t['scoring'] / t['wall']:.1f}%", f"{100 * t['overhead'] / t['wall']:.1f}%",
                     "", "", "", "", "", ""])
        print(_common.md_table(["step", "new cands", "wall s", "generation s", "scoring s", "overhead s",
                                "state load s", "record s", "commits s", "image features s", "other s", "best"], rows))
        print()
    print(f"Results: {path}")


if __name__ == "__main__":
    main()
