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
# The spec checks live in a leaf module the adapters import too; named here for the package's users.
from worker.models.specs import (CPU_SPECS, DEFAULT_GENERATOR, DEFAULT_SCORER, ModelLoadError,
                                 check_generator_spec, check_renderer_spec, check_scorer_spec, check_specs,
                                 has_feature_maps, is_embedded_generator, pick_device, runs_on_cpu, scorer_modality,
                                 served_by_engine)

__all__ = ["CPU_SPECS", "DEFAULT_GENERATOR", "DEFAULT_SCORER", "ModelLoadError", "check_generator_spec",
           "check_renderer_spec", "check_scorer_spec", "check_specs", "has_feature_maps", "is_embedded_generator",
           "load_generator", "load_scorer", "pick_device", "runs_on_cpu", "scorer_modality", "served_by_engine"]


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


def _from_factory(spec: str):
    module_name, _, attribute = spec.removeprefix("py:").partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelLoadError(f"cannot import model factory {spec!r}: {exc}") from None
    return factory()
