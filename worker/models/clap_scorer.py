"""Audio-text scorer on transformers' CLAP (any checkpoint id or local path): the cosine of
normalised CLAP embeddings. A recording longer than one clip is cut into clips of the job's
`clip_seconds`; the clips' embeddings are averaged (and renormalised) into one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from worker.media.audio import AudioInput
from worker.models.specs import ModelLoadError, pick_device
from worker.models.embedding import EmbeddingScorer

PRODUCTION_CLAP = "clap:laion/clap-htsat-unfused"
TEXT_BATCH = 256
CLIP_BATCH = 16


def _pooled(output) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected embedding;
    earlier versions return the tensor itself."""
    return getattr(output, "pooler_output", output)


class ClapScorer(EmbeddingScorer):
    def __init__(self, model, processor, name: str, version: str, device: str) -> None:
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.version = version
        self.device = device
        self.sampling_rate = processor.feature_extractor.sampling_rate

    @classmethod
    def from_spec(cls, spec: str, device: str | None = None) -> ClapScorer:
        """`ID_OR_PATH`: a Hugging Face CLAP checkpoint id or a local folder with its processor."""
        from transformers import ClapModel, ClapProcessor

        device = pick_device(device)
        if spec.startswith("~"):
            spec = str(Path(spec).expanduser())
        try:
            model = ClapModel.from_pretrained(
                spec, dtype=torch.float32 if device == "cpu" else torch.float16).to(device)
            processor = ClapProcessor.from_pretrained(spec)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load CLAP {spec!r}: {exc}") from None
        return cls(model, processor, f"clap:{spec}", _version(spec, model), device)

    @torch.inference_mode()
    def encode_sample(self, sample: AudioInput) -> np.ndarray:
        clips = sample.clips(self.sampling_rate)
        embeddings = []
        for start in range(0, len(clips), CLIP_BATCH):
            inputs = self.processor(audio=clips[start:start + CLIP_BATCH], sampling_rate=self.sampling_rate,
                                    return_tensors="pt").to(self.device)
            inputs["input_features"] = inputs["input_features"].to(self._dtype)
            embeddings.append(torch.nn.functional.normalize(
                _pooled(self.model.get_audio_features(**inputs)).float(), dim=-1).cpu().numpy())
        mean = np.concatenate(embeddings).mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        chunks = []
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = self.processor(text=list(texts[start:start + TEXT_BATCH]), padding=True, truncation=True,
                                    return_tensors="pt").to(self.device)
            features = _pooled(self.model.get_text_features(**tokens)).float()
            chunks.append(torch.nn.functional.normalize(features, dim=-1).cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def _version(spec: str, model: torch.nn.Module) -> str:
    """What identifies the weights (the pool-embedding cache is keyed by it)."""
    path = Path(spec)
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        stamp = ",".join(f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights)
        return f"clap:{path.resolve()}:{stamp}"
    commit = getattr(model.config, "_commit_hash", None)
    return f"clap:{spec}@{commit}" if commit else f"clap:{spec}"
