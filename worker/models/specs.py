"""What a model spec string says, without loading anything: the checks that refuse a spec that
cannot work (before a job with it is stored), what a spec runs on and compares, and the error every
adapter raises. A leaf: the adapters and the registry (worker.models) both import it, and it
imports neither, so the package has no import circle.
"""

from __future__ import annotations

from pathlib import Path


class ModelLoadError(RuntimeError):
    """A model named in the settings cannot be loaded; the message says which and why."""


DEFAULT_GENERATOR = "embedded"
DEFAULT_SCORER = "embedded"


def parse_openai_spec(spec: str) -> tuple[str, str | None]:
    """"openai:MODEL@BASE_URL" -> (MODEL, BASE_URL); "openai:MODEL" -> (MODEL, None), the base
    URL then comes from OPENAI_BASE_URL (or is OpenAI's own). ModelLoadError when malformed."""
    body = spec.removeprefix("openai:")
    model, at, url = body.rpartition("@")
    if not at or not url.startswith(("http://", "https://")):
        model, url = body, None  # no "@URL" (a model id may itself contain "@")
    if not model:
        raise ModelLoadError(f"generator {spec!r}: use openai:MODEL@BASE_URL, e.g. "
                             "openai:meta-llama/Llama-3.1-8B-Instruct@http://127.0.0.1:8000/v1")
    return model, url


def check_specs(generator: str, scorer: str) -> None:
    """Refuse model specs that cannot work, at once and before any model loads (a job with
    them is never stored). Specs that look right can still fail to load later."""
    check_generator_spec(generator)
    check_scorer_spec(scorer)


def check_generator_spec(spec: str) -> None:
    """Refuse a generator spec that cannot work, before any model loads or server is asked."""
    if spec.startswith("openai:"):
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


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"
