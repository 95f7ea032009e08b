"""The embedded LLM on llama.cpp (xllamacpp, the default) against transformers int8 (the default before):
load time cold and warm, prompt and decode tokens/s, peak RSS, and whether the same seed gives the
same text. Each measurement runs in a fresh child process (its own peak RSS, cold caches on a new
MILS_HOME), one after another, on the same prompt: a real step-1 prompt of the chelsea job (the
image-caption template with the K=8 best bootstrap captions).

    python benchmarks/llm_engines.py [--home /tmp/mils-bench-engines] [--threads 2] [--tokens 200]

Writes benchmarks/results/llm_engines.json and prints a markdown table. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ENGINES = {"llama.cpp": "embedded", "transformers int8": "embedded-transformers"}


def step_one_conversation() -> list[dict]:
    """The generator's conversation at step 1 of `mils caption --sample chelsea` (default settings)."""
    from worker.core import bootstrap
    from worker.kinds import TASK_KINDS, job_settings
    from worker.media import load_image_file
    from worker.media.samples import sample_path
    from worker.models import load_scorer
    from worker.kinds.base import JobInput

    kind = TASK_KINDS["image-caption"]
    settings = job_settings("image-caption", "embedded", "embedded")
    media = load_image_file(sample_path("chelsea"))
    job = JobInput(data=media.data, name="chelsea.png", options={}, settings=settings)
    scorer = load_scorer("embedded")
    result = bootstrap(kind.initial_pool(job), scorer, scorer.encode_sample(kind.decode(job)), settings)
    return kind.template_for(job).messages(result.top, settings.candidates, settings.max_words)


def child(engine: str, conversation_file: str, tokens: int, threads: int) -> dict:
    """In a fresh process: load, time prompt and decode, check the seed, report peak RSS."""
    os.environ["MILS_LLM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    _common.quiet_transformers()
    from worker.models import load_generator

    conversation = json.loads(Path(conversation_file).read_text())
    started = time.perf_counter()
    generator = load_generator(ENGINES[engine])
    load = time.perf_counter() - started
    out = {"engine": engine, "load_seconds": round(load, 2), "version": generator.version}
    if engine == "llama.cpp":
        # The engine's own timings, with EOS ignored so that every run decodes `tokens` tokens.
        request = {"messages": conversation, "seed": 1, "temperature": 0.7, "top_p": 0.9, "max_tokens": tokens,
                   "ignore_eos": True, **generator.extra}
        answer = generator.send(request)
        timings = answer["timings"]
        out.update(prompt_tokens=timings["prompt_n"], prompt_tokens_per_second=round(timings["prompt_per_second"], 1),
                   new_tokens=timings["predicted_n"], decode_tokens_per_second=round(timings["predicted_per_second"], 1))
    else:
        prompt = generator.tokenizer(generator._prompt(conversation), return_tensors="pt", add_special_tokens=False)
        n_prompt = prompt["input_ids"].shape[1]
        with torch.inference_mode():
            t0 = time.perf_counter()
            generator.model(**prompt)  # the prompt alone: one forward pass
            prompt_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            output = generator.model.generate(**prompt, do_sample=True, temperature=0.7, top_p=0.9,
                                              max_new_tokens=tokens, min_new_tokens=tokens,
                                              pad_token_id=generator.tokenizer.pad_token_id)
            total = time.perf_counter() - t0
        new = output.shape[1] - n_prompt
        out.update(prompt_tokens=n_prompt, prompt_tokens_per_second=round(n_prompt / prompt_seconds, 1),
                   new_tokens=new, decode_tokens_per_second=round(new / max(total - prompt_seconds, 1e-9), 1))
    kwargs = dict(seed=5, temperature=0.7, top_p=0.9, max_tokens=120)
    first = generator.complete([conversation], **kwargs)
    out["same_seed_same_text"] = first == generator.complete([conversation], **kwargs)
    out["peak_rss_mib"] = _common.peak_rss_mib()
    return out


def run_child(args: argparse.Namespace, engine: str, home: Path, conversation_file: Path) -> dict:
    env = dict(os.environ, MILS_HOME=str(home), OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run([sys.executable, __file__, "--child", engine, "--conversation", str(conversation_file),
                          "--tokens", str(args.tokens), "--threads", str(args.threads)],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{engine} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prompt_cache_check(home: Path, threads: int, conversation: list[dict]) -> dict:
    """llama.cpp with 1 and 2 slots, its prompt cache on and off: does the same request, sent three
    times one after another, give the same text each time?"""
    os.environ["MILS_HOME"] = str(home)
    from worker.models.chat import start_llamacpp
    from worker.models.embedded_llm import EMBEDDED_SAMPLING, embedded_gguf

    result = {}
    for slots in (1, 2):
        for reproducible in (False, True):
            server = start_llamacpp(embedded_gguf(), slots=slots, threads=threads, reproducible=reproducible)
            request = {"messages": conversation, "seed": 5, "temperature": 0.7, "top_p": 0.9, "max_tokens": 120,
                       **EMBEDDED_SAMPLING}
            texts = [server.handle_chat_completions(request)["choices"][0]["message"]["content"] for _ in range(3)]
            result[f"{slots} slot(s), prompt cache {'off' if reproducible else 'on'}"] = len(set(texts)) == 1
            del server
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/mils-bench-engines")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=200, help="new tokens decoded per measurement")
    parser.add_argument("--cache-check-only", action="store_true",
                        help="only the same-text check (added to the results file of the last full run)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--conversation", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.conversation, args.tokens, args.threads)))
        return

    root = Path(args.home)
    if args.cache_check_only:
        _common.use_home(root / "prompt")
        conversation = json.loads((root / "conversation.json").read_text())
        path = _common.RESULTS_DIR / "llm_engines.json"
        data = json.loads(path.read_text())
        data["llama_cpp_same_text_on_repeat"] = prompt_cache_check(root / "llama.cpp", args.threads, conversation)
        data["cache_check_machine"] = _common.machine_info()
        _common.write_results("llm_engines", data)
        print(data["llama_cpp_same_text_on_repeat"])
        return
    shutil.rmtree(root, ignore_errors=True)
    _common.use_home(root / "prompt")
    _common.quiet_transformers()
    conversation = step_one_conversation()
    conversation_file = root / "conversation.json"
    conversation_file.write_text(json.dumps(conversation))
    info = _common.machine_info()
    rows = []
    for engine in ENGINES:
        cold_home = root / engine.replace(" ", "-")  # empty: the first load joins (and converts) the weights
        cold = run_child(args, engine, cold_home, conversation_file)
        warm = run_child(args, engine, cold_home, conversation_file)
        rows.append({**warm, "cold_load_seconds": cold["load_seconds"], "warm_load_seconds": warm["load_seconds"],
                     "cold_peak_rss_mib": cold["peak_rss_mib"]})
        print(f"{engine}: {rows[-1]}", file=sys.stderr, flush=True)
    cache = prompt_cache_check(root / "llama.cpp", args.threads, conversation)
    data = {"benchmark": "llm_engines", "machine": info, "threads": args.threads, "tokens": args.tokens,
            "engines": rows, "llama_cpp_same_text_on_repeat": cache}
    path = _common.write_results("llm_engines", data)
    base = rows[1]
    print(f"Machine: {_common.machine_line(info)}\n\nCommand: `{info['command']}`\n")
    print(_common.md_table(
        ["engine", "load cold s", "load warm s", "prompt tok/s", "decode tok/s", "decode vs transformers",
         "peak RSS MiB (warm)", "peak RSS MiB (cold)", "same seed, same text"],
        [[r["engine"], f"{r['cold_load_seconds']:.1f}", f"{r['warm_load_seconds']:.1f}",
          f"{r['prompt_tokens_per_second']:.0f}", f"{r['decode_tokens_per_second']:.1f}",
          f"{r['decode_tokens_per_second'] / base['decode_tokens_per_second']:.2f}x",
          f"{r['peak_rss_mib']:.0f}", f"{r['cold_peak_rss_mib']:.0f}", "yes" if r["same_seed_same_text"] else "NO"]
         for r in rows]))
    print(f"\nPrompt of {rows[0]['prompt_tokens']} tokens, {args.tokens} new tokens, {args.threads} threads. "
          f"llama.cpp, same request three times: {cache}.\n\nResults: {path}")


if __name__ == "__main__":
    main()
