"""What people and the reaper do to jobs: cancel, resume, reap, list, read history.

Functions take a Session and return plain values; the caller owns the transaction and,
after it commits, enqueues whatever step they say should run next.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.jobs import JobError, add_event, next_step_number
from worker.store.models import Candidate, Job, JobStatus, Step, utcnow

# A running job whose heartbeat is older than this is taken for dead. Between steps a job
# waits in the queue without a heartbeat, so this must exceed a step plus the queue wait.
STALE_AFTER_SECONDS = float(os.environ.get("MILS_STALE_SECONDS", "600"))
AUTO_RESUME = os.environ.get("MILS_AUTO_RESUME", "1") not in ("0", "false", "no")
MAX_AUTO_RESUMES = int(os.environ.get("MILS_MAX_AUTO_RESUMES", "3"))


@dataclass(frozen=True)
class JobSummary:
    id: int
    task: str
    status: str
    steps_done: int  # committed steps, the bootstrap included
    steps_total: int  # the bootstrap plus the optimization steps
    best_score: float | None
    best_text: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    input_name: str | None
    settings: dict
    model_versions: dict

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["created_at"] = self.created_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return data


def get_job(session: Session, job_id: int, *, for_update: bool = False) -> Job:
    query = select(Job).where(Job.id == job_id)
    job = session.scalar(query.with_for_update() if for_update else query)
    if job is None:
        raise JobError(f"no job {job_id}")
    return job


def summarize(session: Session, job: Job) -> JobSummary:
    return JobSummary(
        id=job.id, task=job.task, status=job.status.value,
        steps_done=next_step_number(session, job.id), steps_total=job.settings["steps"] + 1,
        best_score=job.result_score, best_text=job.result_text, error=job.error,
        created_at=job.created_at, finished_at=job.finished_at, input_name=job.input_name,
        settings=dict(job.settings), model_versions=dict(job.model_versions or {}),
    )


def list_jobs(
    session: Session, *, status: str | None = None, task: str | None = None, limit: int = 50
) -> list[JobSummary]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        try:
            query = query.where(Job.status == JobStatus(status))
        except ValueError:
            raise JobError(f"unknown status {status!r}; known: {', '.join(s.value for s in JobStatus)}") from None
    if task:
        query = query.where(Job.task == task)
    return [summarize(session, job) for job in session.scalars(query)]


def cancel(session: Session, job_id: int) -> JobSummary:
    """Ask the job to stop after the step in flight. A queued job with no step running stops now."""
    job = get_job(session, job_id, for_update=True)
    if job.status.finished:
        raise JobError(f"job {job_id} is already {job.status.value}")
    job.cancel_requested = True
    add_event(session, job, "cancel_requested")
    if job.status in (JobStatus.QUEUED, JobStatus.INTERRUPTED):
        job.status, job.finished_at = JobStatus.CANCELLED, utcnow()
        add_event(session, job, "cancelled", "before its next step")
    return summarize(session, job)


def resume(session: Session, job_id: int, *, automatic: bool = False) -> int:
    """Queue a cancelled, failed or interrupted job again; returns the step to enqueue.
    Committed steps are kept: the job continues after the last one. A queued job may be
    resumed too: that re-sends a message the broker lost (a duplicate is dropped)."""
    job = get_job(session, job_id, for_update=True)
    if job.status == JobStatus.SUCCEEDED:
        raise JobError(f"job {job_id} already succeeded; nothing to resume")
    if job.status == JobStatus.RUNNING:
        raise JobError(f"job {job_id} is running; only queued, cancelled, failed or interrupted jobs resume")
    step = next_step_number(session, job.id)
    add_event(session, job, "resumed", f"{'automatically ' if automatic else ''}from step {step} (was {job.status.value})")
    job.status, job.cancel_requested, job.error, job.finished_at = JobStatus.QUEUED, False, None, None
    job.heartbeat_at = utcnow()  # the reaper waits a full period before judging it again
    if automatic:
        job.auto_resumes += 1
    else:  # a person's resume gives the step its full number of attempts again
        job.attempts = 0
    return step


def reap(
    session: Session,
    *,
    stale_after: float = STALE_AFTER_SECONDS,
    auto_resume: bool = AUTO_RESUME,
    max_auto_resumes: int = MAX_AUTO_RESUMES,
) -> list[tuple[int, int]]:
    """Mark jobs with a stale heartbeat interrupted (a worker died, or their message was lost);
    resume them automatically while under the cap. Returns the (job, step) pairs to enqueue."""
    cutoff = utcnow() - timedelta(seconds=stale_after)
    stale = session.scalars(
        select(Job)
        .where(Job.status == JobStatus.RUNNING, Job.heartbeat_at < cutoff)
        .with_for_update(skip_locked=True)  # two reapers never take the same job
    ).all()
    for job in stale:
        job.status = JobStatus.INTERRUPTED
        add_event(session, job, "interrupted", f"no heartbeat since {job.heartbeat_at.isoformat()}")
        if job.cancel_requested:
            # Someone asked it to stop and its worker is gone: it stops, it is not resumed
            # (resuming would drop the request); `mils resume` can still continue it.
            job.status, job.finished_at = JobStatus.CANCELLED, utcnow()
            add_event(session, job, "cancelled", "its worker was lost after the cancel request")
    if not auto_resume:
        return []
    # Interrupted now or earlier (e.g. the broker was down at the last try), under the cap.
    waiting = session.scalars(
        select(Job)
        .where(Job.status == JobStatus.INTERRUPTED, Job.auto_resumes < max_auto_resumes)
        .with_for_update(skip_locked=True)
    ).all()
    to_enqueue = [(job.id, resume(session, job.id, automatic=True)) for job in waiting]
    return to_enqueue


def undo_automatic_resume(session: Session, job_id: int, reason: str) -> None:
    """The broker refused the resumed step: the job is interrupted again, the try not counted,
    and the next reaper pass tries again."""
    job = get_job(session, job_id, for_update=True)
    if job.status == JobStatus.QUEUED:
        job.status, job.auto_resumes = JobStatus.INTERRUPTED, max(job.auto_resumes - 1, 0)
        add_event(session, job, "resume_failed", reason)


HISTORY_FIELDS = ["job_id", "step", "rank", "in_top_k", "score", "text"]


def history(session: Session, job_id: int, *, batch: int = 1000) -> Iterator[dict]:
    """Every candidate of the job in step order, best first within a step; streamed
    (`yield_per`), so a job of any size is never loaded into memory at once."""
    rows = session.execute(
        select(Candidate.step, Candidate.rank, Candidate.score, Candidate.text)
        .where(Candidate.job_id == job_id)
        .order_by(Candidate.step, Candidate.score.desc(), Candidate.id)
        .execution_options(yield_per=batch)
    )
    for step, rank, score, text in rows:
        yield {"job_id": job_id, "step": step, "rank": rank, "in_top_k": rank is not None,
               "score": score, "text": text}


def steps_of(session: Session, job_id: int) -> list[dict]:
    return [
        {"step": s.step, "best_score": s.best_score, "best_text": s.best_text, "mean_topk": s.mean_topk,
         "n_candidates": s.n_candidates}
        for s in session.scalars(select(Step).where(Step.job_id == job_id).order_by(Step.step))
    ]
