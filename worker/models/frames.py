"""Scoring texts against a video with an image-text scorer: over frames sampled from it.

Two modes:
- "per-frame": a text's score is the mean of its scores against each frame;
- "pooled": the frames' features are averaged into one video feature first (mean pooling,
  rescaled to the frames' mean length), and the text is scored against that.
For a scorer whose score is a dot product with the sample's feature (CLIP's cosine, the
embedded scorer) the two rank texts identically and differ only in scale; for scorers that
are not linear in the sample's feature they differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.core import Scorer

FRAME_MODES = ("per-frame", "pooled")


class FrameFeatures(list):
    """The features a FrameScorer scores against (one per frame, or one pooled), carrying `seen`:
    {"frames": [what the image scorer saw in each frame]} when the image scorer tells (the
    embedded one does, see RecogniserScorer.encode_sample), else None."""

    seen: dict | None = None


class FrameScorer:
    def __init__(self, image_scorer: Scorer, mode: str = "per-frame") -> None:
        if mode not in FRAME_MODES:
            raise ValueError(f"frame mode must be one of {FRAME_MODES}, not {mode!r}")
        self.image_scorer = image_scorer
        self.mode = mode
        self.name = f"{image_scorer.name}+frames:{mode}"
        self.version = getattr(image_scorer, "version", "")

    def encode_sample(self, frames: Sequence[Any]) -> FrameFeatures:
        features = [self.image_scorer.encode_sample(frame) for frame in frames]
        seen = [getattr(feature, "seen", None) for feature in features]
        result = FrameFeatures(features)
        if self.mode == "pooled":
            try:
                stacked = np.stack(features).astype(np.float32)
            except (TypeError, ValueError):
                raise ValueError(f"the pooled frame mode needs sample features that are vectors; "
                                 f"{self.image_scorer.name} gives {type(features[0]).__name__}") from None
            mean = stacked.mean(axis=0)
            # Keep the scale of one frame's feature: an average of unit vectors is shorter.
            mean *= np.linalg.norm(stacked, axis=1).mean() / max(np.linalg.norm(mean), 1e-12)
            result = FrameFeatures([mean.astype(np.float32)])
        result.seen = {"frames": seen} if seen and all(s is not None for s in seen) else None
        return result

    def score(self, features: list[Any], texts: Sequence[str]) -> list[float]:
        return self._mean_over_frames(features, texts, pool=False)

    def score_pool(self, features: list[Any], pool: Sequence[str]) -> list[float]:
        return self._mean_over_frames(features, pool, pool=True)

    def _mean_over_frames(self, features: list[Any], texts: Sequence[str], pool: bool) -> list[float]:
        scorer = self.image_scorer
        if hasattr(scorer, "embed_texts"):  # an embedding scorer: embed the texts once, not per frame
            embeddings = scorer.pool_embeddings(texts) if pool else scorer.embed_texts(texts)
            return (embeddings @ np.stack(features).T).mean(axis=1).tolist()
        score = scorer.score_pool if pool else scorer.score
        per_frame = np.array([score(f, texts) for f in features])  # (frames, texts)
        return per_frame.mean(axis=0).tolist()
