"""Model adapters behind the core's Generator and Scorer protocols, chosen by a spec string.

Generator specs:  "embedded" (offline Qwen2.5-Coder-0.5B-Instruct GGUF), or any Hugging Face
                  model id or local directory (e.g. "meta-llama/Llama-3.1-8B-Instruct").
Scorer specs:     "embedded" (offline EfficientNet-Lite0 + MiniLM), or
                  "open_clip:ARCH[@PRETRAINED]" where PRETRAINED is a tag or a checkpoint path
                  (e.g. "open_clip:ViT-SO400M-14-SigLIP@webli"); ARCH may be a model-config JSON path.

Models load lazily, once per process (a worker keeps them between jobs).
"""

from __future__ import annotations

import functools

from worker.core import Generator, Scorer


class ModelLoadError(RuntimeError):
    """A model named in the settings cannot be loaded; the message says which and why."""


DEFAULT_GENERATOR = "embedded"
DEFAULT_SCORER = "embedded"


@functools.cache
def load_generator(spec: str = DEFAULT_GENERATOR, device: str | None = None) -> Generator:
    from worker.models import llm

    if spec == "embedded":
        return llm.load_embedded_qwen(device)
    return llm.TransformersGenerator.from_pretrained(spec, device)


@functools.cache
def load_scorer(spec: str = DEFAULT_SCORER, device: str | None = None) -> Scorer:
    if spec == "embedded":
        from worker.models.recogniser_scorer import RecogniserScorer

        return RecogniserScorer.load()
    if spec.startswith("open_clip:"):
        from worker.models.clip_scorer import OpenClipScorer

        return OpenClipScorer.from_spec(spec.removeprefix("open_clip:"), device)
    raise ModelLoadError(
        f"unknown scorer {spec!r}: use 'embedded' or 'open_clip:ARCH[@PRETRAINED]'"
    )


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"
