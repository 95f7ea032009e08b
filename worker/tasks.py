"""Celery tasks: one optimization step of one job per task, and each worker's reaper loop.

A task gets ids, never ORM objects; it runs `worker.runner.execute_step`, which commits the step
in one transaction, and only then enqueues the job's next step (a self-continuing chain).
"""

from __future__ import annotations

import logging
import threading
import time

from celery.signals import worker_ready, worker_shutting_down
from sqlalchemy.exc import DBAPIError

from worker import config
from worker.celery_app import app
from worker.batches import release_after, release_all
from worker.lifecycle import reap_once
from worker.queue import enqueue, job_queue
from worker.core import GeneratorUnavailable
from worker.runner import WaitingForParents, default_models, execute_step, fail_job, this_worker
from worker.store.db import open_store
from worker.store.jobs import get_job

log = logging.getLogger(__name__)


@app.task(
    bind=True,
    # Database restarts, dropped connections: retry the step (it is idempotent).
    autoretry_for=(DBAPIError,),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=30,
)
def run_step(self, job_id: int, step: int, llm_waiting_since: float | None = None) -> None:
    sessions = open_store()
    try:
        result = execute_step(sessions, job_id, default_models, expected_step=step,
                              worker=this_worker(self.request.hostname))
    except GeneratorUnavailable as exc:
        # The LLM server is down or overloaded: the same step again in a while, for up to
        # MILS_LLM_WAIT_SECONDS in all; then the job fails (and `mils resume` takes it on later).
        since = llm_waiting_since or time.time()
        waited = time.time() - since
        if waited >= config.llm_wait_seconds():
            fail_job(sessions, job_id, GeneratorUnavailable(f"{exc} (waited {waited:.0f} s)"))
            release_after(sessions, job_id)
            return
        countdown = min(2 ** min(self.request.retries, 5), 30)
        log.info("job %s step %s: %s; trying again in %s s", job_id, step, exc, countdown)
        raise self.retry(kwargs={"llm_waiting_since": since}, countdown=countdown, max_retries=None) from None
    except WaitingForParents as exc:
        # Built on jobs still running (cross-modal arithmetic): look again in a while.
        log.info("%s; trying again in %s s", exc, config.parent_poll_seconds())
        with sessions() as session:
            job = get_job(session, job_id)
            enqueue(job_id, step, job_queue(job), countdown=config.parent_poll_seconds(), priority=job.priority)
        return
    except Exception:
        release_after(sessions, job_id)  # it failed: its batch may start another job
        raise
    if result is None:
        # This delivery committed nothing (a duplicate or stale message, a finished or cancelled
        # job): the delivery that committed the step continues the chain, not this one, or
        # every duplicate would start a chain of its own.
        release_after(sessions, job_id)
        return
    with sessions() as session:
        job = get_job(session, job_id)
        # After the commit: the next step is due only once this one is on record. Any job not
        # finished goes on, whatever its status says now (a reaper may have marked it while this
        # step ran); a cancel requested since is honoured by the next step, before it runs.
        finished, queue, priority = job.status.finished, job_queue(job), job.priority
    if not finished:
        enqueue(job_id, result.step + 1, queue, priority=priority)
    else:
        release_after(sessions, job_id)


_stop_reaper = threading.Event()


@worker_ready.connect
def _start_reaper(**_kwargs) -> None:
    """Every worker also reaps (the database's row locks keep two reapers apart)."""
    period = config.reap_seconds()

    def loop() -> None:
        while not _stop_reaper.wait(period):
            try:
                reap_once(open_store())
                release_all(open_store())  # batches whose finishing jobs could not let the next ones in
            except Exception:  # never let the reaper die with the database down
                log.exception("reaper pass failed")

    threading.Thread(target=loop, name="mils-reaper", daemon=True).start()


@worker_shutting_down.connect
def _stop_reaper_thread(**_kwargs) -> None:
    _stop_reaper.set()
