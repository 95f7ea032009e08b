"""What people and the reaper do to jobs: cancel, resume, reap (reading them: worker.queries).

Functions take a Session and return plain values; the caller owns the transaction and,
after it commits, enqueues whatever step they say should run next.
"""

from __future__ import annotations

import os
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.jobs import JobError, add_event, next_step_number
from worker.queries import JobSummary, get_job, summarize
from worker.store.models import Job, JobStatus, utcnow

# A running job whose heartbeat is older than this is taken for dead. Between steps a job
# waits in the queue without a heartbeat, so this must exceed a step plus the queue wait.
STALE_AFTER_SECONDS = float(os.environ.get("MILS_STALE_SECONDS", "600"))
AUTO_RESUME = os.environ.get("MILS_AUTO_RESUME", "1") not in ("0", "false", "no")
MAX_AUTO_RESUMES = int(os.environ.get("MILS_MAX_AUTO_RESUMES", "3"))


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
