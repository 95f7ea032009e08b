"""Model adapters behind the core's Generator and Scorer protocols, chosen by a spec string.

Generator specs:  "embedded" (offline Qwen2.5-Coder-0.5B-Instruct GGUF), or any Hugging Face
                  model id or local directory (e.g. "meta-llama/Llama-3.1-8B-Instruct").
Scorer specs:     "embedded" (offline EfficientNet-Lite0 + MiniLM), or
                  "open_clip:ARCH[@PRETRAINED]" where PRETRAINED is a tag or a checkpoint path
                  (e.g. "open_clip:ViT-SO400M-14-SigLIP@webli"); ARCH may be a model-config JSON path.

Both also take "py:MODULE:FACTORY": FACTORY() is called and must return an object with the
protocol's methods (custom models without changing this package; the tests' tiny fakes).

Models load lazily, once per process (a worker keeps them between jobs).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

from worker.core import Generator, Scorer


class ModelLoadError(RuntimeError):
    """A model named in the settings cannot be loaded; the message says which and why."""


DEFAULT_GENERATOR = "embedded"
DEFAULT_SCORER = "embedded"


@functools.cache
def load_generator(spec: str = DEFAULT_GENERATOR, device: str | None = None) -> Generator:
    from worker.models import llm

    if spec.startswith("py:"):
        return _from_factory(spec)
    if spec == "embedded":
        return llm.load_embedded_qwen(device)
    return llm.TransformersGenerator.from_pretrained(spec, device)


def check_specs(generator: str, scorer: str) -> None:
    """Refuse model specs that cannot work, at once and before any model loads (a job with
    them is never stored). Specs that look right can still fail to load later."""
    check_generator_spec(generator)
    check_scorer_spec(scorer)


def check_generator_spec(spec: str) -> None:
    if spec.startswith((".", "/", "~")) and not Path(spec).expanduser().is_dir():
        raise ModelLoadError(f"LLM {spec!r}: no such directory")


def check_scorer_spec(spec: str) -> None:
    """Refuse an unknown scorer spec at once, before any model is loaded."""
    if spec != "embedded" and not spec.startswith(("open_clip:", "clap:", "py:")):
        raise ModelLoadError(
            f"unknown scorer {spec!r}: use 'embedded', 'open_clip:ARCH[@PRETRAINED]', 'clap:ID_OR_PATH' "
            "or 'py:MODULE:FACTORY'"
        )
    if spec.startswith("clap:") and spec.removeprefix("clap:").startswith((".", "/", "~")) \
            and not Path(spec.removeprefix("clap:")).expanduser().is_dir():
        raise ModelLoadError(f"CLAP {spec.removeprefix('clap:')!r}: no such directory")


# What a scorer spec compares texts with: "image", "audio", or "any" (py: factories are the
# caller's to know). The embedded scorer is also the only one with CNN feature maps (style).
def scorer_modality(spec: str) -> str:
    if spec.startswith("py:"):
        return "any"
    return "audio" if spec.startswith("clap:") else "image"


def has_feature_maps(spec: str) -> bool:
    """Whether the scorer exposes CNN activations (style transfer's Gram matrices)."""
    return spec == "embedded" or spec.startswith("py:")


# Specs whose models run on the machine's CPU; any other names a real model (a GPU's work).
CPU_SPECS = ("embedded", "py:")


def runs_on_cpu(spec: str) -> bool:
    return spec.startswith(CPU_SPECS)


def check_renderer_spec(spec: str) -> None:
    """Refuse a renderer spec that cannot work, before a job with it is stored."""
    if not spec.startswith("diffusers:") or spec == "diffusers:":
        raise ModelLoadError(f"unknown renderer {spec!r}: use 'diffusers:ID_OR_PATH'")
    source = spec.removeprefix("diffusers:")
    if source.startswith((".", "/", "~")) and not Path(source).expanduser().is_dir():
        raise ModelLoadError(f"diffusers pipeline {source!r}: no such directory")


@functools.cache
def load_scorer(spec: str = DEFAULT_SCORER, device: str | None = None) -> Scorer:
    check_scorer_spec(spec)
    if spec.startswith("py:"):
        return _from_factory(spec)
    if spec == "embedded":
        from worker.models.recogniser_scorer import RecogniserScorer

        return RecogniserScorer.load()
    if spec.startswith("clap:"):
        from worker.models.clap_scorer import ClapScorer

        return ClapScorer.from_spec(spec.removeprefix("clap:"), device)
    from worker.models.clip_scorer import OpenClipScorer

    return OpenClipScorer.from_spec(spec.removeprefix("open_clip:"), device)


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _from_factory(spec: str):
    module_name, _, attribute = spec.removeprefix("py:").partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelLoadError(f"cannot import model factory {spec!r}: {exc}") from None
    return factory()
