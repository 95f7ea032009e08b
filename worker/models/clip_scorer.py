"""Image-text scorer on open_clip: cosine of normalised CLIP/SigLIP embeddings."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from worker.models.specs import ModelLoadError, pick_device
from worker.models.embedding import EmbeddingScorer

PRODUCTION_SCORER = "open_clip:ViT-SO400M-14-SigLIP@webli"
TEXT_BATCH = 256


class OpenClipScorer(EmbeddingScorer):
    def __init__(self, model, preprocess, tokenizer, name: str, version: str, device: str) -> None:
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        self.version = version
        self.device = device

    @classmethod
    def from_spec(cls, spec: str, device: str | None = None) -> OpenClipScorer:
        """`ARCH[@PRETRAINED]`: PRETRAINED is an open_clip tag, a checkpoint file, or "random"
        (random weights, for tests and speed measurements). ARCH may be a model-config JSON file."""
        import open_clip

        device = pick_device(device)
        arch, _, pretrained = spec.partition("@")
        if arch.endswith(".json"):
            if not Path(arch).is_file():
                raise ModelLoadError(f"open_clip config {arch!r}: no such file")
            open_clip.add_model_config(arch)
            arch = Path(arch).stem
        if arch not in open_clip.list_models():
            raise ModelLoadError(f"unknown open_clip architecture {arch!r}")
        if not pretrained:
            tags = open_clip.list_pretrained_tags_by_model(arch)
            if not tags:
                raise ModelLoadError(f"open_clip {arch!r} has no pretrained tag: name one after '@'")
            pretrained = tags[0]
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch,
                pretrained=None if pretrained == "random" else pretrained,
                device=device,
                # Half precision on a GPU; open_clip's "pure" modes keep LayerNorm stable.
                precision="fp32" if device == "cpu" else "pure_fp16",
            )
            tokenizer = open_clip.get_tokenizer(arch)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"cannot load open_clip {spec!r}: {exc}") from None
        name = f"open_clip:{arch}@{pretrained}"
        return cls(model, preprocess, tokenizer, name, _weights_version(name, pretrained, model), device)

    @torch.inference_mode()
    def encode_sample(self, sample: Image.Image) -> np.ndarray:
        pixels = self.preprocess(sample)[None].to(self.device, dtype=self._dtype)
        features = self.model.encode_image(pixels, normalize=True)
        return features[0].float().cpu().numpy()

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        chunks = []
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = self.tokenizer(list(texts[start : start + TEXT_BATCH])).to(self.device)
            chunks.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def _weights_version(name: str, pretrained: str, model: torch.nn.Module) -> str:
    """What identifies the weights (the pool-embedding cache is keyed by it)."""
    if pretrained == "random":  # every random init is different
        digest = hashlib.sha256()
        for tensor in model.state_dict().values():
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
        return f"{name}:{digest.hexdigest()[:16]}"
    if Path(pretrained).is_file():
        stat = Path(pretrained).stat()
        return f"{name}:{stat.st_size}:{stat.st_mtime_ns}"
    return name
