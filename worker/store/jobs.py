"""The write side of the store: create, fetch and lock a job, log its events, store media by
content hash, record a step and load the optimizer state back. A job's status and lease fields are
written by worker.jobs alone.

Functions take a Session and never commit: the caller owns the transaction (`with
sessions.begin() as session:`). Nothing here knows task kinds, models, Celery or the web; what a
job's options mean is checked before it gets here (worker.submission).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.core import Seen, Settings, State, StepResult, normalize
from worker.core.optimizer import as_scored
from worker.media import Media
from worker.store.pools import pool_of_job, pool_scored, record_pool
from worker.store.schema import Artifact, Candidate, Job, JobEvent, JobLink, JobStatus, Step, TopEntry, utcnow

# An option naming other stored media by content hash: option "style_sha256" holds the style
# image's hash, and the runner hands its bytes to the kind as attachment "style".
ATTACHMENT_SUFFIX = "_sha256"


class JobError(ValueError):
    """A request about a job that cannot be honoured (unknown id, wrong state)."""


class UnknownJob(JobError):
    """No job has this id."""


def get_job(session: Session, job_id: int, *, for_update: bool = False) -> Job:
    """The job's row, or UnknownJob. `for_update` locks it until the transaction ends (SELECT ...
    FOR UPDATE; a no-op on SQLite, whose writers are serialised anyway): every transaction that
    decides about a job's status locks it first, so none decides on a stale copy."""
    query = select(Job).where(Job.id == job_id)
    job = session.scalar(query.with_for_update() if for_update else query)
    if job is None:
        raise UnknownJob(f"no job {job_id}")
    return job


def add_event(session: Session, job: Job, kind: str, detail: str | None = None, *,
              token_id: int | None = None) -> None:
    """Log `kind` for the job; `token_id`: the API token that acted (None: the CLI or the service)."""
    session.add(JobEvent(job_id=job.id, kind=kind, detail=detail, token_id=token_id))


def store_artifact(session: Session, media: Media) -> Artifact:
    """The stored row of `media`, inserted once per content hash."""
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


@dataclass(frozen=True)
class StoredMedia:
    """Input media already stored (an Artifact), named by its hash: a batch's variant gives its
    jobs the inputs of the batch it is made like, never reading or storing them again."""

    sha256: str
    media_type: str
    name: str


def create_job(
    session: Session, *, task: str, settings: Settings, generator: str, scorer: str, media: Media | StoredMedia,
    options: dict[str, Any] | None = None, input_info: dict[str, Any] | None = None,
    attachments: dict[str, Media] | None = None, parents: Sequence[tuple[int, int]] = (),
    priority: int = 0, prompt_sha256: str | None = None, pool_sha256: str | None = None,
    generator_name: str | None = None, scorer_name: str | None = None,
    token_id: int | None = None,
) -> Job:
    """Store a new job (status queued, not yet on the queue: worker.jobs.submitted puts it there)
    with already checked options. `attachments` are more input media (e.g. a style image), stored
    and named in the options by hash; `parents` are (position, job id) of the jobs this one is
    built on; `prompt_sha256` and `pool_sha256` name the user's prompt template (an artifact) and
    initial pool (worker.store.pools), already stored. `generator_name`, `scorer_name`: the
    registry's names the specs were chosen by (None: raw specs). `token_id`: the API token that submits it
    (its owner; None: the CLI)."""
    options = dict(options or {})
    for name, attachment in (attachments or {}).items():
        options[name + ATTACHMENT_SUFFIX] = store_artifact(session, attachment).sha256
    artifact = media if isinstance(media, StoredMedia) else store_artifact(session, media)
    job = Job(
        task=task,
        settings=settings.to_dict(),
        options=options,
        input_info=input_info or {},
        generator=generator,
        scorer=scorer,
        generator_name=generator_name,
        scorer_name=scorer_name,
        input_sha256=artifact.sha256,
        input_name=media.name,
        input_media_type=media.media_type,
        priority=priority,
        prompt_sha256=prompt_sha256,
        pool_sha256=pool_sha256,
        token_id=token_id,
    )
    session.add(job)
    session.flush()
    for position, parent_id in parents:
        session.add(JobLink(job_id=job.id, position=position, parent_id=parent_id))
    add_event(session, job, "submitted", token_id=token_id)
    return job


def attachments_of(session: Session, job: Job) -> dict[str, bytes]:
    """The bytes of the other media the job's options name by hash ("style_sha256" -> "style")."""
    found = {}
    for name, value in (job.options or {}).items():
        if name.endswith(ATTACHMENT_SUFFIX) and value:
            artifact = session.get(Artifact, value)
            if artifact is None:
                raise JobError(f"job {job.id}: its {name} {value} is not stored")
            found[name.removesuffix(ATTACHMENT_SUFFIX)] = artifact.data
    return found


def parents_of_job(session: Session, job_id: int) -> list[tuple[int, JobStatus, int, str | None]]:
    """(id, status, automatic resumes, result text) of the jobs this one is built on, in order."""
    return [tuple(row) for row in session.execute(
        select(Job.id, Job.status, Job.auto_resumes, Job.result_text)
        .join(JobLink, JobLink.parent_id == Job.id).where(JobLink.job_id == job_id).order_by(JobLink.position))]


def next_step_number(session: Session, job_id: int) -> int:
    last = session.scalar(select(func.max(Step.step)).where(Step.job_id == job_id))
    return 0 if last is None else last + 1


def load_state(session: Session, job_id: int) -> State | None:
    """The optimizer state after the job's last committed step, or None before step 0.

    Read: the last top K, the keys of the pool (decoded once per process and pool version) and
    the later steps' rows, not the whole history; with exploration (epsilon > 0) the pool's
    candidates too, which the step may pick from (one array, not a row per text). A job whose
    step 0 is stored as rows (see worker.store.pools) reads those rows instead."""
    last = next_step_number(session, job_id) - 1
    if last < 0:
        return None
    explore = Settings.from_dict(get_job(session, job_id).settings).epsilon > 0.0
    pool = pool_of_job(session, job_id)
    # In the order they were scored, as in the in-memory State: ties are broken by it. Keyed by
    # the text normalized now, not the stored key: a job stored before the Unicode-aware
    # normalization goes on with today's identity of its texts.
    query = select(Candidate.step, Candidate.text, Candidate.score, Candidate.details).where(Candidate.job_id == job_id)
    rows = session.execute((query.where(Candidate.step > 0) if pool else query).order_by(Candidate.id))
    scored = [(step, as_scored(text, (score, details) if details else score)) for step, text, score, details in rows]
    if pool is not None:
        pool_keys = pool.keys
        scored = [(0, c) for c in pool_scored(session, job_id, pool)] + scored if explore else scored
    else:
        pool_keys = frozenset(normalize(c.text) for step, c in scored if step == 0)
    top = session.execute(
        select(Candidate.text, Candidate.score, Candidate.details)
        .join(TopEntry, TopEntry.candidate_id == Candidate.id)
        .where(TopEntry.job_id == job_id, TopEntry.step == last).order_by(TopEntry.rank)
    )
    improved = session.scalars(
        select(Step.improved).where(Step.job_id == job_id).order_by(Step.step.desc())
    )
    stale = 0
    for flag in improved:
        if flag:
            break
        stale += 1
    return State(
        step=last,
        top=tuple(as_scored(text, (score, details) if details else score) for text, score, details in top),
        seen=Seen(pool_keys, frozenset(normalize(c.text) for step, c in scored if step > 0)),
        stale=stale,
        scored=tuple(c for _, c in scored) if explore else (),
    )


def record_step(session: Session, job: Job, result: StepResult, started_at: datetime) -> None:
    """Store the step's candidates (with what they made, e.g. renders, as artifacts), the new
    top K and the step's summary, in the caller's transaction."""
    candidates = result.candidates
    if result.step == 0 and record_pool(session, job.id, candidates):
        candidates = result.top  # the pool is kept compactly; rows for what top_entries points at
    artifacts = {c.text: store_artifact(session, c.made).sha256 for c in candidates if c.made is not None}
    rows = [
        Candidate(job_id=job.id, step=result.step, text=c.text, text_key=normalize(c.text), score=c.score,
                  details=dict(c.details) or None, artifact_sha256=artifacts.get(c.text))
        for c in candidates
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
    missing = {key for key in older if key not in older_ids}
    if missing:
        # Stored under a key of the old normalization (ASCII letters and digits only): find them by their text.
        texts = {c.text: key for c, key in zip(result.top, top_keys) if key in missing}
        found = session.execute(
            select(Candidate.text, Candidate.id).where(Candidate.job_id == job.id, Candidate.text.in_(texts)))
        older_ids.update({texts[text]: candidate_id for text, candidate_id in found})
    unstored = [c for c, key in zip(result.top, top_keys) if key not in ids and key not in older_ids]
    if unstored:
        # Pool candidates kept compactly that no top K showed before (exploration took them):
        # a row each now, for top_entries to point at; not ranked, they missed step 0's top K.
        anchors = [Candidate(job_id=job.id, step=0, text=c.text, text_key=normalize(c.text), score=c.score,
                             details=dict(c.details) or None) for c in unstored]
        session.add_all(anchors)
        session.flush()
        older_ids.update({row.text_key: row.id for row in anchors})
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
            llm_requests=result.llm_requests,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            renders=result.renders,
            rejected_lines=sum(result.rejected.values()),
            worker=job.worker,
        )
    )
    job.result_text, job.result_score = result.best.text, result.best.score
    if result.rejected:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(result.rejected.items()))
        add_event(session, job, "rejected", f"step {result.step}: {sum(result.rejected.values())} line(s) of "
                                            f"the LLM's answers were not candidates ({reasons})")
