"""Celery tasks: one optimization step of one job per task, and the reaper.

A task gets ids, never ORM objects; it runs `execute_step`, which commits the step in one
transaction, and only then enqueues the job's next step (a self-continuing chain).
"""

from __future__ import annotations

import logging
import os
import threading

from celery.signals import worker_ready, worker_shutting_down
from sqlalchemy.exc import DBAPIError

from sqlalchemy.orm import Session, sessionmaker

from worker.celery_app import app
from worker.core import Settings
from worker.jobs import WaitingForParents, create_job, default_models, execute_step
from worker.lifecycle import reap, resume, undo_automatic_resume
from worker.media import Media
from worker.models import check_specs
from worker.store.db import open_store
from worker.store.models import Job

log = logging.getLogger(__name__)

# Specs that run on the machine's CPU; anything else is a real model and goes to the GPU queue.
CPU_SPECS = ("embedded", "py:")
REAP_EVERY_SECONDS = float(os.environ.get("MILS_REAP_SECONDS", "30"))
PARENT_POLL_SECONDS = float(os.environ.get("MILS_PARENT_POLL_SECONDS", "5"))


def queue_for(*specs: str) -> str:
    """The queue of a job whose models (generator, scorer, and e.g. a renderer) are `specs`."""
    on_cpu = all(spec.startswith(CPU_SPECS) for spec in specs)
    return "default" if on_cpu else "gpu"


def job_queue(job: Job) -> str:
    pipelines = [spec for name, spec in (job.options or {}).items() if name in ("renderer", "editor") and spec]
    return queue_for(job.generator, job.scorer, *pipelines)


class BrokerError(RuntimeError):
    """The broker did not take the message (the job itself is safely stored)."""

    def __init__(self, message: str, job_id: int) -> None:
        super().__init__(message)
        self.job_id = job_id


def enqueue(job_id: int, step: int, queue: str, countdown: float | None = None) -> None:
    """Call only after the transaction that made this step due has committed."""
    try:
        run_step.apply_async((job_id, step), queue=queue, countdown=countdown, retry=True,
                             retry_policy={"max_retries": 3, "interval_start": 0.5, "interval_step": 1})
    except Exception as exc:  # kombu raises several kinds; all mean "not queued"
        raise BrokerError(
            f"job {job_id} is stored but the broker did not take step {step} ({exc}); "
            f"run `mils resume {job_id}` when it is back", job_id
        ) from None


def submit(Session: sessionmaker[Session], *, task: str, media: Media, generator: str, scorer: str,
           settings: Settings, options: dict | None = None, input_info: dict | None = None,
           attachments: dict[str, Media] | None = None) -> int:
    """Store a new job, then queue its first step; returns the job id. The specs are checked
    before anything is stored. A BrokerError after this means the job is stored, not queued."""
    check_specs(generator, scorer)
    with Session.begin() as session:
        job = create_job(session, task=task, settings=settings, generator=generator, scorer=scorer,
                         media=media, options=options, input_info=input_info, attachments=attachments)
        job_id, queue = job.id, job_queue(job)
    enqueue(job_id, 0, queue)  # after the commit: the step must find its job
    return job_id


def resume_job(Session: sessionmaker[Session], job_id: int) -> int:
    """A person's resume: queue the job again after its last committed step; returns that step."""
    with Session.begin() as session:
        step = resume(session, job_id)
        job = session.get(Job, job_id)
        queue = job_queue(job)
    enqueue(job_id, step, queue)
    return step


@app.task(
    # Database restarts, dropped connections: retry the step (it is idempotent).
    autoretry_for=(DBAPIError,),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=30,
)
def run_step(job_id: int, step: int) -> None:
    Session = open_store()
    try:
        result = execute_step(Session, job_id, default_models, expected_step=step)
    except WaitingForParents as exc:
        # Built on jobs still running (cross-modal arithmetic): look again in a while.
        log.info("%s; trying again in %s s", exc, PARENT_POLL_SECONDS)
        with Session() as session:
            enqueue(job_id, step, job_queue(session.get(Job, job_id)), countdown=PARENT_POLL_SECONDS)
        return
    if result is None:
        # This delivery committed nothing (a duplicate or stale message, a finished or cancelled
        # job): the delivery that committed the step continues the chain, not this one, or
        # every duplicate would start a chain of its own.
        return
    with Session() as session:
        job = session.get(Job, job_id)
        # After the commit: the next step is due only once this one is on record. Any job not
        # finished goes on, whatever its status says now (a reaper may have marked it while this
        # step ran); a cancel requested since is honoured by the next step, before it runs.
        if job is not None and not job.status.finished:
            enqueue(job_id, result.step + 1, job_queue(job))


def reap_once() -> int:
    """Mark stale jobs interrupted, resume what may be, enqueue it; returns how many resumed."""
    Session = open_store()
    with Session.begin() as session:
        resumed = reap(session)
        jobs = {job_id: session.get(Job, job_id) for job_id, _ in resumed}  # already loaded
        queues = {job_id: job_queue(job) for job_id, job in jobs.items()}
    done = 0
    for job_id, step in resumed:
        log.warning("job %s was interrupted; resuming it from step %s", job_id, step)
        try:
            enqueue(job_id, step, queues[job_id])
            done += 1
        except BrokerError as exc:
            log.warning("%s", exc)
            with Session.begin() as session:
                undo_automatic_resume(session, job_id, str(exc))
    return done


_stop_reaper = threading.Event()


@worker_ready.connect
def _start_reaper(**_kwargs) -> None:
    """Every worker also reaps (the database's row locks keep two reapers apart)."""

    def loop() -> None:
        while not _stop_reaper.wait(REAP_EVERY_SECONDS):
            try:
                reap_once()
            except Exception:  # never let the reaper die with the database down
                log.exception("reaper pass failed")

    threading.Thread(target=loop, name="mils-reaper", daemon=True).start()


@worker_shutting_down.connect
def _stop_reaper_thread(**_kwargs) -> None:
    _stop_reaper.set()
