"""A job's life: the only code that writes a job's status and lease fields (status, error,
started and finished times, worker, heartbeat, step attempts, automatic resumes, queued time, the
cancel flag), and the one place that puts steps on the queue after a commit.

Each transition takes the caller's Session and the job's row, locked by the caller
(`get_job(session, job_id, for_update=True)`: every transaction that decides about a job's status
locks its row first, so none decides on a stale copy), writes the new state with an event, and
returns the messages it made due. The caller commits, then calls `send(messages)`: a step goes on
the queue only once the transaction that made it due is on record, so the worker that takes it
always finds its job.

    submitted / let_in ─▶ queued ─claim─▶ running ─commit_step─▶ queued (its next step)
                                           │  │                   succeeded (its last step)
                                           │  │                   cancelled (asked meanwhile)
                                           │  ├─wait_for_llm─▶ queued (the same step, retried)
                                           │  └─fail─▶ failed
                                           └─interrupt (the reaper: no heartbeat)─▶ interrupted
    cancelled, failed, interrupted, queued ─resume─▶ queued     queued ─requeue_lost─▶ queued
    succeeded, cancelled, failed, interrupted ─resume with more steps─▶ queued
    queued, interrupted ─cancel─▶ cancelled                      running ─cancel─▶ (the flag)

Liveness: a job is `running` only while a worker holds its step, and only then is it judged by its
heartbeat (MILS_STALE_SECONDS). Between steps it is `queued` with the time its step went on the
queue (`queued_at`), however long the queue: a long wait is not a death. A batch's job held back
for room has no queued time until it is let in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker import config
from worker.core import Settings
from worker.core.optimizer import should_stop
from worker.queue import BrokerError, enqueue, job_queue
from worker.store.jobs import JobError, add_event, load_state, next_step_number
from worker.store.purge import purge_record
from worker.store.schema import Job, JobEvent, JobStatus, utcnow


@dataclass(frozen=True)
class StepMessage:
    """Step `step` of job `job_id`, to put on `queue` at the job's `priority` (after `countdown`
    seconds) once the transaction that made it due has committed."""

    job_id: int
    step: int
    queue: str
    priority: int = 0
    countdown: float | None = None


def message(job: Job, step: int, countdown: float | None = None) -> StepMessage:
    """The message of the job's step `step`, routed by its models (worker.queue.job_queue)."""
    return StepMessage(job.id, step, job_queue(job), job.priority, countdown)


def send(messages: Sequence[StepMessage], *, label: str = "job", stop_at_first_refusal: bool = False) -> None:
    """Put the messages on the queue; call only after the transaction that returned them has
    committed. Every message is tried (or, with `stop_at_first_refusal`, none after the first the
    broker refuses: each refusal waits out the client's retries). BrokerError when the broker
    refused any: `refused` holds those not sent; its message names the jobs to resume (for one
    job, the broker's own error; for several, `label` names the last, e.g. "arithmetic job")."""
    refused: list[StepMessage] = []
    first: BrokerError | None = None
    for position, item in enumerate(messages):
        try:
            enqueue(item.job_id, item.step, item.queue, item.countdown, priority=item.priority)
        except BrokerError as exc:
            first = first or exc
            refused.append(item)
            if stop_at_first_refusal:
                refused += messages[position + 1:]
                break
    if not refused:
        return
    if len(messages) == 1:
        error = first
    else:
        last = messages[-1].job_id
        error = BrokerError(f"{label} {last} is stored but the broker did not take job(s) "
                            f"{', '.join(str(m.job_id) for m in refused)}; run `mils resume ID` for each "
                            "when it is back", last)
    error.refused = tuple(refused)
    raise error


# --------------------------------------------------------------------------- status and events


def _set_status(session: Session, job: Job, status: JobStatus, detail: str | None = None, *,
                event: str | None = None, token_id: int | None = None) -> None:
    """The status, its finish time, and an event (named after the status unless `event` says
    otherwise, e.g. "resumed" for a job queued again; `token_id`: the API token that acted)."""
    job.status = status
    job.finished_at = utcnow() if status.finished else None
    add_event(session, job, event or status.value, detail, token_id=token_id)


def _mark_queued(session: Session, job: Job, detail: str | None = None) -> None:
    """The job's next step is (about to be) on the queue: queued since now, no worker, no heartbeat
    to judge. Between two steps this is quiet (the steps table records each step); from another
    status it logs a "queued" event with `detail`."""
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        _set_status(session, job, JobStatus.QUEUED, detail)
    job.status = JobStatus.QUEUED
    job.queued_at, job.worker, job.heartbeat_at = utcnow(), None, None


# --------------------------------------------------------------------------- submitting


def submitted(session: Session, job: Job, *, held: bool = False) -> list[StepMessage]:
    """A job just stored (queued by default): its first step goes on the queue now, or, `held`,
    later, when its batch has room (`let_in`)."""
    job.status = JobStatus.QUEUED
    job.queued_at = None if held else utcnow()
    return [] if held else [message(job, 0)]


def let_in(session: Session, job: Job) -> list[StepMessage]:
    """A batch's held job goes on the queue (the batch's row is locked by the caller, who counted
    the room)."""
    job.queued_at = utcnow()
    return [message(job, next_step_number(session, job.id))]


def hold_again(session: Session, job: Job) -> None:
    """The broker did not take a let-in job's step: it waits for room again."""
    job.queued_at = None


# --------------------------------------------------------------------------- running a step


def honour_cancel(session: Session, job: Job) -> bool:
    """Before a step: True when the job runs no step now, because it is finished or a cancel was
    asked for (which this records: the job is cancelled)."""
    if job.status.finished:
        return True
    if job.cancel_requested:
        _set_status(session, job, JobStatus.CANCELLED, "before a step")
        return True
    return False


def claim(session: Session, job: Job, step: int, worker: str) -> bool:
    """A worker takes step `step`: the start is counted (MILS_MAX_STEP_ATTEMPTS: a step that keeps
    killing its worker fails the job rather than run forever), then the job is running, judged by
    its heartbeat from now. A "running" event when the job starts or starts again (not between two
    steps of one run). False when the job failed instead."""
    if job.attempt_step == step:
        job.attempts += 1
    else:
        job.attempt_step, job.attempts = step, 1
    if job.attempts > config.max_step_attempts():
        fail(session, job, f"step {step} was started {config.max_step_attempts()} times and never finished")
        return False
    if job.status != JobStatus.RUNNING:
        last_event = session.scalar(select(JobEvent.kind).where(JobEvent.job_id == job.id)
                                    .order_by(JobEvent.id.desc()).limit(1))
        if job.status != JobStatus.QUEUED or step == 0 or last_event in ("resumed", "queued"):
            _set_status(session, job, JobStatus.RUNNING, f"step {step}")
    job.status = JobStatus.RUNNING
    job.worker, job.heartbeat_at = worker[:255], utcnow()
    job.started_at = job.started_at or utcnow()
    return True


def heartbeat(session: Session, job_id: int) -> None:
    """The step in flight is alive (its own short transaction, without the job's lock)."""
    session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))


def commit_step(session: Session, job: Job, step: int, *, last: bool) -> list[StepMessage]:
    """Step `step` is recorded in this transaction: the job succeeds (`last`: its stopping rule
    says so), is cancelled (asked meanwhile), or goes on: its next step is returned. A job that
    finished while the step ran (cancelled or failed) keeps its status, and the step."""
    job.heartbeat_at = utcnow()
    if job.status.finished:
        return []
    if last:
        _set_status(session, job, JobStatus.SUCCEEDED)
        return []
    if job.cancel_requested:
        _set_status(session, job, JobStatus.CANCELLED, f"after step {step}")
        return []
    # Its next step waits in the queue: no worker holds it, no heartbeat judges it.
    _mark_queued(session, job)
    return [message(job, step + 1)]


def succeed(session: Session, job: Job) -> None:
    """Its stopping rule says the job is done (e.g. resumed after its last step)."""
    _set_status(session, job, JobStatus.SUCCEEDED)


def fail(session: Session, job: Job, error: str) -> None:
    """The job failed for `error`; its committed steps stay, so it can be resumed."""
    job.error = error
    _set_status(session, job, JobStatus.FAILED, error)


def wait_for_llm(session: Session, job: Job, step: int, reason: str) -> None:
    """The LLM server is down: nothing of the step is kept, and this start of it does not count
    against MILS_MAX_STEP_ATTEMPTS (no worker died); the same step is tried again later (Celery's
    retry re-sends it) or the job fails."""
    if job.attempt_step == step and job.attempts > 0:
        job.attempts -= 1
    add_event(session, job, "waiting_for_llm", f"step {step}: {reason}")
    if not job.status.finished:
        _mark_queued(session, job)


# --------------------------------------------------------------------------- people and the reaper


def cancel(session: Session, job: Job, *, token_id: int | None = None) -> None:
    """Ask the job to stop after the step in flight; a queued or interrupted job, which has no step
    running, stops now. JobError when it is already finished. `token_id`: the API token that asks
    (None: the CLI), named in the events."""
    if job.status.finished:
        raise JobError(f"job {job.id} is already {job.status.value}")
    job.cancel_requested = True
    add_event(session, job, "cancel_requested", token_id=token_id)
    if job.status in (JobStatus.QUEUED, JobStatus.INTERRUPTED):
        _set_status(session, job, JobStatus.CANCELLED, "before its next step", token_id=token_id)


def resume(session: Session, job: Job, *, automatic: bool = False, held: bool = False,
           steps: int | None = None, token_id: int | None = None) -> list[StepMessage]:
    """Queue a cancelled, failed or interrupted job again, after its last committed step. A queued
    job may be resumed too: that re-sends a message the broker lost (a duplicate is dropped).
    `automatic`: the reaper's resume (counted against MILS_MAX_AUTO_RESUMES); a person's gives the
    step its full number of attempts again. `held`: not put on the queue now (a batch's job waits
    for room, `let_in`). `steps`: continue it to that many steps (`continue_to`), a succeeded job
    too. `token_id`: the API token that asks (None: the CLI, the reaper), named in the event.
    JobError for a job that succeeded (without `steps`), runs, is queued (with `steps`), or
    whose candidates were archived."""
    if job.status == JobStatus.SUCCEEDED and steps is None:
        raise JobError(f"job {job.id} already succeeded; nothing to resume (give more steps to continue it)")
    if job.status == JobStatus.RUNNING:
        raise JobError(f"job {job.id} is running; only queued, cancelled, failed or interrupted jobs resume")
    if job.status == JobStatus.QUEUED and steps is not None:
        raise JobError(f"job {job.id} is queued; more steps are for a job that is not on its way "
                       "(succeeded, cancelled, failed or interrupted)")
    archived = purge_record(session, job.id)
    if archived is not None:  # its state (the candidates) is in the archive, not here
        raise JobError(f"job {job.id}'s candidates were archived by `mils purge` ({archived['detail']}); "
                       "it cannot be resumed")
    if steps is not None:
        continue_to(session, job, steps, token_id=token_id)
    step = next_step_number(session, job.id)
    _set_status(session, job, JobStatus.QUEUED,
                f"{'automatically ' if automatic else ''}from step {step} (was {job.status.value})", event="resumed",
                token_id=token_id)
    job.cancel_requested, job.error = False, None
    _mark_queued(session, job)
    if held:
        job.queued_at = None
    if automatic:
        job.auto_resumes += 1
    else:
        job.attempts = 0
    return [] if held else [message(job, step)]


def more_steps(settings: dict, steps: int, what: str) -> Settings:
    """`settings` (a stored Settings dict) with `steps` steps: JobError unless that is more than it
    has (`what` names the job or batch in the message), SettingsError past MAX_STEPS."""
    current = Settings.from_dict(settings)
    if steps <= current.steps:
        raise JobError(f"{what} has {current.steps} steps; to continue it give more steps than that, not {steps}")
    return current.replace(steps=steps)


def continue_to(session: Session, job: Job, steps: int, *, token_id: int | None = None) -> None:
    """The job's settings say `steps` steps from now on (more than it had: JobError otherwise), with
    an event "continued". Its committed steps stay as they are; the next one starts from the
    stored top K of its last. A patience that had stopped it early is turned off (it would stop
    it again at once): continuing runs it to `steps`, and the event says so."""
    longer = more_steps(job.settings, steps, f"job {job.id}")
    detail = f"to {steps} steps (was {job.settings['steps']})"
    patience = longer.patience
    if patience is not None:
        state = load_state(session, job.id)
        if state is not None and should_stop(state, longer):
            longer = longer.replace(patience=None)
            detail += (f"; patience {patience} is off from now on: it had stopped the job early, "
                       f"after step {state.step}")
    job.settings = longer.to_dict()
    add_event(session, job, "continued", detail, token_id=token_id)


def interrupt(session: Session, job: Job) -> None:
    """The reaper found the running job's heartbeat stale (its worker died): interrupted, or
    cancelled when someone had asked it to stop (resuming would drop the request; `mils resume`
    can still continue it)."""
    _set_status(session, job, JobStatus.INTERRUPTED, f"no heartbeat since {job.heartbeat_at.isoformat()}")
    if job.cancel_requested:
        _set_status(session, job, JobStatus.CANCELLED, "its worker was lost after the cancel request")


def undo_automatic_resume(session: Session, job: Job, reason: str) -> None:
    """The broker refused an automatically resumed step: the job is interrupted again, the try not
    counted, and the next reaper pass tries again."""
    if job.status == JobStatus.QUEUED:
        _set_status(session, job, JobStatus.INTERRUPTED, reason, event="resume_failed")
        job.auto_resumes = max(job.auto_resumes - 1, 0)


def requeue_lost(session: Session, job: Job) -> list[StepMessage]:
    """The queued job's step message is no longer on the broker: queued again, with an event."""
    step = next_step_number(session, job.id)
    add_event(session, job, "requeued", f"step {step} was queued at {job.queued_at.isoformat()} and its "
                                        "message is no longer on the broker")
    _mark_queued(session, job)
    return [message(job, step)]
