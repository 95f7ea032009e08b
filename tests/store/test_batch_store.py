"""A batch's progress, ETA and per-step evaluation read from the store, on SQLite and PostgreSQL
(whose timestamps come back naive and aware), with rows written as the workers leave them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from worker.core import Settings
from worker.media import Media
from worker.store.schema import Batch, BatchItem, JobStatus, Step, utcnow

STEPS = 3  # steps 0..3 per job


def add_job(session, batch, key: str, status: JobStatus, texts: list[str], finished_ago: float = 10.0):
    """A job of the batch with one Step row per text (its best after that step)."""
    from worker.store.jobs import create_job

    media = Media(data=key.encode(), media_type="image/png", name=f"{key}.png")
    job = create_job(session, task="image-caption", settings=Settings(steps=STEPS, top_k=2, candidates=2),
                     generator="g", scorer="s", media=media)
    job.status = status
    now = utcnow()
    for step, text in enumerate(texts):
        moment = now - timedelta(seconds=finished_ago - step)
        session.add(Step(job_id=job.id, step=step, started_at=moment, finished_at=moment, best_score=0.1 * step,
                         best_text=text, mean_topk=0.0, n_candidates=2, improved=True))
    session.add(BatchItem(batch_id=batch.id, item_key=key, position=len(batch.name) + int(key[1:]), source=key,
                          references=[f"reference of {key}"], job_id=job.id, queued=True))
    return job


@pytest.fixture
def filled(db_url):
    from worker.store.db import open_store, upgrade

    upgrade(db_url)
    sessions = open_store(db_url)
    with sessions.begin() as session:
        batch = Batch(name="b", task="image-caption", settings=Settings(steps=STEPS).to_dict(), generator="g",
                      scorer="s", options={}, sources={})
        session.add(batch)
        session.flush()
        add_job(session, batch, "k1", JobStatus.SUCCEEDED, ["a0", "a1", "a2", "a3"])
        add_job(session, batch, "k2", JobStatus.SUCCEEDED, ["b0", "b1"])  # patience stopped it after step 1
        add_job(session, batch, "k3", JobStatus.RUNNING, ["c0", "c1"], finished_ago=5)
        add_job(session, batch, "k4", JobStatus.CANCELLED, ["d0"])
        add_job(session, batch, "k5", JobStatus.QUEUED, [])
    return sessions


def test_progress_counts_what_is_left_of_unfinished_jobs_only(filled):
    from worker.store.batches import get_batch, progress

    with filled() as session:
        p = progress(session, get_batch(session, "b"))
    assert p.by_status == {"succeeded": 2, "running": 1, "cancelled": 1, "queued": 1}
    assert (p.jobs, p.done, p.finished) == (5, 3, False)
    assert (p.steps_done, p.steps_total) == (9, 20)
    # 9 steps finished over the last ~10 s: about 0.8 steps/s; left: k3's 2 steps and k5's 4.
    assert 0.5 < p.steps_per_second < 1.0
    assert p.eta_seconds == pytest.approx(6 / p.steps_per_second)


def test_a_job_that_stopped_early_keeps_its_last_best_in_later_steps(filled, monkeypatch):
    import worker.batches

    seen = {}

    def fake_metrics(references, runs):
        seen.update(references=references, runs=runs)
        return {run: {"items": len(captions), **{m: 0.5 for m in worker.batches.METRICS}}
                for run, captions in runs.items()}

    monkeypatch.setattr(worker.batches, "caption_metrics", fake_metrics)
    metrics = worker.batches.evaluate_batch(filled, "b")
    runs = seen["runs"]
    # Only succeeded jobs are evaluated; k2 stopped after step 1 and its "b1" stands for steps 2 and 3.
    assert runs["final"] == {"k1": "a3", "k2": "b1"}
    assert [runs[step] for step in range(STEPS + 1)] == [
        {"k1": "a0", "k2": "b0"}, {"k1": "a1", "k2": "b1"}, {"k1": "a2", "k2": "b1"}, {"k1": "a3", "k2": "b1"}]
    assert seen["references"]["k1"] == ["reference of k1"]
    assert [row["step"] for row in metrics["per_step"]] == [0, 1, 2, 3]
    from worker.store.batches import get_batch, latest_evaluation

    with filled() as session:
        stored = latest_evaluation(session, get_batch(session, "b").id)
    assert stored["items"] == 2 and stored["final"]["CIDEr"] == 0.5


def test_jobs_to_resume_are_the_stopped_ones_and_the_succeeded_ones_with_fewer_steps(filled):
    """The JSON path into the settings (steps) reads alike on SQLite and PostgreSQL."""
    from worker.store.batches import get_batch, jobs_to_resume
    from worker.store.schema import Job

    with filled() as session:
        batch_id = get_batch(session, "b").id
        keys = dict(session.execute(select(Job.id, BatchItem.item_key).join(BatchItem, BatchItem.job_id == Job.id)).all())
        assert [keys[j] for j in jobs_to_resume(session, batch_id, STEPS)] == ["k4"]
        assert [keys[j] for j in jobs_to_resume(session, batch_id, STEPS + 1)] == ["k1", "k2", "k4"]
