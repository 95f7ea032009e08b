"""What the embedding scorers share: score = text embedding · sample vector, and a
disk cache of the fixed pool's text embeddings (computed once per scorer, not per image)."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Sequence

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
        def embed() -> np.ndarray:
            log.info("embedding the %d-text pool once for %s", len(pool), self.name)
            return self.embed_texts(pool)

        matrix = cached_matrix("pool-embeddings", key, embed)
        self._pool_memo = (key, matrix)
        return matrix


def cached_matrix(folder: str, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """compute() as float32, kept in the cache folder as KEY.npy and read from there next time."""
    path = cache_dir(folder) / f"{key}.npy"
    if path.exists():
        return np.load(path)
    matrix = np.asarray(compute(), dtype=np.float32)
    buffer = io.BytesIO()
    np.save(buffer, matrix)
    write_atomically(path, buffer.getvalue())  # concurrent workers never read half a file
    return matrix
