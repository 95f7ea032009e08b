"""What people and the reaper do to jobs: cancel, resume, reap (reading them: worker.store.queries).

`cancel`, `resume` and `reap` take a Session and return plain values; the caller owns the
transaction. `resume_job` and `reap_once` are the whole act: their transaction, then the steps
they made due on the queue (only after the commit).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker import config
from worker.queue import BrokerError, enqueue, job_queue
from worker.store.jobs import JobError, add_event, get_job, next_step_number, set_status
from worker.store.queries import JobSummary, summarize
from worker.store.schema import Job, JobStatus, utcnow

log = logging.getLogger(__name__)


def cancel(session: Session, job_id: int) -> JobSummary:
    """Ask the job to stop after the step in flight. A queued job with no step running stops now."""
    job = get_job(session, job_id, for_update=True)
    if job.status.finished:
        raise JobError(f"job {job_id} is already {job.status.value}")
    job.cancel_requested = True
    add_event(session, job, "cancel_requested")
    if job.status in (JobStatus.QUEUED, JobStatus.INTERRUPTED):
        set_status(session, job, JobStatus.CANCELLED, "before its next step")
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
    set_status(session, job, JobStatus.QUEUED,
               f"{'automatically ' if automatic else ''}from step {step} (was {job.status.value})", event="resumed")
    job.cancel_requested, job.error = False, None
    job.heartbeat_at = utcnow()  # the reaper waits a full period before judging it again
    if automatic:
        job.auto_resumes += 1
    else:  # a person's resume gives the step its full number of attempts again
        job.attempts = 0
    return step


def resume_job(sessions: sessionmaker[Session], job_id: int) -> int:
    """A person's resume: queue the job again after its last committed step; returns that step.
    BrokerError when the job is resumed in the store but the broker did not take the step."""
    with sessions.begin() as session:
        step = resume(session, job_id)
        queue = job_queue(get_job(session, job_id))
    enqueue(job_id, step, queue)
    return step


def reap(
    session: Session,
    *,
    stale_after: float | None = None,
    auto_resume: bool | None = None,
    max_auto_resumes: int | None = None,
) -> list[tuple[int, int]]:
    """Mark jobs with a stale heartbeat interrupted (a worker died, or their message was lost);
    resume them automatically while under the cap. Returns the (job, step) pairs to enqueue.
    Unset arguments come from worker.config (MILS_STALE_SECONDS, MILS_AUTO_RESUME, ...)."""
    stale_after = config.stale_seconds() if stale_after is None else stale_after
    auto_resume = config.auto_resume() if auto_resume is None else auto_resume
    max_auto_resumes = config.max_auto_resumes() if max_auto_resumes is None else max_auto_resumes
    cutoff = utcnow() - timedelta(seconds=stale_after)
    stale = session.scalars(
        select(Job)
        .where(Job.status == JobStatus.RUNNING, Job.heartbeat_at < cutoff)
        .with_for_update(skip_locked=True)  # two reapers never take the same job
    ).all()
    for job in stale:
        set_status(session, job, JobStatus.INTERRUPTED, f"no heartbeat since {job.heartbeat_at.isoformat()}")
        if job.cancel_requested:
            # Someone asked it to stop and its worker is gone: it stops, it is not resumed
            # (resuming would drop the request); `mils resume` can still continue it.
            set_status(session, job, JobStatus.CANCELLED, "its worker was lost after the cancel request")
    if not auto_resume:
        return []
    # Interrupted now or earlier (e.g. the broker was down at the last try), under the cap.
    waiting = session.scalars(
        select(Job)
        .where(Job.status == JobStatus.INTERRUPTED, Job.auto_resumes < max_auto_resumes)
        .with_for_update(skip_locked=True)
    ).all()
    return [(job.id, resume(session, job.id, automatic=True)) for job in waiting]


def undo_automatic_resume(session: Session, job_id: int, reason: str) -> None:
    """The broker refused the resumed step: the job is interrupted again, the try not counted,
    and the next reaper pass tries again."""
    job = get_job(session, job_id, for_update=True)
    if job.status == JobStatus.QUEUED:
        set_status(session, job, JobStatus.INTERRUPTED, reason, event="resume_failed")
        job.auto_resumes = max(job.auto_resumes - 1, 0)


def reap_once(sessions: sessionmaker[Session]) -> int:
    """Mark stale jobs interrupted, resume what may be, enqueue it; returns how many resumed."""
    with sessions.begin() as session:
        resumed = reap(session)
        queues = {job_id: job_queue(get_job(session, job_id)) for job_id, _ in resumed}
    done = 0
    for job_id, step in resumed:
        log.warning("job %s was interrupted; resuming it from step %s", job_id, step)
        try:
            enqueue(job_id, step, queues[job_id])
            done += 1
        except BrokerError as exc:
            log.warning("%s", exc)
            with sessions.begin() as session:
                undo_automatic_resume(session, job_id, str(exc))
    return done
