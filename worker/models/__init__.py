"""Model adapters behind the core's Generator and Scorer protocols, chosen by a spec string.

Generator specs:  "embedded"  the offline Qwen2.5-Coder-0.5B-Instruct GGUF on llama.cpp, in process;
                  "gguf:PATH"  any GGUF file on llama.cpp, in process;
                  "openai:MODEL@BASE_URL"  any OpenAI-compatible server (vLLM, SGLang, llama.cpp's
                      server and `mils llm-server`, Ollama, `transformers serve`), e.g.
                      "openai:meta-llama/Llama-3.1-8B-Instruct@http://llm:8000/v1"; without "@URL",
                      OPENAI_BASE_URL; the key from OPENAI_API_KEY;
                  "embedded-transformers"  the embedded model on transformers (int8 on a CPU);
                  any other: a Hugging Face model id or local directory on transformers
                      (e.g. "meta-llama/Llama-3.1-8B-Instruct").
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
    check_generator_spec(spec)
    if spec.startswith("py:"):
        return _from_factory(spec)
    if spec == "embedded":
        from worker.models.embedded_llm import load_embedded

        return load_embedded()
    if spec.startswith("openai:"):
        from worker.models.chat import openai_generator

        return openai_generator(spec)
    if spec.startswith("gguf:"):
        from worker.models.chat import llamacpp_generator

        path = Path(spec.removeprefix("gguf:")).expanduser()
        return llamacpp_generator(path, name=spec, version=f"{path.name} {path.stat().st_size} bytes")
    from worker.models import llm

    if spec == "embedded-transformers":
        return llm.load_embedded_transformers(device)
    return llm.TransformersGenerator.from_pretrained(spec, device)


def check_specs(generator: str, scorer: str) -> None:
    """Refuse model specs that cannot work, at once and before any model loads (a job with
    them is never stored). Specs that look right can still fail to load later."""
    check_generator_spec(generator)
    check_scorer_spec(scorer)


def check_generator_spec(spec: str) -> None:
    """Refuse a generator spec that cannot work, before any model loads or server is asked."""
    if spec.startswith("openai:"):
        from worker.models.chat import parse_openai_spec

        parse_openai_spec(spec)
    elif spec.startswith("gguf:"):
        if not Path(spec.removeprefix("gguf:")).expanduser().is_file():
            raise ModelLoadError(f"GGUF {spec.removeprefix('gguf:')!r}: no such file")
    elif spec.startswith((".", "/", "~")) and not Path(spec).expanduser().is_dir():
        raise ModelLoadError(f"LLM {spec!r}: no such directory")


def served_by_engine(spec: str) -> bool:
    """Whether the generator is a serving engine that decodes a step's parallel requests together
    (so a step asks for its N candidates in several shares; see worker.kinds.job_settings)."""
    return spec.startswith("openai:")


def is_embedded_generator(spec: str) -> bool:
    """The embedded model, whichever engine runs it (CPU-sized task defaults)."""
    return spec in ("embedded", "embedded-transformers")


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
