"""Batches side by side: what differs between them (settings, models, prompt and pool), their
caption metrics per step against the same references, what an item cost, and, over the items they
share, whether a difference in the final captions' CIDEr or METEOR is beyond noise.

    compare_batches(sessions, names, references=None)     the comparison, as plain data
    cached_comparison(sessions, names)                    the same, kept while no batch changes

The first batch is the baseline. For each other batch and metric, the paired per-item
differences (that batch's score of an item minus the baseline's, items matched by key) get a
bootstrap confidence interval of their mean: scipy.stats.bootstrap, BCa (bias-corrected and
accelerated; Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 14), with a fixed
seed so the same batches give the same interval. An interval that holds 0 says the difference is
within what resampling the items gives. Per-item CIDEr depends on the document frequencies of the
references evaluated: both batches' items are scored against the same references, in one call
per batch over the shared items, so an item's two CIDEr-D values are comparable.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.batches import batch_references, captions_by_step, described_settings, setting_differences
from worker.core import SettingsError
from worker.datasets import Dataset
from worker.evaluation import caption_metrics
from worker.store.batches import batch_cost, get_batch, progress
from worker.store.schema import BatchItem, Step

PAIRED_METRICS = ("CIDEr", "METEOR")
RESAMPLES = 9999
CONFIDENCE = 0.95


def paired_interval(differences: Sequence[float], *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                    seed: int = 0) -> tuple[float, float]:
    """The BCa bootstrap interval of the mean of `differences` (scipy.stats.bootstrap, `seed`).
    All differences equal: that value at both ends (no resample can vary it; BCa is undefined)."""
    import numpy as np
    from scipy.stats import bootstrap

    values = np.asarray(differences, dtype=float)
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    found = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=resamples, method="BCa",
                      random_state=np.random.default_rng(seed))
    return float(found.confidence_interval.low), float(found.confidence_interval.high)


def _described(session: Session, name: str) -> dict:
    batch = get_batch(session, name)
    state = progress(session, batch)
    return {"name": batch.name, **described_settings(batch), "items": state.items,
            "succeeded": state.by_status.get("succeeded", 0), "cost": batch_cost(session, batch.id)}


def compare_batches(sessions: sessionmaker[Session], names: Sequence[str], references: Dataset | None = None, *,
                    confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Compare batches `names` (two or more; the first is the baseline) against `references`
    (default: the baseline's own references). Returns {"batches": [...], "differences": [...],
    "metrics": {name: {"per_step": [...], "final": {...}}}, "paired": [...], ...}. SettingsError
    for fewer than two names or a name twice; JobError for an unknown batch or no references."""
    if len(names) < 2 or len(set(names)) != len(names):
        raise SettingsError("compare two or more different batches (the first is the baseline)")
    if not 0 < confidence < 1:
        raise SettingsError(f"confidence must be between 0 and 1, not {confidence}")
    captions: dict[str, tuple[dict, dict]] = {}
    with sessions() as session:
        batches = [_described(session, name) for name in names]
        refs, _ = batch_references(session, get_batch(session, names[0]), references)
        for batch in batches:
            captions[batch["name"]] = captions_by_step(session, get_batch(session, batch["name"]).id,
                                                        batch["settings"]["steps"])
    baseline = names[0]
    shared = set(captions[baseline][0]).intersection(*(captions[n][0] for n in names)) & set(refs)
    # Every batch's runs (final, each step, the shared items' finals) in one evaluation: one Java
    # tokenizer and one METEOR process for the whole comparison; each run is still scored alone.
    runs = {}
    for name in names:
        final, by_step = captions[name]
        runs[name, "final"] = final
        runs.update(((name, step), texts) for step, texts in by_step.items())
        if shared:
            runs[name, "shared"] = {k: final[k] for k in shared}
    computed = caption_metrics(refs, runs, per_item=PAIRED_METRICS)
    per_item = {name: computed.pop((name, "shared"))["per_item"] for name in names if shared}
    for values in computed.values():
        values.pop("per_item", None)
    metrics = {name: {"final": computed[name, "final"],
                      "per_step": [{"step": step, **computed[name, step]} for step in sorted(captions[name][1])]}
               for name in names}
    keys = sorted(shared)
    paired = []
    for name in names[1:]:
        entry: dict[str, Any] = {"baseline": baseline, "batch": name, "items": len(keys), "metrics": {}}
        for metric in PAIRED_METRICS if keys else ():
            ours, theirs = per_item[name][metric], per_item[baseline][metric]
            differences = [ours[k] - theirs[k] for k in keys]
            low, high = paired_interval(differences, confidence=confidence, resamples=resamples, seed=seed)
            entry["metrics"][metric] = {
                "baseline_mean": sum(theirs[k] for k in keys) / len(keys), "mean": sum(ours[k] for k in keys) / len(keys),
                "difference": sum(differences) / len(keys), "low": low, "high": high,
                "beyond_noise": low > 0 or high < 0, "per_item": dict(zip(keys, differences))}
        paired.append(entry)
    return {"batches": batches, "differences": setting_differences(batches), "metrics": metrics, "paired": paired,
            "references": "the baseline's own" if references is None else references.name,
            "confidence": confidence, "resamples": resamples, "seed": seed, "method": "BCa"}


# The web's comparisons: each costs seconds of pycocoevalcap (Java) per batch, and a page view or a
# script polling the API would pay them again for the same answer.
_CACHE_SIZE = 16
_cache: OrderedDict[tuple, dict] = OrderedDict()
_cache_lock = threading.Lock()


def batches_state(session: Session, names: Sequence[str]) -> tuple:
    """What a comparison of `names` is made of, as a key: per batch its id, settings, items and
    the number and last id of its jobs' committed steps (a step is never changed once committed,
    so a new step, item or setting, e.g. a batch continued to more steps, changes the key)."""
    state = []
    for name in names:
        batch = get_batch(session, name)
        items, steps, last = session.execute(
            select(func.count(func.distinct(BatchItem.id)), func.count(Step.id), func.max(Step.id))
            .select_from(BatchItem).outerjoin(Step, Step.job_id == BatchItem.job_id)
            .where(BatchItem.batch_id == batch.id)).one()
        state.append((batch.id, repr(sorted(batch.settings.items())), items, steps, last))
    return tuple(state)


def cached_comparison(sessions: sessionmaker[Session], names: Sequence[str]) -> dict:
    """`compare_batches(sessions, names)` (the baseline's own references), computed once while none
    of the batches changes (`batches_state`); the last 16 comparisons are kept in this process.
    Errors as compare_batches (an unknown batch: JobError, before anything is computed)."""
    if len(names) < 2 or len(set(names)) != len(names):
        raise SettingsError("compare two or more different batches (the first is the baseline)")
    with sessions() as session:
        key = (tuple(names), batches_state(session, names))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    found = compare_batches(sessions, names)
    with _cache_lock:
        _cache[key] = found
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return found
