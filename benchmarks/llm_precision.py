"""Decoding speed of the embedded Qwen2.5-Coder-0.5B on the CPU: fp32 vs bf16 vs int8 dynamic quantisation.

    python benchmarks/llm_precision.py [--home /tmp/mils-bench] [--repeats 3] [--tokens 100] [--no-production-row]

Loads the de-quantised safetensors cache `MILS_HOME/cache/models/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M`
(built by the first `load_generator("embedded")`; this script builds it if it is missing) with
AutoModelForCausalLM in fp32 and in bf16, and makes the int8 variant with `worker.models.llm.int8_dynamic`
on an fp32 copy (what `load_embedded_qwen` does on a CPU).

Prompt: `worker.kinds.image.IMAGE_CAPTION.messages` with the first 8 distinct captions of the image pool as
examples (scores 0.3000, 0.2900, ... 0.2300), n=15, max_words=15, through the model's chat template.
Greedy decoding (do_sample=False), exactly --tokens new tokens (min_new_tokens = max_new_tokens), batch 1,
no_repeat_ngram_size=0. One warm-up generation per variant, then --repeats timed rounds, interleaved
(fp32, bf16, int8, ... in each round) so load changes hit all variants alike. Each round also times a
1-token generation (prefill + 1 token) to split prefill from decoding.

The extra row "int8 + no_repeat_ngram_size=6" is the production configuration's logits processor
(`EMBEDDED_NO_REPEAT_NGRAM`) on the int8 model, still greedy.
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
    parser.add_argument("--home", default=_common.DEFAULT_HOME, help="MILS_HOME holding the LLM cache")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--no-production-row", action="store_true", help="skip int8 + no_repeat_ngram_size=6")
    parser.add_argument("--out", default="llm_precision")
    args = parser.parse_args()

    home = _common.use_home(args.home)
    _common.quiet_transformers()
    info = _common.machine_info()
    info["mils_home"] = str(home)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from worker.config import cache_dir
    from worker.core import Scored, normalize
    from worker.models import llm
    from worker.kinds import TASK_KINDS
    from worker.kinds.image import IMAGE_CAPTION

    path = cache_dir("models") / llm.EMBEDDED_QWEN_NAME
    if not (path / "config.json").exists():
        print(f"building the LLM cache in {path} (about a minute) ...", file=sys.stderr, flush=True)
        from worker.models import load_generator

        load_generator("embedded")
        load_generator.cache_clear()

    examples, seen = [], set()
    for text in TASK_KINDS["image-caption"].pool:
        if normalize(text) not in seen:
            seen.add(normalize(text))
            examples.append(Scored(text, round(0.30 - 0.01 * len(examples), 4)))
        if len(examples) == 8:
            break
    messages = IMAGE_CAPTION.messages(examples, n=15, max_words=15)
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    prompt_tokens = batch["input_ids"].shape[1]

    def load(dtype):
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()

    load_s = {}
    s = time.perf_counter(); fp32 = load(torch.float32); load_s["fp32"] = time.perf_counter() - s
    s = time.perf_counter(); bf16 = load(torch.bfloat16); load_s["bf16"] = time.perf_counter() - s
    s = time.perf_counter(); int8 = llm.int8_dynamic(load(torch.float32)); load_s["int8"] = time.perf_counter() - s
    variants = [("fp32", fp32, 0), ("bf16", bf16, 0), ("int8", int8, 0)]
    if not args.no_production_row:
        variants.append(("int8 + no_repeat_ngram_size=6", int8, llm.EMBEDDED_NO_REPEAT_NGRAM))

    @torch.inference_mode()
    def generate(model, n_tokens, no_repeat):
        s = time.perf_counter()
        out = model.generate(**batch, do_sample=False, max_new_tokens=n_tokens, min_new_tokens=n_tokens,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                             no_repeat_ngram_size=no_repeat)
        dt = time.perf_counter() - s
        new = out[0, prompt_tokens:]
        assert len(new) == n_tokens, f"generated {len(new)} tokens, asked for {n_tokens}"
        return dt, new.tolist()

    outputs = {}
    for name, model, no_repeat in variants:  # warm-up
        dt, outputs[name] = generate(model, args.tokens, no_repeat)
        print(f"warm-up {name}: {dt:.2f} s", file=sys.stderr, flush=True)

    times = {name: {"full": [], "one": []} for name, _, _ in variants}
    for r in range(args.repeats):
        for name, model, no_repeat in variants:
            dt, new = generate(model, args.tokens, no_repeat)
            assert new == outputs[name], f"{name}: greedy output changed between runs"
            times[name]["full"].append(dt)
            dt1, _ = generate(model, 1, no_repeat)
            times[name]["one"].append(dt1)
            print(f"round {r} {name}: {times[name]['full'][-1]:.2f} s / 1-token {dt1:.3f} s", file=sys.stderr, flush=True)

    med = _common.med
    base = outputs["fp32"]
    results = {}
    for name, _, _ in variants:
        full, one = med(times[name]["full"]), med(times[name]["one"])
        same = next((i for i, (a, b) in enumerate(zip(outputs[name], base)) if a != b), len(base))
        results[name] = {
            "full_seconds": times[name]["full"], "one_token_seconds": times[name]["one"],
            "median_full_seconds": full, "median_one_token_seconds": one,
            "tokens_per_second": args.tokens / full,
            "decode_tokens_per_second": (args.tokens - 1) / (full - one),
            "tokens_equal_to_fp32_prefix": same,
            "text": tokenizer.decode(outputs[name], skip_special_tokens=True),
        }
    for name in results:
        results[name]["ratio_vs_fp32"] = results[name]["tokens_per_second"] / results["fp32"]["tokens_per_second"]
        results[name]["decode_ratio_vs_fp32"] = (results[name]["decode_tokens_per_second"]
                                                 / results["fp32"]["decode_tokens_per_second"])
    data = {"benchmark": "llm_precision", "machine": info, "model_dir": str(path), "prompt_tokens": prompt_tokens,
            "new_tokens": args.tokens, "repeats": args.repeats, "load_seconds": load_s, "results": results,
            "peak_rss_mib": _common.peak_rss_mib()}
    data["machine"]["load_average_at_end"] = _common.load_average()
    out_path = _common.write_results(args.out, data)

    print(f"Machine: {_common.machine_line(info)}\n")
    print(f"Command: `{info['command']}` (MILS_HOME={home}); prompt {prompt_tokens} tokens, greedy, exactly "
          f"{args.tokens} new tokens, batch 1, {args.repeats} interleaved timed repeats after one warm-up each\n")
    rows = []
    for name, r in results.items():
        rows.append([name, ", ".join(f"{x:.2f}" for x in r["full_seconds"]), f"{r['median_full_seconds']:.2f}",
                     f"{r['tokens_per_second']:.1f}", f"{r['ratio_vs_fp32']:.2f}x",
                     f"{r['median_one_token_seconds']:.3f}", f"{r['decode_tokens_per_second']:.1f}",
                     f"{r['decode_ratio_vs_fp32']:.2f}x", f"{r['tokens_equal_to_fp32_prefix']}/{args.tokens}"])
    print(_common.md_table(["variant", f"{args.tokens}-token generate s (per repeat)", "median s", "tokens/s",
                            "vs fp32", "1-token (prefill) s", "decode tokens/s", "decode vs fp32",
                            "greedy tokens equal to fp32 (prefix)"], rows))
    print(f"\nLoad times (from_pretrained, + quantisation for int8): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in load_s.items())
          + f". Peak RSS with all three in memory: {data['peak_rss_mib']:.0f} MiB.")
    print(f"\nResults: {out_path}")


if __name__ == "__main__":
    main()
