"""A job's step 0 without a row per pool text: the pool stored once, each job's scores compactly.

Step 0 scores the whole bootstrap pool (5,000 texts bundled, about 29,000 in the paper), the
same texts for every job of a task. The pool (the deduplicated texts `core.bootstrap` scored, in
order) is stored once in `pools`, keyed by its version: the SHA-256 of the UTF-8 JSON array of
its texts. A job's step 0 is one `pool_scores` row: the scores as float64 in pool order (the
stored values are the scored floats, bit for bit), the parts of the score likewise.

Its step-0 candidates that a top K shows are rows of `candidates` too ("anchors"): `top_entries`
points at them, and their `rank` is their place in step 0's top K (None for one a later top K
took by exploration, epsilon > 0). Readers take step 0 from the pool and only the anchors' ranks
from their rows, so every reader sees each pool text once, as it saw the rows before.

A pool entry's id, the last key of the history's sort orders and cursors, is its position in
the pool minus the pool's size: negative, so pool entries come before every stored row and in
pool order, where rows inserted in that order used to sort. It is stable for the job's life.

Jobs without a `pool_scores` row keep step 0 as rows and every reader goes on reading them:
jobs stored before migration 0010 (not converted: both layouts are read), and jobs whose pool
candidates made something (a render to keep as an artifact) or whose scores have parts that
differ between texts (arrays by part name cannot hold them).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.core import Scored, normalize
from worker.store.schema import Candidate, Pool, PoolScores

# Pools' texts and keys decoded in this process, by version (content-addressed: valid for any database).
_CACHED_POOLS = 4


@dataclass(frozen=True)
class PoolTexts:
    """A stored pool's texts in order, their normalized keys, and each key's position."""

    sha256: str
    texts: tuple[str, ...]
    keys: frozenset[str]
    position: dict[str, int]


class PoolRow(NamedTuple):
    """A pool entry as a history reader sees a candidates row (same names)."""

    id: int  # position - pool size: negative, in pool order
    step: int
    rank: int | None
    score: float
    text: str
    details: dict[str, float] | None
    artifact_sha256: None = None


def _texts_json(texts: Sequence[str]) -> bytes:
    return json.dumps(list(texts), ensure_ascii=False, separators=(",", ":")).encode()


def _floats(values: Sequence[float]) -> bytes:
    packed = array("d", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def _unfloats(data: bytes) -> array:
    values = array("d")
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def pool_version(texts: Sequence[str]) -> str:
    """The version of the pool `texts` (in order): the SHA-256 of the UTF-8 JSON array of them."""
    return hashlib.sha256(_texts_json(texts)).hexdigest()


def store_pool(session: Session, texts: Sequence[str]) -> str:
    """The version (SHA-256) of the pool `texts`, stored once whoever asks first."""
    content = _texts_json(texts)
    sha256 = hashlib.sha256(content).hexdigest()
    if session.get(Pool, sha256) is None:
        try:
            with session.begin_nested():  # a savepoint: a lost race must not undo the caller's work
                session.add(Pool(sha256=sha256, size=len(texts), texts=zlib.compress(content)))
        except IntegrityError:
            # Another job of the same pool stored it meanwhile: the same content, keep theirs.
            if session.get(Pool, sha256) is None:
                raise
    return sha256


_pools: OrderedDict[str, PoolTexts] = OrderedDict()
_pools_lock = threading.Lock()


def pool_texts(session: Session, sha256: str) -> PoolTexts:
    """The stored pool of this version, decoded and keyed once per process."""
    with _pools_lock:
        if sha256 in _pools:
            _pools.move_to_end(sha256)
            return _pools[sha256]
    data = session.scalar(select(Pool.texts).where(Pool.sha256 == sha256))
    texts = tuple(json.loads(zlib.decompress(data)))
    # Keyed by today's normalization, like every text a state is rebuilt from (the Unicode-aware one).
    keys = [normalize(t) for t in texts]
    pool = PoolTexts(sha256, texts, frozenset(keys), {k: i for i, k in enumerate(keys)})
    with _pools_lock:
        _pools[sha256] = pool
        while len(_pools) > _CACHED_POOLS:
            _pools.popitem(last=False)
    return pool


def record_pool(session: Session, job_id: int, candidates: Sequence[Scored]) -> bool:
    """Keep the job's step 0 (its scored pool, in order) compactly; False, storing nothing, when
    it cannot be: a candidate made something, or the parts of the scores differ between texts."""
    names = tuple(name for name, _ in candidates[0].details) if candidates else ()
    if any(c.made is not None or tuple(name for name, _ in c.details) != names for c in candidates):
        return False
    sha256 = store_pool(session, [c.text for c in candidates])
    session.add(PoolScores(
        job_id=job_id, pool_sha256=sha256, scores=_floats([c.score for c in candidates]),
        detail_names=list(names),
        details=b"".join(_floats([c.details[i][1] for c in candidates]) for i in range(len(names))) or None))
    return True


def pool_of_job(session: Session, job_id: int) -> PoolTexts | None:
    """The job's pool, or None when its step 0 is stored as rows (or not stored yet)."""
    sha256 = session.scalar(select(PoolScores.pool_sha256).where(PoolScores.job_id == job_id))
    return None if sha256 is None else pool_texts(session, sha256)


def pool_scored(session: Session, job_id: int, pool: PoolTexts) -> list[Scored]:
    """The job's step-0 candidates in pool order, as `core.bootstrap` scored them."""
    scores, names, details = session.execute(
        select(PoolScores.scores, PoolScores.detail_names, PoolScores.details).where(PoolScores.job_id == job_id)).one()
    scores = _unfloats(scores)
    parts = _unfloats(details or b"")
    n = len(scores)
    return [Scored(text, score, tuple((name, parts[p * n + i]) for p, name in enumerate(names)))
            for i, (text, score) in enumerate(zip(pool.texts, scores, strict=True))]


def pool_rows(session: Session, job_id: int, pool: PoolTexts) -> list[PoolRow]:
    """The job's step 0 as history rows, in pool order, with the ranks its anchors hold."""
    ranked = session.execute(select(Candidate.text, Candidate.rank).where(
        Candidate.job_id == job_id, Candidate.step == 0, Candidate.rank.is_not(None)))
    rank_at = {pool.position[normalize(text)]: rank for text, rank in ranked}
    offset = len(pool.texts)
    return [PoolRow(i - offset, 0, rank_at.get(i), c.score, c.text, dict(c.details) or None)
            for i, c in enumerate(pool_scored(session, job_id, pool))]
