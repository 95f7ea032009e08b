"""Would a language model's likelihood make a fluency guard here? The embedded Qwen2.5-Coder-0.5B
(the only offline LM; on transformers, since llama.cpp's server returns no log-probabilities of
given text) reads each caption after the frame `Caption:` up to a closing newline; the figure is
the mean log-probability per token (nats). Made-up good and degenerate captions, then 400 pool
captions (seed 0) for the spread of people's captions, and the time each takes.

    python benchmarks/fluency_lm.py [--home /tmp/mils-bench]

The first run in a home builds the de-quantised transformers copy of the model (about a minute).
Writes benchmarks/results/fluency_lm.json. Result (BENCHMARKS.md, "Would a language model's
likelihood make the fluency guard?"): it does not separate them, so worker.models.fluency counts
defects instead.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import _common  # noqa: E402
from _common import machine_info, write_results  # noqa: E402

EXAMPLES = [
    "There is a tabby cat on a rug.", "There is a cat by cat.",
    "A photo of a bicycle helmet against the volleyball.",
    "(photo of a bicycle helmet against a bicycle helmet against a volleyball)",
    "A tripod in an older man.", "A weathered street lamp near sunset]",
    "Four small jellyfish at the surface of the water. This is a good mention.",
    "Four small jellyfish at the surface of the water.", "0100: A bicycle helmet on a table.",
    "espresso at a restaurant", "An espresso at a restaurant.",
    "An astronaut in a white space suit posing next to an American flag.", "cat cat cat cat",
    "A cup of coffee on a saucer.", "A man with a camera on a tripod in a park.",
]


def mean_logprobs(model, tokenizer, texts: list[str], batch_size: int = 16):
    """Each text's mean log-probability per token (nats) after the frame `Caption:`, as an array."""
    import numpy as np
    import torch

    frame = tokenizer("Caption:", add_special_tokens=False)["input_ids"]
    out = []
    for start in range(0, len(texts), batch_size):
        bodies = [tokenizer(" " + t + "\n", add_special_tokens=False)["input_ids"] for t in texts[start:start + batch_size]]
        length = len(frame) + max(map(len, bodies))
        ids = torch.zeros((len(bodies), length), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, body in enumerate(bodies):
            ids[row, :len(frame) + len(body)] = torch.tensor(frame + body)
            mask[row, :len(frame) + len(body)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
        out += [float(logprobs[row, len(frame) - 1:len(frame) - 1 + len(body)].mean()) for row, body in enumerate(bodies)]
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=_common.DEFAULT_HOME, help="MILS_HOME for this run (its model cache)")
    args = parser.parse_args()
    _common.use_home(args.home)
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from worker.models.llm import int8_dynamic, load_embedded_transformers

    started = time.perf_counter()
    load_embedded_transformers()  # builds the de-quantised copy once (worker.models.llm)
    from worker.config import cache_dir
    from worker.models.embedded_llm import EMBEDDED_QWEN_NAME

    folder = str(cache_dir("models") / EMBEDDED_QWEN_NAME)
    model = int8_dynamic(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores = mean_logprobs(model, tokenizer, EXAMPLES)
    example_seconds = time.perf_counter() - started
    pool = [line.strip() for line in (ROOT / "worker/data/image_caption_pool.txt").read_text().splitlines() if line.strip()]
    sample = random.Random(0).sample(pool, 400)
    started = time.perf_counter()
    pool_scores = mean_logprobs(model, tokenizer, sample)
    pool_seconds = time.perf_counter() - started
    for text, value in zip(EXAMPLES, scores):
        print(f"{value:7.2f}  {text}")
    print(f"pool: p5 {np.percentile(pool_scores, 5):.2f} median {np.median(pool_scores):.2f}; "
          f"{pool_seconds / len(sample):.3f} s per caption; load {load_seconds:.1f} s")
    write_results("fluency_lm", {"machine": machine_info(), "load_seconds": round(load_seconds, 1),
                                 "examples": dict(zip(EXAMPLES, [round(float(v), 3) for v in scores])),
                                 "example_seconds": round(example_seconds, 2),
                                 "pool_p5": round(float(np.percentile(pool_scores, 5)), 3),
                                 "pool_median": round(float(np.median(pool_scores)), 3),
                                 "pool_seconds_per_caption": round(pool_seconds / len(sample), 4)})


if __name__ == "__main__":
    main()
