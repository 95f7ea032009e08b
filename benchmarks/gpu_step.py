"""One MILS step's LLM work for many jobs at once on a GPU, with random weights in a production
config: what a GPU worker's step costs, for the at-scale projection (docs/scale.md).

Llama-3.1-8B's architecture (the paper's generator; hidden 4096, 32 layers, GQA 32/8 heads,
vocabulary 128,256) in bfloat16 with random weights: decoding speed depends on the shapes, not on
the weights. Each job's step is one prompt of PROMPT tokens (the task text and the top K with
scores) and NEW tokens of answer (N numbered captions); B jobs in flight are one batch, decoded
with transformers' `generate` and a static KV cache (vLLM's continuous batching does better; this
is a floor). Prints JSON: per batch size, the seconds per step of the whole batch and tokens/s.

    python benchmarks/gpu_step.py [--tiny]    # --tiny: a 2-layer model on the CPU, to check the script
"""

from __future__ import annotations

import argparse
import json
import time

LLAMA_31_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                   num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
                   rms_norm_eps=1e-5, tie_word_embeddings=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model on the CPU, to check the script")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--new", type=int, default=384)  # ~20 captions of ~15 words, numbered
    args = parser.parse_args()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    device = "cpu" if args.tiny else "cuda"
    shape = dict(LLAMA_31_8B, num_hidden_layers=2, hidden_size=256, intermediate_size=512, vocab_size=1000) \
        if args.tiny else LLAMA_31_8B
    config = LlamaConfig(**shape)
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    load_seconds = time.perf_counter() - started
    results = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "model": "Llama-3.1-8B shapes, "
               "random weights" if not args.tiny else "tiny", "prompt_tokens": args.prompt, "new_tokens": args.new,
               "init_seconds": load_seconds, "runs": []}
    for batch in args.batches:
        ids = torch.randint(10, config.vocab_size - 10, (batch, args.prompt), device=device)
        kwargs = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=True, top_p=0.9,
                      temperature=0.7, pad_token_id=0, cache_implementation="static")
        try:
            with torch.inference_mode():
                model.generate(ids[:, :32], **dict(kwargs, max_new_tokens=8, min_new_tokens=8))  # warm-up
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = model.generate(ids, **kwargs)
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - t0
        except torch.OutOfMemoryError as exc:
            results["runs"].append({"batch": batch, "error": str(exc)[:200]})
            break
        generated = (out.shape[1] - args.prompt) * batch
        results["runs"].append({"batch": batch, "step_seconds": seconds, "new_tokens_per_second": generated / seconds,
                                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None})
        print(json.dumps(results["runs"][-1]), flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
