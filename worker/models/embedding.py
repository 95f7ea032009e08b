"""What the embedding scorers share: score = text embedding · sample vector, and a
disk cache of the fixed pool's text embeddings (computed once per scorer, not per image)."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence

import numpy as np

from worker.config import cache_dir, write_atomically

log = logging.getLogger(__name__)


class EmbeddingScorer:
    name: str
    version: str  # identifies the text encoder's weights; part of the cache key

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised."""
        raise NotImplementedError

    def score(self, features: np.ndarray, texts: Sequence[str]) -> list[float]:
        return (self.embed_texts(texts) @ features).tolist()

    def score_pool(self, features: np.ndarray, pool: Sequence[str]) -> list[float]:
        return (self.pool_embeddings(pool) @ features).tolist()

    def pool_embeddings(self, pool: Sequence[str]) -> np.ndarray:
        key = hashlib.sha256("\n".join([self.version, *pool]).encode()).hexdigest()[:24]
        cached = getattr(self, "_pool_memo", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        path = cache_dir("pool-embeddings") / f"{key}.npy"
        if path.exists():
            matrix = np.load(path)
        else:
            log.info("embedding the %d-text pool once for %s", len(pool), self.name)
            matrix = self.embed_texts(pool).astype(np.float32)
            buffer = io.BytesIO()
            np.save(buffer, matrix)
            write_atomically(path, buffer.getvalue())  # concurrent workers never read half a file
        self._pool_memo = (key, matrix)
        return matrix
