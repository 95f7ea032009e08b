"""A job's step 0 kept compactly (worker.store.pools): the pool stored once, each job's scores as
arrays, every reader seeing what it saw when step 0 was rows, and a step's state loaded from
the top K and the pool's keys. On SQLite and on the real PostgreSQL.

The reference for every reader is the same run stored the old way (a row per pool text, as
jobs stored before migration 0010 are): both layouts must read the same.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import datetime, timezone

import pytest
from alembic import command
from sqlalchemy import func, select
from tests.support.fakes import ScriptedGenerator, WordOverlapScorer

import worker.store.jobs
from worker.core import Score, Settings, bootstrap, run, step
from worker.kinds.prompts import CaptionTemplate
from worker.media import Media
from worker.store.db import alembic_config, open_store, upgrade
from worker.store.jobs import create_job, get_job, load_state, record_step
from worker.store.queries import (CANDIDATE_SORTS, candidates_page, count_candidates, history, history_csv,
                                  history_json, top_k)
from worker.store.schema import Candidate, Pool, PoolScores

TARGET = "a small orange cat sleeping on a red wooden chair in the garden"
EXTRA = ["sleeping", "kitten", "orange", "chair", "garden", "wooden"]
TEMPLATE = CaptionTemplate()
# Word-overlap scores are few distinct values: many ties, within step 0 and across steps, so the
# order's last key (the id) decides often.
POOL = [f"{subject} {place}" for subject in ("a cat", "a small dog", "an orange bird", "a red chair", "a garden gnome",
                                             "a wooden boat", "the sleeping kitten", "two people")
        for place in ("on a sofa", "in the garden", "on a red wooden chair", "by the sea", "in a small room",
                      "under a tree", "at night")]
POOL.insert(3, "A cat,  on a SOFA!")  # a duplicate once normalized: the pool is deduplicated first


class PartsScorer(WordOverlapScorer):
    """Word overlap whose score has parts, as the style-transfer scorer's does."""

    name = "fake-parts-scorer"

    def _score(self, features, texts):
        return [Score(total, {"overlap": total + 0.001 * len(t.split()), "length": -0.001 * len(t.split())})
                for total, t in zip(super()._score(features, texts), texts)]


@pytest.fixture
def Session(db_url):
    return open_store(db_url, auto_upgrade=True)


@pytest.fixture
def rows_layout(monkeypatch):
    """Within the test, step 0 is stored as rows, as before migration 0010."""
    def use_rows(on: bool = True):
        if on:
            monkeypatch.setattr(worker.store.jobs, "record_pool", lambda *args: False)
        else:
            monkeypatch.undo()
    return use_rows


def store_job(Session, settings: Settings, scorer_class=WordOverlapScorer, pool=POOL, steps: int | None = None) -> int:
    """A job run through the store as the runner does it: each step from `load_state`."""
    with Session.begin() as session:
        job_id = create_job(session, task="image-caption", settings=settings, generator="fake", scorer="fake",
                            media=Media(data=b"not decoded here", media_type="image/png", name="x.png")).id
    scorer = scorer_class()
    features = scorer.encode_sample(TARGET)
    result = bootstrap(pool, scorer, features, settings)
    for number in range(settings.steps + 1 if steps is None else steps + 1):
        if number:
            with Session() as session:
                state = load_state(session, job_id)
            result = step(state, ScriptedGenerator(extra_words=EXTRA), scorer, features, TEMPLATE, settings)
        with Session.begin() as session:
            record_step(session, get_job(session, job_id, for_update=True), result, datetime.now(timezone.utc))
    return job_id


def in_memory(settings: Settings, scorer_class=WordOverlapScorer, pool=POOL):
    return list(run(pool, ScriptedGenerator(extra_words=EXTRA), scorer_class(), TARGET, TEMPLATE, settings))


def without_job(rows):
    return [{k: v for k, v in row.items() if k != "job_id"} for row in rows]


def walk(session, job_id, limit, **filters):
    """Every page of candidates_page, concatenated."""
    rows, cursor = [], None
    while True:
        page = candidates_page(session, job_id, cursor=cursor, limit=limit, **filters)
        rows += without_job(page.items)
        assert len(page.items) <= limit
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


SETTINGS = Settings(steps=4, top_k=5, candidates=6, seed=3, max_words=12, prompts_per_step=2)


# --------------------------------------------------------------------------- storage


def test_jobs_of_the_same_pool_store_its_texts_once(Session, rows_layout):
    a = store_job(Session, SETTINGS)
    b = store_job(Session, SETTINGS.replace(seed=4))
    other = store_job(Session, SETTINGS, pool=POOL[:20])
    rows_layout()
    old = store_job(Session, SETTINGS)
    with Session() as session:
        pools = session.execute(select(Pool.sha256, Pool.size).order_by(Pool.size)).all()
        assert [size for _, size in pools] == [19, len(POOL) - 1]  # deduplicated
        by_job = dict(session.execute(select(PoolScores.job_id, PoolScores.pool_sha256)).all())
        assert by_job[a] == by_job[b] == pools[1][0] and by_job[other] == pools[0][0] and old not in by_job
        # Rows of step 0: the top K only, where the old layout had one per pool text.
        count = lambda job: session.scalar(select(func.count()).select_from(Candidate)  # noqa: E731
                                           .where(Candidate.job_id == job, Candidate.step == 0))
        assert count(a) == SETTINGS.top_k and count(old) == len(POOL) - 1


@pytest.mark.parametrize("scorer_class", [WordOverlapScorer, PartsScorer])
def test_the_history_holds_every_pool_text_with_its_exact_score(Session, scorer_class):
    job_id = store_job(Session, SETTINGS, scorer_class)
    expected = in_memory(SETTINGS, scorer_class)
    with Session() as session:
        recorded = list(history(session, job_id))
        csv_rows = list(csv.DictReader(io.StringIO("".join(history_csv(history(session, job_id))))))
        json_rows = json.loads("".join(history_json(history(session, job_id))))
    for result in expected:
        want = sorted(result.candidates, key=lambda c: -c.score)  # best first, equal scores in the order scored
        got = [r for r in recorded if r["step"] == result.step]
        assert [(r["text"], r["score"], r["details"]) for r in got] == [
            (c.text, c.score, dict(c.details) or None) for c in want]
        ranks = {c.text: rank for rank, c in enumerate(result.top, 1)}
        assert [r["rank"] for r in got] == [ranks.get(c.text) for c in want]
    # The exports carry the same floats, bit for bit.
    assert [float(r["score"]) for r in csv_rows] == [r["score"] for r in recorded]
    assert json_rows == json.loads(json.dumps(recorded))
    if scorer_class is PartsScorer:
        assert list(recorded[0]["details"]) == ["overlap", "length"]  # in the scorer's order


# --------------------------------------------------------------------------- readers: both layouts alike


@pytest.mark.parametrize("epsilon", [0.0, 1.0])
def test_every_reader_sees_the_compact_job_as_the_same_job_stored_as_rows(Session, rows_layout, epsilon):
    settings = SETTINGS.replace(epsilon=epsilon)
    compact = store_job(Session, settings)
    rows_layout()
    rows = store_job(Session, settings)
    with Session() as session:
        assert session.get(PoolScores, compact) is not None and session.get(PoolScores, rows) is None
        assert without_job(history(session, compact)) == without_job(history(session, rows))
        for step_no in range(settings.steps + 1):
            assert top_k(session, compact, step_no) == top_k(session, rows, step_no)
        for sort in CANDIDATE_SORTS:
            for filters in [{}, {"step": 0}, {"step": 2}, {"top_only": True}, {"q": "CAT"}, {"q": "kitten"},
                            {"step": 0, "top_only": True, "q": "a"}, {"q": "100%_"}]:
                want = walk(session, rows, 1000, sort=sort, **filters)
                for limit in (1, 7):  # page ends inside the pool, across it and the later steps
                    assert walk(session, compact, limit, sort=sort, **filters) == want, (sort, filters, limit)
                assert count_candidates(session, compact, **filters) == len(want)
                assert count_candidates(session, rows, **filters) == len(want)
        # Exploration took pool texts outside step 0's top K into later tops: they got rows then.
        anchors = session.scalar(select(func.count()).select_from(Candidate)
                                 .where(Candidate.job_id == compact, Candidate.step == 0))
        assert (anchors > settings.top_k) == (epsilon > 0)


def test_a_pool_entry_id_is_its_position_minus_the_pool_size(Session):
    job_id = store_job(Session, SETTINGS, steps=1)
    with Session() as session:
        page = candidates_page(session, job_id, sort="score", limit=1)
        # The cursor holds (score, id) of the last row: the lowest score of the pool, the first such.
        score, candidate_id = json.loads(__import__("base64").urlsafe_b64decode(page.next_cursor + "=="))
        pool = sorted(enumerate(in_memory(SETTINGS)[0].candidates), key=lambda ic: ic[1].score)
        assert (score, candidate_id) == (pool[0][1].score, pool[0][0] - len(pool))


# --------------------------------------------------------------------------- the state of a step


@pytest.mark.parametrize("epsilon", [0.0, 0.5])
@pytest.mark.parametrize("layout", ["compact", "rows"])
def test_load_state_at_each_step_equals_the_in_memory_state(Session, rows_layout, epsilon, layout):
    settings = SETTINGS.replace(epsilon=epsilon, steps=5)
    if layout == "rows":
        rows_layout()
    job_id = store_job(Session, settings)
    expected = in_memory(settings)
    assert any(r.improved for r in expected[1:]) and any(not r.improved for r in expected[1:])
    # The job's state after each step k, from a store that holds steps 0..k only.
    for k, want in enumerate(expected):
        partial = store_job(Session, settings, steps=k)
        with Session() as session:
            assert load_state(session, partial) == want.state, k
    with Session() as session:
        assert load_state(session, job_id) == expected[-1].state


def test_a_job_stored_as_rows_goes_on_from_the_compact_layout_code(Session, rows_layout):
    """A job whose step 0 was stored as rows (before migration 0010) resumes after the upgrade
    and ends where an uninterrupted run ends."""
    rows_layout()
    job_id = store_job(Session, SETTINGS, steps=2)
    rows_layout(False)
    with Session() as session:
        state = load_state(session, job_id)
    scorer = WordOverlapScorer()
    features = scorer.encode_sample(TARGET)
    while state.step < SETTINGS.steps:
        result = step(state, ScriptedGenerator(extra_words=EXTRA), scorer, features, TEMPLATE, SETTINGS)
        with Session.begin() as session:
            record_step(session, get_job(session, job_id, for_update=True), result, datetime.now(timezone.utc))
        with Session() as session:
            state = load_state(session, job_id)
    assert state == in_memory(SETTINGS)[-1].state
    with Session() as session:
        assert session.get(PoolScores, job_id) is None


def test_downgrading_below_0010_writes_step_0_back_as_rows(db_url, rows_layout):
    Session = open_store(db_url, auto_upgrade=True)
    compact = store_job(Session, SETTINGS.replace(epsilon=1.0), PartsScorer)
    with Session() as session:
        before = Counter((r["step"], r["rank"], r["score"], r["text"], json.dumps(r["details"]))
                         for r in history(session, compact))
    command.downgrade(alembic_config(db_url), "0009")
    with Session() as session:
        after = session.execute(select(Candidate.step, Candidate.rank, Candidate.score, Candidate.text,
                                       Candidate.details).where(Candidate.job_id == compact)).all()
    assert Counter((s, r, sc, t, json.dumps(d)) for s, r, sc, t, d in after) == before
    upgrade(db_url)
    with Session() as session:
        assert load_state(session, compact).step == SETTINGS.steps
