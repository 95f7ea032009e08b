"""Run and commit one step of one job: the unit of durable work.

The in-process runner (`run_in_process`, the embedded default) calls `execute_step` in a loop; the
Celery task calls `run_queued_step` once per message, which also queues the job's next step after
the commit. A step is idempotent: one already committed is skipped.

A step runs in phases: plan (a transaction: lock the job, load its state), load the models, claim
(a transaction: mark it running), compute (no lock, no connection held; a heartbeat thread keeps
the job alive), commit (a transaction: lock again, record the step, decide the status). The job's
status changes are worker.jobs' transitions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from worker import config, core, jobs
from worker.core import Generator, GeneratorUnavailable, Scorer, Settings, State, StepResult
from worker.core.optimizer import should_stop
from worker.kinds import TASK_KINDS, JobInput, TaskKind
from worker.models.fluency import with_fluency
from worker.models.openmp import release_openmp_threads
from worker.store.jobs import (JobError, add_event, attachments_of, get_job, load_state, next_step_number,
                               parents_of_job, record_step)
from worker.store.pools import pool_texts
from worker.store.schema import Artifact, Job, JobStatus, utcnow

log = logging.getLogger(__name__)


class WaitingForParents(JobError):
    """The job is built on jobs that have not finished yet; its first step runs after them."""


@dataclass(frozen=True)
class JobModels:
    """The loaded models a job's steps run with."""

    generator: Generator
    scorer: Scorer


# (generator spec, scorer spec) -> loaded models; tests pass tiny fakes.
ModelResolver = Callable[[str, str], JobModels]


class Serialized:
    """A model whose methods run one call at a time, for a worker that runs several jobs' steps in
    threads (`mils worker --concurrency`): transformers and torch models are not made to be called
    from several threads at once. Models marked `concurrent` (the chat-completions generators,
    whose engine queues or batches requests itself) are used as they are."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._model, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return call


def serialized(model: Any) -> Any:
    return model if getattr(model, "concurrent", False) else Serialized(model)


_loading = threading.Lock()
_loaded: dict[tuple[str, str], Any] = {}


def default_models(generator: str, scorer: str) -> JobModels:
    """The models the specs name, loaded once per process and shared by its threads."""
    from worker.models import load_generator, load_scorer

    with _loading:  # two threads asking at once load a model once
        # The scorer first: a mistyped scorer must not cost an LLM load (a minute on a fresh home).
        if ("scorer", scorer) not in _loaded:
            _loaded["scorer", scorer] = serialized(load_scorer(scorer))
        if ("generator", generator) not in _loaded:
            _loaded["generator", generator] = serialized(load_generator(generator))
        return JobModels(_loaded["generator", generator], _loaded["scorer", scorer])


# Sample features are computed once per job and kept for the job's next steps in this process.
_features: OrderedDict[tuple[str, str], Any] = OrderedDict()
_features_lock = threading.Lock()


def _sample_features(job: _JobSnapshot, scorer: Scorer) -> Any:
    key = (scorer.name, job.input_sha256 or "", json.dumps(dict(job.input.options), sort_keys=True))
    with _features_lock:
        if key in _features:
            _features.move_to_end(key)
            return _features[key]
    features = scorer.encode_sample(TASK_KINDS[job.task].decode(job.input))  # outside the lock: slow
    with _features_lock:
        _features[key] = features
        while len(_features) > 8:
            _features.popitem(last=False)
    return features


@contextlib.contextmanager
def _heartbeat(sessions: sessionmaker[Session], job_id: int) -> Iterator[None]:
    """Keep jobs.heartbeat_at fresh while a long step computes, so the reaper leaves it alone."""
    stop = threading.Event()
    period = config.heartbeat_seconds()

    def beat() -> None:
        while not stop.wait(period):
            try:
                with sessions.begin() as session:
                    jobs.heartbeat(session, job_id)
            except SQLAlchemyError as exc:  # the database may be restarting; the step goes on
                log.warning("heartbeat of job %s failed: %s", job_id, exc)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass(frozen=True)
class _JobSnapshot:
    """The job fields the compute phase needs, detached from any session."""

    id: int
    task: str
    input_sha256: str | None
    input: JobInput


@dataclass(frozen=True)
class _Plan:
    """What the step will do, decided under the job's lock: its number, the state it starts from."""

    job: _JobSnapshot
    kind: TaskKind
    number: int
    state: State | None
    settings: Settings
    specs: tuple[str, str]  # (generator, scorer)


def this_worker(node: str | None = None) -> str:
    """Who runs a step, as jobs.worker shows it: the worker's node name (Celery's, e.g.
    celery@host; default this host's name), process and thread."""
    return f"{node or socket.gethostname()}/{os.getpid()}/{threading.current_thread().name}"


def execute_step(
    sessions: sessionmaker[Session],
    job_id: int,
    models_for: ModelResolver = default_models,
    expected_step: int | None = None,
    worker: str | None = None,
) -> StepResult | None:
    """Run and commit the job's next step. None when there is nothing to do: the job is
    finished or cancelled, `expected_step` is not its next step (a stale or duplicate
    message), or another worker committed the step first. UnknownJob for an unknown id;
    WaitingForParents while the jobs it is built on run. `worker` names who runs the step (for
    people and the reaper; default: this host and process). The next step is not queued (see
    `run_queued_step`)."""
    return _execute(sessions, job_id, models_for, expected_step, worker)[0]


def run_queued_step(sessions: sessionmaker[Session], job_id: int, step: int, *, worker: str) -> bool:
    """A queue's step message: run step `step` of the job and, after its commit, put the job's next
    step on the queue (a self-continuing chain). A job still waiting for its parents is looked at
    again in MILS_PARENT_POLL_SECONDS. True when this delivery leaves the job with no step on the
    queue (finished, or a duplicate or stale message that committed nothing: the delivery that
    committed the step continues the chain, not this one, or every duplicate would start one)."""
    try:
        result, messages = _execute(sessions, job_id, default_models, step, worker)
    except WaitingForParents as exc:
        log.info("%s; trying again in %s s", exc, config.parent_poll_seconds())
        with sessions() as session:
            messages = [jobs.message(get_job(session, job_id), step, countdown=config.parent_poll_seconds())]
        jobs.send(messages)
        return False
    jobs.send(messages)
    return result is None or not messages


def _execute(sessions: sessionmaker[Session], job_id: int, models_for: ModelResolver, expected_step: int | None,
             worker: str | None) -> tuple[StepResult | None, list[jobs.StepMessage]]:
    """The step in its phases: plan, load the models, claim, compute, commit. Every transaction
    that decides about the job's status locks its row first (cancel, resume and the reaper lock
    it too), so none of them decides on a stale copy of it."""
    plan = _plan(sessions, job_id, expected_step)
    if plan is None:
        return None, []
    try:
        models = models_for(*plan.specs)  # cached per process; the first load can take a while
    except Exception as exc:
        fail_job(sessions, job_id, exc)
        raise
    if not _claim(sessions, plan, models, worker or this_worker()):
        return None, []
    result, features, started_at = _compute(sessions, plan, models)
    return _commit(sessions, plan, models, result, features, started_at)


def _plan(sessions: sessionmaker[Session], job_id: int, expected_step: int | None) -> _Plan | None:
    """Decide under the job's lock whether a step runs now, and from what state; None if not."""
    with sessions.begin() as session:
        job = get_job(session, job_id, for_update=True)
        if jobs.honour_cancel(session, job):
            return None
        number = next_step_number(session, job_id)
        if expected_step is not None and expected_step != number:
            log.info("job %s: step %s is not next (%s); dropping the message", job_id, expected_step, number)
            return None
        if number == 0:
            failed_parent = _failed_parent(session, job)
            if failed_parent:
                jobs.fail(session, job, failed_parent)
                return None
        state = load_state(session, job_id)
        settings = Settings.from_dict(job.settings)
        if state is not None and should_stop(state, settings):
            jobs.succeed(session, job)
            return None
        snapshot = _JobSnapshot(job.id, job.task, job.input_sha256,
                                _job_input(session, job, settings, with_pool=number == 0))
        return _Plan(snapshot, TASK_KINDS[job.task], number, state, settings, (job.generator, job.scorer))


def _claim(sessions: sessionmaker[Session], plan: _Plan, models: JobModels, worker: str) -> bool:
    """Take the step, looking again first: the job may have been cancelled, resumed or reaped, or
    this step committed by another delivery, while the models loaded. False if the step is off."""
    with sessions.begin() as session:
        job = get_job(session, plan.job.id, for_update=True)
        if jobs.honour_cancel(session, job):
            return False
        if next_step_number(session, job.id) != plan.number:
            log.info("job %s: step %s was committed meanwhile; dropping the message", job.id, plan.number)
            return False
        if not job.model_versions:
            job.model_versions = {
                role: {"name": model.name, "version": getattr(model, "version", "")}
                for role, model in (("generator", models.generator), ("scorer", models.scorer))
            }
        return jobs.claim(session, job, plan.number, worker)


def _compute(sessions: sessionmaker[Session], plan: _Plan, models: JobModels) -> tuple[StepResult, Any, datetime]:
    """The slow part, outside any transaction: no lock or connection is held meanwhile, and a
    heartbeat thread keeps the job alive. Returns (the result, the sample's features, the start)."""
    job, kind = plan.job, plan.kind
    started_at = utcnow()
    try:
        with _heartbeat(sessions, job.id):
            # e.g. applied frame by frame to a video, or to renders of text-to-image prompts
            template = kind.template_for(job.input)
            scorer = with_fluency(kind.adapt_scorer(models.scorer, job.input), plan.settings.fluency_weight)
            features = _sample_features(job, scorer)
            if plan.state is None:
                result = core.bootstrap(kind.initial_pool(job.input), scorer, features, plan.settings)
            else:
                result = core.step(plan.state, models.generator, scorer, features, template, plan.settings)
    except GeneratorUnavailable as exc:
        with sessions.begin() as session:
            jobs.wait_for_llm(session, get_job(session, job.id, for_update=True), plan.number, str(exc))
        raise
    except Exception as exc:
        fail_job(sessions, job.id, exc)
        raise
    finally:  # this thread's idle OpenMP threads would slow an in-process LLM decoding for other jobs
        release_openmp_threads()
    return result, features, started_at


def _commit(sessions: sessionmaker[Session], plan: _Plan, models: JobModels, result: StepResult, features: Any,
            started_at: datetime) -> tuple[StepResult | None, list[jobs.StepMessage]]:
    """Record the step and decide the job's status under its lock (a cancel request now waits for
    this commit); returns the result and the job's next step to queue. (None, []) when another
    delivery of the same step committed it first: theirs is kept."""
    try:
        with sessions.begin() as session:
            job = get_job(session, plan.job.id, for_update=True)
            if next_step_number(session, job.id) != result.step:
                raise _AlreadyCommitted
            record_step(session, job, result, started_at)
            if result.step == 0 and getattr(features, "seen", None) is not None:
                job.scorer_sees = features.seen
            _note_served(session, job, getattr(models.generator, "served", None))
            messages = jobs.commit_step(session, job, result.step, last=should_stop(result.state, plan.settings))
    except (IntegrityError, _AlreadyCommitted):
        log.info("job %s step %s was already committed; skipping", plan.job.id, result.step)
        return None, []
    log.info("job %s step %s committed", plan.job.id, result.step)
    return result, messages


def _note_served(session: Session, job: Job, served: dict[str, str] | None) -> None:
    """Keep with the job what model id and version (system_fingerprint) the LLM server reported,
    and say so in its events when it changes between steps (the server was replaced mid-job)."""
    if not served or not job.model_versions:
        return
    generator = dict(job.model_versions.get("generator", {}))
    if generator.get("served") == served:
        return
    if generator.get("served"):
        add_event(session, job, "llm_changed", f"{generator['served']} -> {served}")
    generator["served"] = served
    job.model_versions = {**job.model_versions, "generator": generator}  # a new dict: JSON columns track assignment


class _AlreadyCommitted(Exception):
    """Another delivery of the same step committed it first."""


def _failed_parent(session: Session, job: Job) -> str | None:
    """Why the job cannot start (a parent failed or was cancelled), or None when every job it is
    built on succeeded (or it has none). WaitingForParents while one is still on its way."""
    parents = parents_of_job(session, job.id)
    for parent_id, status, auto_resumes, _ in parents:
        # Interrupted with no automatic resume left: it only goes on if a person resumes it.
        given_up = status == JobStatus.INTERRUPTED and auto_resumes >= config.max_auto_resumes()
        if status in (JobStatus.FAILED, JobStatus.CANCELLED) or given_up:
            return f"parent job {parent_id} {status.value}"
    waiting = [parent_id for parent_id, status, _, _ in parents if status != JobStatus.SUCCEEDED]
    if waiting:
        raise WaitingForParents(f"job {job.id} waits for job(s) {', '.join(map(str, waiting))}")
    return None


def _job_input(session: Session, job: Job, settings: Settings, *, with_pool: bool) -> JobInput:
    """What the kind's functions get from the stored job; the user's pool only `with_pool` (step 0
    scores it; later steps know its texts by their keys, worker.store.jobs.load_state)."""
    parent_texts = tuple(text or "" for _, _, _, text in parents_of_job(session, job.id))
    prompt = session.get(Artifact, job.prompt_sha256).data.decode() if job.prompt_sha256 else None
    pool = pool_texts(session, job.pool_sha256).texts if with_pool and job.pool_sha256 else None
    return JobInput(data=job.input.data if job.input else b"", name=job.input_name or "input",
                    options=dict(job.options or {}), settings=settings, attachments=attachments_of(session, job),
                    info=dict(job.input_info or {}), parent_texts=parent_texts, prompt=prompt, pool=pool)


def fail_job(sessions: sessionmaker[Session], job_id: int, exc: Exception) -> None:
    """Record why the job failed, in a transaction of its own; its committed steps stay, so it can
    be resumed."""
    with sessions.begin() as session:
        jobs.fail(session, get_job(session, job_id, for_update=True), f"{type(exc).__name__}: {exc}")


def run_in_process(
    sessions: sessionmaker[Session], job_id: int, models_for: ModelResolver = default_models
) -> Iterator[StepResult]:
    """The embedded default: every step of the job, one after another, in this process. An LLM
    server that cannot be reached fails the job at once (no worker waits for it here); its
    committed steps stay, and `mils resume` goes on from them."""
    while True:
        try:
            result = execute_step(sessions, job_id, models_for)
        except GeneratorUnavailable as exc:
            fail_job(sessions, job_id, exc)
            raise
        if result is None:
            return
        yield result
