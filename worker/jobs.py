"""Jobs on top of the store: create one, run one step of one job and commit it.

`execute_step` is the unit of durable work. The in-process runner calls it in a loop; the
Celery task calls it once per task. It is idempotent: a step already committed is skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from worker import core
from worker.core import Generator, Scorer, Settings, State, StepResult, normalize
from worker.core.optimizer import as_scored, should_stop
from worker.media import Media
from worker.store.models import Artifact, Candidate, Job, JobEvent, JobLink, JobStatus, Step, TopEntry, utcnow
from worker.task_kinds import TASK_KINDS, JobInput

log = logging.getLogger(__name__)


class JobError(ValueError):
    """A request about a job that cannot be honoured (unknown id, wrong state)."""


class UnknownJob(JobError):
    """No job has this id."""


class WaitingForParents(JobError):
    """The job is built on jobs that have not finished yet; its first step runs after them."""


@dataclass(frozen=True)
class Models:
    generator: Generator
    scorer: Scorer


# (generator spec, scorer spec) -> loaded models; tests pass tiny fakes.
ModelResolver = Callable[[str, str], Models]


def default_models(generator: str, scorer: str) -> Models:
    from worker.models import load_generator, load_scorer

    # The scorer first: a mistyped scorer must not cost an LLM load (a minute on a fresh home).
    scorer_model = load_scorer(scorer)
    return Models(load_generator(generator), scorer_model)


def store_artifact(session: Session, media: Media) -> Artifact:
    artifact = session.get(Artifact, media.sha256)
    if artifact is None:
        try:
            with session.begin_nested():  # a savepoint: a lost race must not undo the caller's work
                artifact = Artifact(sha256=media.sha256, media_type=media.media_type, size=len(media.data),
                                    data=media.data)
                session.add(artifact)
        except IntegrityError:
            # Another submission of the same content committed it meanwhile (two clients sending
            # the same file at once): the content is the same, use the stored row.
            artifact = session.get(Artifact, media.sha256)
            if artifact is None:
                raise
    return artifact


def create_job(
    session: Session, *, task: str, settings: Settings, generator: str, scorer: str, media: Media,
    options: dict[str, Any] | None = None, input_info: dict[str, Any] | None = None,
    attachments: dict[str, Media] | None = None,
) -> Job:
    """Store a new queued job. `options` are checked against the task kind's (defaults filled in);
    `attachments` are more input media (e.g. a style image), stored and named in the options."""
    if task not in TASK_KINDS:
        raise JobError(f"unknown task {task!r}; known: {', '.join(TASK_KINDS)}")
    TASK_KINDS[task].check_scorer(scorer)
    options = dict(options or {})
    for name, attachment in (attachments or {}).items():
        options[name + ATTACHMENT_SUFFIX] = store_artifact(session, attachment).sha256
    options = TASK_KINDS[task].job_options(options)
    artifact = store_artifact(session, media)
    job = Job(
        task=task,
        settings=settings.to_dict(),
        options=options,
        input_info=input_info or {},
        generator=generator,
        scorer=scorer,
        input_sha256=artifact.sha256,
        input_name=media.name,
        status=JobStatus.QUEUED,
    )
    session.add(job)
    session.flush()
    add_event(session, job, "submitted")
    return job


def load_state(session: Session, job_id: int) -> State | None:
    """The optimizer state after the job's last committed step, or None before step 0."""
    last = next_step_number(session, job_id) - 1
    if last < 0:
        return None
    # In the order they were scored, as in the in-memory State: ties are broken by it.
    rows = session.execute(
        select(Candidate.text_key, Candidate.text, Candidate.score, Candidate.details)
        .where(Candidate.job_id == job_id)
        .order_by(Candidate.id)
    )
    scored = {key: as_scored(text, (score, details) if details else score) for key, text, score, details in rows}
    top = session.execute(
        select(Candidate.text_key)
        .join(TopEntry, TopEntry.candidate_id == Candidate.id)
        .where(TopEntry.job_id == job_id, TopEntry.step == last)
        .order_by(TopEntry.rank)
    )
    improved = session.scalars(
        select(Step.improved).where(Step.job_id == job_id).order_by(Step.step.desc())
    )
    stale = 0
    for flag in improved:
        if flag:
            break
        stale += 1
    return State(step=last, top=tuple(scored[key] for key, in top), scored=scored, stale=stale)


def _record_step(session: Session, job: Job, result: StepResult, started_at: datetime,
                 made: dict[str, Media]) -> None:
    """Store the step's candidates (with what they made, in `made` by text), the new top K
    and the step's summary, in the caller's transaction."""
    artifacts = {text: store_artifact(session, media).sha256 for text, media in made.items()}
    rows = [
        Candidate(job_id=job.id, step=result.step, text=c.text, text_key=normalize(c.text), score=c.score,
                  details=dict(c.details) or None, artifact_sha256=artifacts.get(c.text))
        for c in result.candidates
    ]
    session.add_all(rows)
    session.flush()
    ids = {row.text_key: row for row in rows}
    top_keys = [normalize(c.text) for c in result.top]
    older = [k for k in top_keys if k not in ids]
    older_ids: dict[str, int] = {}
    if older:
        found = session.execute(
            select(Candidate.text_key, Candidate.id).where(Candidate.job_id == job.id, Candidate.text_key.in_(older))
        )
        older_ids = {key: candidate_id for key, candidate_id in found}
    for rank, key in enumerate(top_keys, start=1):
        if key in ids:
            ids[key].rank = rank
        session.add(TopEntry(job_id=job.id, step=result.step, rank=rank,
                             candidate_id=ids[key].id if key in ids else older_ids[key]))
    session.add(
        Step(
            job_id=job.id,
            step=result.step,
            started_at=started_at,
            finished_at=utcnow(),
            best_score=result.best.score,
            best_text=result.best.text,
            mean_topk=result.mean_topk,
            n_candidates=len(result.candidates),
            improved=result.improved,
            generation_seconds=result.generation_seconds,
            scoring_seconds=result.scoring_seconds,
        )
    )
    job.result_text, job.result_score = result.best.text, result.best.score
    job.heartbeat_at = utcnow()


# Sample features are computed once per job and kept for the job's next steps in this process.
_features: OrderedDict[tuple[str, str], Any] = OrderedDict()


def _sample_features(job: _JobSnapshot, scorer: Scorer) -> Any:
    key = (scorer.name, job.input_sha256 or "", json.dumps(dict(job.input.options), sort_keys=True))
    if key not in _features:
        sample = TASK_KINDS[job.task].decode(job.input)
        _features[key] = scorer.encode_sample(sample)
        while len(_features) > 8:
            _features.popitem(last=False)
    _features.move_to_end(key)
    return _features[key]


def next_step_number(session: Session, job_id: int) -> int:
    last = session.scalar(select(func.max(Step.step)).where(Step.job_id == job_id))
    return 0 if last is None else last + 1


def add_event(session: Session, job: Job, kind: str, detail: str | None = None) -> None:
    session.add(JobEvent(job_id=job.id, kind=kind, detail=detail))


def _set_status(session: Session, job: Job, status: JobStatus, detail: str | None = None) -> None:
    job.status = status
    if status.finished:
        job.finished_at = utcnow()
    add_event(session, job, status.value, detail)


HEARTBEAT_SECONDS = float(os.environ.get("MILS_HEARTBEAT_SECONDS", "10"))
# Bounded redelivery: a step whose worker died this many times fails the job (resume retries it).
MAX_STEP_ATTEMPTS = int(os.environ.get("MILS_MAX_STEP_ATTEMPTS", "3"))


@contextlib.contextmanager
def _heartbeat(Session: sessionmaker[Session], job_id: int) -> Iterator[None]:
    """Keep jobs.heartbeat_at fresh while a long step computes, so the reaper leaves it alone."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with Session.begin() as session:
                    session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
            except SQLAlchemyError as exc:  # the database may be restarting; the step goes on
                log.warning("heartbeat of job %s failed: %s", job_id, exc)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def execute_step(
    Session: sessionmaker[Session],
    job_id: int,
    models_for: ModelResolver = default_models,
    expected_step: int | None = None,
) -> StepResult | None:
    """Run and commit the job's next step. None when there is nothing to do: the job is
    finished or cancelled, `expected_step` is not its next step (a stale or duplicate
    message), or another worker committed the step first.

    Every transaction that decides about the job's status locks its row first (cancel,
    resume and the reaper lock it too), so none of them decides on a stale copy of it."""
    with Session.begin() as session:
        job = _locked_job(session, job_id)
        if job is None:
            raise JobError(f"no job {job_id}")
        if job.status.finished:
            return None
        if job.cancel_requested:
            _set_status(session, job, JobStatus.CANCELLED, "before a step")
            return None
        number = next_step_number(session, job_id)
        if expected_step is not None and expected_step != number:
            log.info("job %s: step %s is not next (%s); dropping the message", job_id, expected_step, number)
            return None
        if number == 0 and not _parents_ready(session, job):
            return None  # a parent failed: so did this job
        state = load_state(session, job_id)
        settings = Settings.from_dict(job.settings)
        if state is not None and should_stop(state, settings):
            _set_status(session, job, JobStatus.SUCCEEDED)
            return None
        kind = TASK_KINDS[job.task]
        snapshot = _JobSnapshot(job.id, job.task, job.input_sha256, _job_input(session, job, settings))
        specs = (job.generator, job.scorer)

    try:
        models = models_for(*specs)  # cached per process; the first load can take a while
    except Exception as exc:
        _fail(Session, job_id, exc)
        raise
    with Session.begin() as session:
        # Look again: the job may have been cancelled, resumed or reaped, or this step
        # committed by another delivery, while the models loaded.
        job = _locked_job(session, job_id)
        if job is None or job.status.finished:
            return None
        if job.cancel_requested:
            _set_status(session, job, JobStatus.CANCELLED, "before a step")
            return None
        if next_step_number(session, job_id) != number:
            log.info("job %s: step %s was committed meanwhile; dropping the message", job_id, number)
            return None
        if not job.model_versions:
            job.model_versions = {
                role: {"name": model.name, "version": getattr(model, "version", "")}
                for role, model in (("generator", models.generator), ("scorer", models.scorer))
            }
        if job.attempt_step == number:
            job.attempts += 1
        else:
            job.attempt_step, job.attempts = number, 1
        if job.attempts > MAX_STEP_ATTEMPTS:
            job.error = f"step {number} was started {MAX_STEP_ATTEMPTS} times and never finished"
            _set_status(session, job, JobStatus.FAILED, job.error)
            return None
        if job.status != JobStatus.RUNNING:
            _set_status(session, job, JobStatus.RUNNING, f"step {number}")
        job.heartbeat_at = utcnow()
        job.started_at = job.started_at or utcnow()

    # The slow part runs outside any transaction: no lock or connection is held meanwhile.
    started_at = utcnow()
    try:
        with _heartbeat(Session, job_id):
            # e.g. applied frame by frame to a video, or to renders of text-to-image prompts
            template = kind.template_for(snapshot.input)
            scorer = kind.adapt_scorer(models.scorer, snapshot.input)
            features = _sample_features(snapshot, scorer)
            if state is None:
                pool = kind.initial_pool(snapshot.input)
                result = core.bootstrap(pool, scorer, features, settings)
            else:
                result = core.step(state, models.generator, scorer, features, template, settings)
            # What the candidates made (e.g. renders), read before any lock is taken.
            made_by = getattr(scorer, "artifact_for", None)
            made = {c.text: m for c in result.candidates if made_by and (m := made_by(c.text)) is not None}
    except Exception as exc:
        _fail(Session, job_id, exc)
        raise

    try:
        with Session.begin() as session:
            job = _locked_job(session, job_id)  # a cancel request now waits for this commit
            if next_step_number(session, job_id) != result.step:
                raise _AlreadyCommitted
            _record_step(session, job, result, started_at, made)
            if job.status.finished:
                pass  # cancelled (or failed) while the step ran: the step is kept, the status too
            elif should_stop(result.state, settings):
                _set_status(session, job, JobStatus.SUCCEEDED)
            elif job.cancel_requested:
                _set_status(session, job, JobStatus.CANCELLED, f"after step {result.step}")
    except (IntegrityError, _AlreadyCommitted):
        # (job, step) already committed by another delivery of the same task: keep theirs.
        log.info("job %s step %s was already committed; skipping", job_id, result.step)
        return None
    log.info("job %s step %s committed", job_id, result.step)
    return result


class _AlreadyCommitted(Exception):
    """Another delivery of the same step committed it first."""


def _locked_job(session: Session, job_id: int) -> Job | None:
    """The job's row, locked until the transaction ends (SELECT ... FOR UPDATE; a no-op on SQLite,
    whose writers are serialised anyway)."""
    return session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()


@dataclass(frozen=True)
class _JobSnapshot:
    """The job fields the compute phase needs, detached from any session."""

    id: int
    task: str
    input_sha256: str | None
    input: JobInput


ATTACHMENT_SUFFIX = "_sha256"  # an option naming other stored media by hash (e.g. style_sha256)


def _parents_ready(session: Session, job: Job) -> bool:
    """True when every job this one is built on succeeded (or it has none). A failed or
    cancelled parent fails this job; one still on its way raises WaitingForParents."""
    parents = session.execute(select(Job.id, Job.status, Job.auto_resumes)
                              .join(JobLink, JobLink.parent_id == Job.id)
                              .where(JobLink.job_id == job.id).order_by(JobLink.position)).all()
    from worker.lifecycle import MAX_AUTO_RESUMES

    for parent_id, status, auto_resumes in parents:
        # Interrupted with no automatic resume left: it only goes on if a person resumes it.
        given_up = status == JobStatus.INTERRUPTED and auto_resumes >= MAX_AUTO_RESUMES
        if status in (JobStatus.FAILED, JobStatus.CANCELLED) or given_up:
            job.error = f"parent job {parent_id} {status.value}"
            _set_status(session, job, JobStatus.FAILED, job.error)
            return False
    waiting = [parent_id for parent_id, status, _ in parents if status != JobStatus.SUCCEEDED]
    if waiting:
        raise WaitingForParents(f"job {job.id} waits for job(s) {', '.join(map(str, waiting))}")
    return True


def _job_input(session: Session, job: Job, settings: Settings) -> JobInput:
    attachments = {}
    for name, value in (job.options or {}).items():
        if name.endswith(ATTACHMENT_SUFFIX) and value:
            artifact = session.get(Artifact, value)
            if artifact is None:
                raise JobError(f"job {job.id}: its {name} {value} is not stored")
            attachments[name.removesuffix(ATTACHMENT_SUFFIX)] = artifact.data
    parents = session.scalars(select(Job.result_text).join(JobLink, JobLink.parent_id == Job.id)
                              .where(JobLink.job_id == job.id).order_by(JobLink.position))
    return JobInput(data=job.input.data if job.input else b"", name=job.input_name or "input",
                    options=dict(job.options or {}), settings=settings, attachments=attachments,
                    info=dict(job.input_info or {}), parent_texts=tuple(t or "" for t in parents))


def _fail(Session: sessionmaker[Session], job_id: int, exc: Exception) -> None:
    """Record why the job failed; its committed steps stay, so it can be resumed."""
    with Session.begin() as session:
        job = _locked_job(session, job_id)
        job.error = f"{type(exc).__name__}: {exc}"
        _set_status(session, job, JobStatus.FAILED, job.error)


def run_in_process(
    Session: sessionmaker[Session], job_id: int, models_for: ModelResolver = default_models
) -> Iterator[StepResult]:
    """The embedded default: every step of the job, one after another, in this process."""
    while (result := execute_step(Session, job_id, models_for)) is not None:
        yield result


def step_rows(session: Session, job_id: int) -> list[Step]:
    return list(session.scalars(select(Step).where(Step.job_id == job_id).order_by(Step.step)))
