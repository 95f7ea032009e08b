"""Text-to-image and instruction-editing pipelines (diffusers), with renders cached on disk.

`diffusers:ID_OR_PATH` names a pipeline: a Hugging Face id or a local folder that
`DiffusionPipeline.from_pretrained` loads (Stable Diffusion, SDXL, InstructPix2Pix, ...).
Every prompt is rendered from its own generator seeded with the job's seed, so a prompt's
render does not depend on the other prompts in its batch: the same (pipeline, seed, size,
steps, guidance, prompt) is the same picture, and it is rendered once (the cache).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import threading
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from worker.config import cache_dir, write_atomically
from worker.core import Score
from worker.media import Media
from worker.models.specs import ModelLoadError, check_renderer_spec, pick_device

RENDER_BATCH = 4
# A diffusers pipeline keeps per-call state (its scheduler's timesteps): one call at a time per
# process, for workers that run several jobs in threads (`mils worker --concurrency`).
_pipeline_lock = threading.Lock()


@functools.cache
def load_pipeline(spec: str, device: str | None = None):
    """The pipeline named by `diffusers:ID_OR_PATH`, on the GPU in half precision when there is one."""
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # no config notes or progress bars in job logs
    diffusers_logging.disable_progress_bar()
    check_renderer_spec(spec)
    source = spec.removeprefix("diffusers:")
    if source.startswith(("~", "/", ".")):
        source = str(Path(source).expanduser())
    device = pick_device(device)
    try:
        pipeline = DiffusionPipeline.from_pretrained(
            source, dtype=torch.float32 if device == "cpu" else torch.float16)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load diffusers pipeline {source!r}: {exc}") from None
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def pipeline_version(spec: str) -> str:
    """What identifies the weights (the render cache is keyed by it)."""
    path = Path(spec.removeprefix("diffusers:")).expanduser()
    if path.is_dir():
        weights = sorted(path.rglob("*.safetensors")) + sorted(path.rglob("*.bin"))
        return spec + ":" + ",".join(f"{w.relative_to(path)}:{w.stat().st_size}:{w.stat().st_mtime_ns}"
                                     for w in weights)
    return spec


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class Renderer:
    """Renders prompts (optionally editing an input image) with one pipeline and fixed settings."""

    def __init__(self, spec: str, *, seed: int, size: int, steps: int, guidance: float,
                 image: Image.Image | None = None, image_guidance: float | None = None) -> None:
        self.spec = spec
        self.seed, self.size, self.steps, self.guidance = seed, size, steps, guidance
        self.image, self.image_guidance = image, image_guidance
        key = {"pipeline": pipeline_version(spec), "seed": seed, "size": size, "steps": steps,
               "guidance": guidance, "image_guidance": image_guidance,
               "image": hashlib.sha256(image.tobytes()).hexdigest() if image is not None else None}
        self._folder = cache_dir("renders", hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24])

    def _path(self, prompt: str) -> Path:
        return self._folder / f"{hashlib.sha256(prompt.encode()).hexdigest()[:32]}.png"

    def render(self, prompts: Sequence[str]) -> list[bytes]:
        """PNG bytes per prompt, from the cache where it was rendered before."""
        missing = [p for p in dict.fromkeys(prompts) if not self._path(p).exists()]
        for start in range(0, len(missing), RENDER_BATCH):
            batch = missing[start:start + RENDER_BATCH]
            for prompt, image in zip(batch, self._run(batch), strict=True):
                write_atomically(self._path(prompt), png_bytes(image))
        return [self._path(p).read_bytes() for p in prompts]

    def _run(self, prompts: list[str]) -> list[Image.Image]:
        import torch

        pipeline = load_pipeline(self.spec)
        generators = [torch.Generator("cpu").manual_seed(self.seed) for _ in prompts]
        kwargs = dict(prompt=prompts, num_inference_steps=self.steps, guidance_scale=self.guidance,
                      generator=generators, output_type="pil")
        if self.image is None:
            kwargs.update(height=self.size, width=self.size)
        else:
            kwargs.update(image=[self.image] * len(prompts), image_guidance_scale=self.image_guidance)
        with _pipeline_lock:
            return list(pipeline(**kwargs).images)


def render_media(png: bytes) -> Media:
    """A render as media to keep with its candidate (stored by content hash)."""
    return Media(data=png, media_type="image/png", name=f"render-{hashlib.sha256(png).hexdigest()[:12]}.png")


class RenderScorer:
    """Text-to-image prompt rewriting: a candidate prompt is rendered, and the render is scored
    against the job's ORIGINAL prompt by an image-text scorer; or, for cross-modal arithmetic,
    against each of several texts, the scores averaged (the picture must match them all). Each
    score carries its render (`Score.made`), which the runner stores with the candidate."""

    def __init__(self, image_scorer, renderer: Renderer) -> None:
        self.image_scorer = image_scorer
        self.renderer = renderer
        self.name = f"{image_scorer.name}+render:{renderer.spec}"
        self.version = f"{getattr(image_scorer, 'version', '')}+{pipeline_version(renderer.spec)}"

    def encode_sample(self, targets: str | Sequence[str]) -> list[str]:
        return [targets] if isinstance(targets, str) else list(targets)

    def score(self, targets: list[str], prompts: Sequence[str]) -> list[Score]:
        scorer = self.image_scorer
        scores = []
        for png in self.renderer.render(prompts):
            picture = scorer.encode_sample(Image.open(io.BytesIO(png)).convert("RGB"))
            value = sum(float(s) for s in scorer.score(picture, targets)) / len(targets)
            scores.append(Score(value, made=render_media(png)))
        return scores

    score_pool = score
