"""What people and the reaper do to jobs: cancel, resume, reap (reading them: worker.store.queries;
the transitions themselves: worker.jobs).

`cancel`, `reap` and `find_lost` take a Session and return plain values or the steps to queue;
the caller owns the transaction. `resume_job` and `reap_once` are the whole act: their
transaction, then the steps they made due on the queue (only after the commit).

A step message the broker lost is found by looking for it (liveness: see worker.jobs): a job queued for
longer than MILS_STALE_SECONDS whose message is neither waiting on the broker nor delivered to a
worker, in two passes in a row, is queued again (`find_lost`, `requeue_lost`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker import config, jobs
from worker.queue import BrokerError, jobs_on_broker
from worker.store.batches import batch_of
from worker.store.jobs import JobError, get_job
from worker.store.queries import JobSummary, summarize
from worker.store.schema import Batch, Job, JobStatus, utcnow

log = logging.getLogger(__name__)


def cancel(session: Session, job_id: int, *, token_id: int | None = None) -> JobSummary:
    """Ask the job to stop after the step in flight; a queued job with no step running stops now.
    JobError when it is already finished. `token_id`: the API token that asks (None: the CLI)."""
    job = get_job(session, job_id, for_update=True)
    jobs.cancel(session, job, token_id=token_id)
    return summarize(session, job)


def resume_job(sessions: sessionmaker[Session], job_id: int, steps: int | None = None, *,
               token_id: int | None = None) -> int:
    """A person's resume: queue the job again after its last committed step; returns that step.
    `steps`: continue it to that many steps (a succeeded job too; worker.jobs.continue_to); not
    a batch's job (JobError): its batch is continued whole, so that its jobs keep one set of
    settings. `token_id`: the API token that asks (None: the CLI). BrokerError when the job is resumed in the store but the broker did not take the step."""
    with sessions.begin() as session:
        job = get_job(session, job_id, for_update=True)
        batch_id = batch_of(session, job_id) if steps is not None else None
        if batch_id is not None:
            name = session.get(Batch, batch_id).name
            raise JobError(f"job {job_id} is an item of batch {name!r}, whose jobs share their settings: continue "
                           f"the batch (`mils batch resume {name} --steps {steps}`)")
        messages = jobs.resume(session, job, steps=steps, token_id=token_id)
    jobs.send(messages)
    return messages[0].step


def reap(
    session: Session,
    *,
    stale_after: float | None = None,
    auto_resume: bool | None = None,
    max_auto_resumes: int | None = None,
) -> list[jobs.StepMessage]:
    """Mark running jobs with a stale heartbeat interrupted (their worker died); resume them
    automatically while under the cap. Returns the steps to enqueue after the commit.
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
        jobs.interrupt(session, job)
    if not auto_resume:
        return []
    # Interrupted now or earlier (e.g. the broker was down at the last try), under the cap.
    waiting = session.scalars(
        select(Job)
        .where(Job.status == JobStatus.INTERRUPTED, Job.auto_resumes < max_auto_resumes)
        .with_for_update(skip_locked=True)
    ).all()
    return [message for job in waiting for message in jobs.resume(session, job, automatic=True)]


def undo_automatic_resume(session: Session, job_id: int, reason: str) -> None:
    """The broker refused the resumed step: the job is interrupted again, the try not counted,
    and the next reaper pass tries again."""
    jobs.undo_automatic_resume(session, get_job(session, job_id, for_update=True), reason)


# Jobs that looked lost at the last pass of this process's reaper: {job id: its queued_at}.
_suspects: dict[int, object] = {}


def find_lost(session: Session, on_broker: set[int] | None, *, stale_after: float | None = None,
              suspects: dict[int, object] | None = None) -> list[tuple[int, int]]:
    """Queued jobs whose step message is lost: queued for longer than `stale_after` seconds
    (MILS_STALE_SECONDS) and not among `on_broker` (worker.queue.jobs_on_broker, read BEFORE
    this), in this pass and in the last one (`suspects`, updated in place: a message between the
    queue and a worker's unacked set can be missed by one read). Each is queued again (an event
    says why); returns the steps to enqueue after the commit. None for `on_broker`: the broker cannot be
    read, and nothing is judged lost."""
    if on_broker is None:
        return []
    stale_after = config.stale_seconds() if stale_after is None else stale_after
    suspects = _suspects if suspects is None else suspects
    cutoff = utcnow() - timedelta(seconds=stale_after)
    waiting = session.execute(
        select(Job.id, Job.queued_at).where(Job.status == JobStatus.QUEUED, Job.queued_at < cutoff)
    ).all()
    now_missing = {job_id: queued_at for job_id, queued_at in waiting if job_id not in on_broker}
    confirmed = [job_id for job_id, queued_at in now_missing.items() if suspects.get(job_id) == queued_at]
    suspects.clear()
    suspects.update({job_id: at for job_id, at in now_missing.items() if job_id not in confirmed})
    lost: list[jobs.StepMessage] = []
    for job_id in confirmed:
        job = session.scalar(select(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                             .with_for_update(skip_locked=True))
        if job is None or job.queued_at != now_missing[job_id]:
            continue  # taken or queued again meanwhile
        lost += jobs.requeue_lost(session, job)
    return lost


def reap_once(sessions: sessionmaker[Session]) -> int:
    """Mark stale running jobs interrupted, resume what may be, queue again the steps whose
    messages were lost; enqueue them all. Returns how many were queued again."""
    on_broker = _broker_snapshot(sessions)
    with sessions.begin() as session:
        resumed = reap(session)
        lost = find_lost(session, on_broker)
    done = 0
    for item in resumed + lost:
        if item in lost:
            log.warning("job %s: the message of step %s was lost; queueing it again", item.job_id, item.step)
        else:
            log.warning("job %s was interrupted; resuming it from step %s", item.job_id, item.step)
        try:
            jobs.send([item])
            done += 1
        except BrokerError as exc:
            log.warning("%s", exc)
            with sessions.begin() as session:
                undo_automatic_resume(session, item.job_id, str(exc))
    return done


def _broker_snapshot(sessions: sessionmaker[Session]) -> set[int] | None:
    """The jobs with a message on the broker, read only when some job has been queued for
    longer than MILS_STALE_SECONDS (reading the broker is O(messages)); else an empty set."""
    cutoff = utcnow() - timedelta(seconds=config.stale_seconds())
    with sessions() as session:
        old = session.scalar(select(Job.id).where(Job.status == JobStatus.QUEUED, Job.queued_at < cutoff).limit(1))
    if old is None:
        _suspects.clear()
        return set()
    try:
        return jobs_on_broker()
    except Exception as exc:  # the broker is down: judge nothing this pass
        log.warning("could not read the broker for lost steps: %s", exc)
        return None
