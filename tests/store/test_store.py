"""The durable job store (worker.store, worker.runner) on SQLite and on the real PostgreSQL.

Jobs run through `execute_step` / `run_in_process` with the tiny fakes of tests/support/fakes.py
(resolver: (generator spec, scorer spec) -> Models); no model library is loaded. The input
is a real PNG, decoded by the image-caption task kind, and step 0 scores its real pool.
"""

from __future__ import annotations

import io
import threading
from datetime import datetime, timezone

import pytest
from alembic import command
from tests.support.fakes import FailingGenerator, HiddenCaptionScorer, NonsenseGenerator, ScriptedGenerator
from PIL import Image
from sqlalchemy import func, inspect, select, update

import worker.runner
from worker.core import Settings, SettingsError, normalize, run
from worker.core.optimizer import greedy_top
from worker.runner import JobModels, execute_step, run_in_process
from worker.store.jobs import JobError, create_job, load_state
from worker.store.queries import history, step_rows
from worker.submission import job_request
from worker.media import Media
from worker.models import ModelLoadError
from worker.store import db as store_db
from worker.store.db import SchemaError, alembic_config, open_store, schema_revision, upgrade
from worker.store.schema import Batch, Candidate, Job, JobEvent, JobStatus, Step, TopEntry
from worker.kinds import TASK_KINDS, JobInput

TARGET = "a small orange cat sleeping on a red wooden chair in the garden"
EXTRA = ["sleeping", "kitten", "orange", "chair", "garden", "wooden"]
SETTINGS = Settings(steps=4, top_k=4, candidates=6, seed=3, max_words=12, prompts_per_step=2)
KIND = TASK_KINDS["image-caption"]
TABLES = {"artifacts", "jobs", "steps", "candidates", "top_entries"}


# --------------------------------------------------------------------------- helpers


def png_media(color=(200, 120, 40), size=(24, 16), name="cat.png") -> Media:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return Media(data=buffer.getvalue(), media_type="image/png", name=name)


class Resolver:
    """A `ModelResolver` giving fresh fakes on each call and remembering what it was asked."""

    def __init__(self, generator=lambda: ScriptedGenerator(extra_words=EXTRA), target: str = TARGET):
        self.make_generator = generator
        self.target = target
        self.asked: list[tuple[str, str]] = []
        self.scorers: list[HiddenCaptionScorer] = []

    def __call__(self, generator_spec: str, scorer_spec: str) -> JobModels:
        self.asked.append((generator_spec, scorer_spec))
        scorer = HiddenCaptionScorer(self.target)
        self.scorers.append(scorer)
        return JobModels(self.make_generator(), scorer)


def open_migrated(url: str):
    if not url.startswith("sqlite"):
        upgrade(url)
    return open_store(url)


def new_job(Session, settings: Settings = SETTINGS, media: Media | None = None) -> int:
    with Session.begin() as session:
        return create_job(session, task="image-caption", settings=settings, generator="fake-llm",
                          scorer="fake-scorer", media=media or png_media()).id


def get_job(Session, job_id: int) -> Job:
    with Session() as session:
        return session.get(Job, job_id)


def trajectory(Session, job_id: int):
    """Everything a job stored, in a comparable form (no ids, no timings)."""
    with Session() as session:
        steps = [(s.step, s.best_text, s.best_score, s.mean_topk, s.n_candidates, s.improved)
                 for s in step_rows(session, job_id)]
        candidates = session.execute(
            select(Candidate.step, Candidate.text, Candidate.text_key, Candidate.score, Candidate.rank)
            .where(Candidate.job_id == job_id).order_by(Candidate.step, Candidate.id)
        ).all()
        tops = session.execute(
            select(TopEntry.step, TopEntry.rank, Candidate.text, Candidate.score)
            .join(Candidate, Candidate.id == TopEntry.candidate_id)
            .where(TopEntry.job_id == job_id).order_by(TopEntry.step, TopEntry.rank)
        ).all()
    return steps, [tuple(c) for c in candidates], [tuple(t) for t in tops]


def plain_state(state):
    return (state.step, state.top, state.seen, state.scored, state.stale)


@pytest.fixture
def Session(db_url):
    return open_migrated(db_url)


def test_new_fakes_follow_the_protocols():
    import inspect as pyinspect

    from worker.core.protocols import Generator, Scorer

    for fake, protocol, method in [(HiddenCaptionScorer, Scorer, "encode_sample"),
                                   (FailingGenerator, Generator, "complete")]:
        want = pyinspect.signature(getattr(protocol, method)).parameters.values()
        got = pyinspect.signature(getattr(fake, method)).parameters.values()
        assert [(p.name, p.kind) for p in got] == [(p.name, p.kind) for p in want]


# --------------------------------------------------------------------------- schema


def test_open_store_migrates_sqlite_by_itself(sqlite_url):
    Session = open_store(sqlite_url)
    engine = store_db.get_engine(sqlite_url)
    current, head = schema_revision(engine)
    assert current == head is not None
    assert TABLES <= set(inspect(engine).get_table_names())
    job_id = new_job(Session)
    assert get_job(Session, job_id).status is JobStatus.QUEUED
    assert open_store(sqlite_url) is not None  # a second open finds it at head


def test_open_store_refuses_an_unmigrated_postgresql_until_upgraded(pg_url):
    with pytest.raises(SchemaError, match=r"schema is at nothing.*`mils db upgrade`"):
        open_store(pg_url)
    assert not TABLES & set(inspect(store_db.get_engine(pg_url)).get_table_names())  # nothing created
    upgrade(pg_url)
    Session = open_store(pg_url)
    job_id = new_job(Session)
    assert get_job(Session, job_id).status is JobStatus.QUEUED


def test_downgrade_to_base_and_upgrade_again(db_url):
    Session = open_migrated(db_url)
    new_job(Session)
    engine = store_db.get_engine(db_url)

    command.downgrade(alembic_config(db_url), "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    assert schema_revision(engine)[0] is None
    if not db_url.startswith("sqlite"):
        with pytest.raises(SchemaError, match="mils db upgrade"):
            open_store(db_url)

    upgrade(db_url)
    assert TABLES <= set(inspect(engine).get_table_names())
    Session = open_store(db_url)
    with Session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0  # a fresh schema
    assert new_job(Session) >= 1


# --------------------------------------------------------------------------- a full run


def test_a_full_run_stores_every_step_once(Session):
    job_id = new_job(Session)
    resolver = Resolver()
    results = list(run_in_process(Session, job_id, models_for=resolver))
    n, k = SETTINGS.steps, SETTINGS.top_k

    assert [r.step for r in results] == list(range(n + 1))
    assert set(resolver.asked) == {("fake-llm", "fake-scorer")}
    # The scorer was given what the task kind decodes the PNG into: a PIL image.
    samples = [s for scorer in resolver.scorers for s in scorer.samples]
    assert len(samples) == 1 and isinstance(samples[0], Image.Image) and samples[0].size == (24, 16)

    with Session() as session:
        steps = step_rows(session, job_id)
        assert [s.step for s in steps] == list(range(n + 1))
        best = [s.best_score for s in steps]
        assert best == sorted(best), "the best score went down"
        assert best[-1] > best[0], "the fakes should improve on the pool"

        keys = session.scalars(select(Candidate.text_key).where(Candidate.job_id == job_id)).all()
        assert len(keys) == len(set(keys))
        pool_keys = {normalize(t) for t in KIND.pool}
        assert sum(1 for s in steps if s.step == 0) == 1
        assert steps[0].n_candidates == len(pool_keys) >= 4000  # the real pool, deduplicated
        recorded = list(history(session, job_id))
        for s, result in zip(steps, results, strict=True):
            # The record of a step: its candidates best first, equal scores in the order scored.
            stored = [(r["text"], r["score"]) for r in recorded if r["step"] == s.step]
            assert stored == [(c.text, c.score) for c in greedy_top(result.candidates, len(result.candidates))]
            assert s.n_candidates == len(stored)
            assert (s.best_text, s.best_score) == (result.best.text, result.best.score)
            assert s.mean_topk == pytest.approx(result.mean_topk)
            assert s.improved == result.improved
            assert s.finished_at >= s.started_at

            top = session.execute(
                select(TopEntry.rank, Candidate.text, Candidate.score)
                .join(Candidate, Candidate.id == TopEntry.candidate_id)
                .where(TopEntry.job_id == job_id, TopEntry.step == s.step).order_by(TopEntry.rank)
            ).all()
            assert [r for r, _, _ in top] == list(range(1, k + 1))
            assert [(t, sc) for _, t, sc in top] == [(c.text, c.score) for c in result.top]
            assert [sc for _, _, sc in top] == sorted((sc for _, _, sc in top), reverse=True)
            assert (top[0][1], top[0][2]) == (s.best_text, s.best_score)
        # Step 0's top is the greedy top of the scored pool.
        assert [c.text for c in results[0].top] == [c.text for c in greedy_top(results[0].candidates, k)]
        # A candidate's rank is its place in the top right after its own step.
        ranked = session.execute(
            select(Candidate.step, Candidate.rank, Candidate.text)
            .where(Candidate.job_id == job_id, Candidate.rank.is_not(None))
        ).all()
        for step_no, rank, text in ranked:
            assert results[step_no].top[rank - 1].text == text

    job = get_job(Session, job_id)
    assert job.status is JobStatus.SUCCEEDED
    assert (job.result_text, job.result_score) == (steps[-1].best_text, steps[-1].best_score)
    assert job.error is None and job.finished_at is not None and job.started_at is not None
    assert job.model_versions == {
        "generator": {"name": "fake-scripted-generator", "version": ""},
        "scorer": {"name": "fake-hidden-caption-scorer", "version": ""},
    }
    # Finished: another call does nothing, stores nothing.
    assert execute_step(Session, job_id, models_for=resolver) is None
    assert trajectory(Session, job_id)[0] == [
        (s.step, s.best_text, s.best_score, s.mean_topk, s.n_candidates, s.improved) for s in steps
    ]


def test_patience_stops_the_job_early(Session):
    settings = SETTINGS.replace(steps=8, patience=1)
    job_id = new_job(Session, settings)
    results = list(run_in_process(Session, job_id, models_for=Resolver(generator=NonsenseGenerator)))
    assert [r.step for r in results] == [0, 1]  # nonsense never improves: stale after step 1
    assert get_job(Session, job_id).status is JobStatus.SUCCEEDED


def test_unknown_job_is_a_job_error_and_an_unknown_task_a_settings_error(Session):
    with pytest.raises(JobError, match="no job 999"):
        execute_step(Session, 999, models_for=Resolver())
    with pytest.raises(SettingsError, match="unknown task 'nope'"):
        job_request("nope", png_media(), {}, generator="g", scorer="embedded")


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("epsilon", [0.0, 0.5])
def test_resume_in_a_fresh_process_equals_an_uninterrupted_run(db_url, epsilon):
    settings = SETTINGS.replace(epsilon=epsilon, steps=5)
    Session = open_migrated(db_url)
    whole = new_job(Session, settings)
    list(run_in_process(Session, whole, models_for=Resolver()))

    resumed = new_job(Session, settings)
    for _ in range(3):  # step 0 and two more
        assert execute_step(Session, resumed, models_for=Resolver()) is not None
    assert [s[0] for s in trajectory(Session, resumed)[0]] == [0, 1, 2]

    # "A new process": no engine, no session factory, no feature cache, fresh plug-ins.
    store_db.forget_engines()
    worker.runner._features.clear()
    Session = open_store(db_url)
    rest = list(run_in_process(Session, resumed, models_for=Resolver()))
    assert [r.step for r in rest] == [3, 4, 5]

    assert trajectory(Session, resumed) == trajectory(Session, whole)
    a, b = get_job(Session, whole), get_job(Session, resumed)
    assert (a.status, a.result_text, a.result_score) == (b.status, b.result_text, b.result_score)
    assert b.status is JobStatus.SUCCEEDED


@pytest.mark.parametrize("epsilon", [0.0, 0.5])
def test_load_state_equals_the_in_memory_state(Session, epsilon):
    settings = SETTINGS.replace(epsilon=epsilon, steps=5)
    media = png_media()
    scorer = HiddenCaptionScorer(TARGET)
    in_memory = list(run(KIND.pool, ScriptedGenerator(extra_words=EXTRA), scorer,
                         KIND.decode(JobInput(media.data, media.name, {}, settings)), KIND.template, settings))
    assert any(r.improved for r in in_memory[1:]) and any(not r.improved for r in in_memory[1:])

    job_id = new_job(Session, settings, media)
    with Session() as session:
        assert load_state(session, job_id) is None  # before step 0
    for expected in in_memory:
        result = execute_step(Session, job_id, models_for=Resolver())
        assert result.step == expected.step
        with Session() as session:
            loaded = load_state(session, job_id)
        assert loaded.step == expected.state.step
        assert loaded.top == expected.state.top
        assert loaded.seen == expected.state.seen
        # Order counts too: ties are broken by it (epsilon-greedy exploration).
        assert loaded.scored == expected.state.scored
        assert loaded.stale == expected.state.stale
        assert plain_state(loaded) == plain_state(result.state)
    assert execute_step(Session, job_id, models_for=Resolver()) is None


# --------------------------------------------------------------------------- idempotence


class BarrierGenerator:
    """Wraps a generator: its first call waits until every racer has got that far, so all
    of them compute the same step from the same state before any of them commits."""

    def __init__(self, inner, barrier: threading.Barrier) -> None:
        self.inner, self.barrier, self.name = inner, barrier, inner.name
        self._waited = False

    def complete(self, conversations, *, seed, temperature, top_p, max_tokens):
        if not self._waited:
            self._waited = True
            self.barrier.wait(timeout=60)
        return self.inner.complete(conversations, seed=seed, temperature=temperature,
                                   top_p=top_p, max_tokens=max_tokens)


class TaggedNonsense(NonsenseGenerator):
    """Nonsense that differs per racer, so only the (job, step) constraints can collide."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def _complete_one(self, conversation, seed, index):
        return "\n".join(f"{line} {self.tag}" for line in super()._complete_one(conversation, seed, index).splitlines())


@pytest.mark.parametrize("same_output", [True, False], ids=["same-candidates", "other-candidates"])
def test_the_same_step_run_twice_at_once_is_committed_once(db_url, same_output):
    Session = open_migrated(db_url)
    job_id = new_job(Session)
    assert execute_step(Session, job_id, models_for=Resolver()).step == 0

    racers = 2
    barrier = threading.Barrier(racers)
    tags = iter(f"racer{i}" for i in range(racers))
    lock = threading.Lock()

    def make_generator():
        with lock:
            inner = ScriptedGenerator(extra_words=EXTRA) if same_output else TaggedNonsense(next(tags))
        return BarrierGenerator(inner, barrier)

    outcomes: list = [None] * racers
    errors: list[BaseException] = []

    def race(i: int) -> None:
        try:
            # Each racer has its own session factory and connections, like two workers.
            outcomes[i] = execute_step(Session, job_id, models_for=Resolver(generator=make_generator))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    committed = [r for r in outcomes if r is not None]
    assert len(committed) == 1 and committed[0].step == 1, outcomes

    with Session() as session:
        assert session.scalars(select(Step.step).where(Step.job_id == job_id).order_by(Step.step)).all() == [0, 1]
        stored = session.execute(
            select(Candidate.text, Candidate.score).where(Candidate.job_id == job_id, Candidate.step == 1)
            .order_by(Candidate.id)
        ).all()
        assert [tuple(c) for c in stored] == [(c.text, c.score) for c in committed[0].candidates]
        keys = session.scalars(select(Candidate.text_key).where(Candidate.job_id == job_id)).all()
        assert len(keys) == len(set(keys))
        ranks = session.scalars(select(TopEntry.rank).where(TopEntry.job_id == job_id, TopEntry.step == 1)
                                .order_by(TopEntry.rank)).all()
        assert ranks == list(range(1, SETTINGS.top_k + 1))
    # Between two steps the job waits in the queue (no worker holds it), since the commit.
    job = get_job(Session, job_id)
    assert job.status is JobStatus.QUEUED and job.queued_at is not None and job.worker is None

    # The job goes on from the committed step as if nothing had happened.
    rest = list(run_in_process(Session, job_id, models_for=Resolver()))
    assert [r.step for r in rest] == list(range(2, SETTINGS.steps + 1))
    assert get_job(Session, job_id).status is JobStatus.SUCCEEDED


# --------------------------------------------------------------------------- cancel, failure


def test_cancel_requested_before_a_step_stops_the_job(Session):
    job_id = new_job(Session)
    resolver = Resolver()
    assert execute_step(Session, job_id, models_for=resolver).step == 0
    with Session.begin() as session:
        session.get(Job, job_id).cancel_requested = True

    assert execute_step(Session, job_id, models_for=resolver) is None
    assert list(run_in_process(Session, job_id, models_for=resolver)) == []
    job = get_job(Session, job_id)
    assert job.status is JobStatus.CANCELLED and job.finished_at is not None
    assert [s[0] for s in trajectory(Session, job_id)[0]] == [0]
    assert len(resolver.asked) == 1  # no model was even resolved for the cancelled step


def test_cancel_requested_before_the_first_step(Session):
    job_id = new_job(Session)
    with Session.begin() as session:
        session.get(Job, job_id).cancel_requested = True
    resolver = Resolver()
    assert list(run_in_process(Session, job_id, models_for=resolver)) == []
    assert get_job(Session, job_id).status is JobStatus.CANCELLED
    assert trajectory(Session, job_id) == ([], [], [])
    assert resolver.asked == []


def test_cancel_requested_during_a_step_keeps_that_step(Session):
    job_id = new_job(Session)
    assert execute_step(Session, job_id, models_for=Resolver()).step == 0

    class Cancelling(ScriptedGenerator):
        def complete(self, conversations, **kwargs):
            with Session.begin() as session:  # someone presses "cancel" while the LLM runs
                session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
            return super().complete(conversations, **kwargs)

    results = list(run_in_process(Session, job_id, models_for=Resolver(generator=lambda: Cancelling(extra_words=EXTRA))))
    assert [r.step for r in results] == [1]
    assert [s[0] for s in trajectory(Session, job_id)[0]] == [0, 1]
    assert get_job(Session, job_id).status is JobStatus.CANCELLED


def test_a_failing_generator_fails_the_job_and_keeps_its_steps(Session):
    job_id = new_job(Session)
    resolver = Resolver(generator=lambda: FailingGenerator("out of memory, pretend"))
    stream = run_in_process(Session, job_id, models_for=resolver)
    assert next(stream).step == 0  # the bootstrap does not use the generator
    with pytest.raises(RuntimeError, match="out of memory, pretend"):
        next(stream)

    job = get_job(Session, job_id)
    assert job.status is JobStatus.FAILED and job.finished_at is not None
    assert job.error == "RuntimeError: out of memory, pretend"
    steps, candidates, tops = trajectory(Session, job_id)
    assert [s[0] for s in steps] == [0]
    assert candidates and all(c[0] == 0 for c in candidates)
    assert len(tops) == SETTINGS.top_k
    assert (job.result_text, job.result_score) == (steps[0][1], steps[0][2])
    assert execute_step(Session, job_id, models_for=Resolver()) is None  # failed is final


def test_a_model_that_cannot_load_fails_the_job(Session):
    job_id = new_job(Session)

    def models_for(generator_spec, scorer_spec):
        raise ModelLoadError(f"unknown scorer {scorer_spec!r}")

    with pytest.raises(ModelLoadError):
        execute_step(Session, job_id, models_for=models_for)
    job = get_job(Session, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == "ModelLoadError: unknown scorer 'fake-scorer'"
    assert trajectory(Session, job_id) == ([], [], [])


class MessyGenerator:
    """Answers as chat models do: a header, a numbered list with a comment and a repeat, a sign-off."""

    name = "messy-generator"

    def complete(self, conversations, *, seed, temperature, top_p, max_tokens):
        return [f"Here are new captions:\n1. A tabby cat on a wooden table {seed}\n2. This is a good mention.\n"
                f"3. A tabby cat on a wooden table {seed}.\n4. 0100: A cat sitting in the sun {seed}\nI hope this helps!"
                for _ in conversations]


def test_what_the_llm_answered_that_was_not_a_candidate_is_counted_in_the_events(Session):
    job_id = new_job(Session, Settings(steps=2, top_k=3, candidates=4, max_generation_rounds=1))
    for _ in run_in_process(Session, job_id, Resolver(generator=MessyGenerator)):
        pass
    with Session() as session:
        texts = {c.text for c in session.scalars(select(Candidate).where(Candidate.job_id == job_id,
                                                                        Candidate.step > 0))}
        rejected = [e.detail for e in session.scalars(select(JobEvent).where(JobEvent.job_id == job_id,
                                                                            JobEvent.kind == "rejected"))]
    assert all(not t.startswith(("0100", "This is", "Here", "I hope")) for t in texts) and len(texts) == 4
    assert rejected == [f"step {n}: 4 line(s) of the LLM's answers were not candidates "
                        "(1 comment, 2 outside the list, 1 repeated)" for n in (1, 2)]


def test_batches_stored_before_top_k_overlap_keep_running_without_it(db_url):
    """Migration 0012: a batch stored before the setting resolves its later items as its first
    ran (1, off), not with the embedded LLM's default; a downgrade takes the key out again, and
    one to 0010 takes out fluency_weight (0011), which the code of 0010 would refuse."""
    engine = store_db.get_engine(db_url)

    def stored_settings() -> list[dict]:
        with engine.connect() as connection:
            return (connection.execute(select(Batch.__table__.c.settings)).scalars().all()
                    + connection.execute(select(Job.__table__.c.settings)).scalars().all())

    command.upgrade(alembic_config(db_url), "0011")
    old = {**Settings().to_dict(), "fluency_weight": 0.15}
    old.pop("top_k_overlap")
    with engine.begin() as connection:
        connection.execute(Batch.__table__.insert().values(name="before", task="image-caption", settings=old,
                                                           options={}, generator="embedded", scorer="embedded",
                                                           sources={}, created_at=datetime.now(timezone.utc)))
    upgrade(db_url)
    Session = open_store(db_url)
    with Session() as session:
        stored = session.scalars(select(Batch.settings).where(Batch.name == "before")).one()
    assert stored == {**old, "top_k_overlap": 1.0} and Settings.from_dict(stored).top_k_overlap == 1.0
    new_job(Session, Settings(top_k_overlap=0.5))
    command.downgrade(alembic_config(db_url), "0011")
    settings = stored_settings()
    assert len(settings) == 2 and all("top_k_overlap" not in s for s in settings)
    command.downgrade(alembic_config(db_url), "0010")  # 0011 takes fluency_weight out the same way
    settings = stored_settings()
    assert len(settings) == 2 and all("fluency_weight" not in s for s in settings)
    assert {k for s in settings for k in s} <= set(Settings().to_dict())
    upgrade(db_url)


def test_a_job_stored_with_keys_of_the_old_normalization_goes_on(Session):
    """Jobs stored before the Unicode-aware normalization keyed their texts by ASCII letters and digits only ("café" ->
    "caf"): a step after the upgrade loads and extends them without losing the top K."""
    import re

    def old_key(text: str) -> str:
        return " ".join(re.findall(r"[a-z0-9]+", text.lower()))

    target = "café crème"
    resolver = Resolver(generator=lambda: ScriptedGenerator(extra_words=["café", "crème", "tabby", "wooden"]),
                        target=target)
    settings = Settings(steps=4, top_k=4, candidates=6, seed=3)
    job_id = new_job(Session, settings)
    runs = run_in_process(Session, job_id, resolver)
    for _ in range(3):
        next(runs)
    with Session.begin() as session:
        rows = session.execute(select(Candidate.id, Candidate.text).where(Candidate.job_id == job_id)).all()
        legacy = [(cid, text) for cid, text in rows if old_key(text) != normalize(text)]
        for cid, text in legacy:
            session.execute(update(Candidate).where(Candidate.id == cid).values(text_key=old_key(text)))
    assert legacy, "the fake LLM wrote no accented candidate"
    with Session() as session:
        assert any(not c.text.isascii() for c in load_state(session, job_id).top)
    rest = list(runs)
    assert [r.step for r in rest] == [3, 4] and get_job(Session, job_id).status is JobStatus.SUCCEEDED


def test_every_step_lets_its_threads_idle_openmp_pool_go(Session, monkeypatch):
    """A worker thread that scored keeps torch's OpenMP threads until it frees them; idle, they would
    slow an in-process LLM decoding other jobs' steps (worker.models.openmp). Each step frees them
    when its work ends, failed steps too."""
    import threading

    import worker.runner

    calls = []
    monkeypatch.setattr(worker.runner, "release_openmp_threads", lambda: calls.append(threading.get_ident()))
    job_id = new_job(Session, Settings(steps=2, top_k=3, candidates=4))
    for _ in run_in_process(Session, job_id, Resolver()):
        pass
    assert calls == [threading.get_ident()] * 3  # step 0 (the bootstrap), 1 and 2
    failing = new_job(Session)
    with pytest.raises(RuntimeError):
        for _ in run_in_process(Session, failing, Resolver(generator=lambda: FailingGenerator("pretend"))):
            pass
    assert len(calls) == 5
