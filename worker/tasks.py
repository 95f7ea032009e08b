"""Celery tasks: one optimization step of one job per task, and each worker's reaper loop.

A task gets ids, never ORM objects; it runs `worker.runner.run_queued_step`, which commits the step
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
from worker.queue import BrokerError
from worker.core import GeneratorUnavailable
from worker.runner import fail_job, run_queued_step, this_worker
from worker.store.db import open_store

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
        finished = run_queued_step(sessions, job_id, step, worker=this_worker(self.request.hostname))
    except GeneratorUnavailable as exc:
        # The LLM server is down or overloaded: the same step again in a while, for up to
        # MILS_LLM_WAIT_SECONDS in all; then the job fails (and `mils resume` takes it on later).
        since = llm_waiting_since or time.time()
        waited = time.time() - since
        if waited < config.llm_wait_seconds():
            countdown = min(2 ** min(self.request.retries, 5), 30)
            log.info("job %s step %s: %s; trying again in %s s", job_id, step, exc, countdown)
            raise self.retry(kwargs={"llm_waiting_since": since}, countdown=countdown, max_retries=None) from None
        fail_job(sessions, job_id, GeneratorUnavailable(f"{exc} (waited {waited:.0f} s)"))
        finished = True
    except BrokerError:
        raise  # the step is stored, its next one not queued: the reaper finds it; no room was made
    except Exception:
        release_after(sessions, job_id)  # it failed: its batch may start another job
        raise
    if finished:
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
