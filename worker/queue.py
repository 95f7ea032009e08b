"""Putting steps on the queue: which queue a job's steps go to, and enqueueing one step.

A step is enqueued only after the transaction that made it due has committed, so the worker that
takes it always finds its job. The message names the task `worker.tasks.run_step` by name: the
queue does not import the tasks (they import it).
"""

from __future__ import annotations

from worker.celery_app import app
from worker.kinds import TASK_KINDS
from worker.models import runs_on_cpu
from worker.store.schema import Job

RUN_STEP = "worker.tasks.run_step"


class BrokerError(RuntimeError):
    """The broker did not take the message (the job itself is safely stored)."""

    def __init__(self, message: str, job_id: int) -> None:
        super().__init__(message)
        self.job_id = job_id


def queue_for(*specs: str) -> str:
    """The queue of a job whose models (generator, scorer, and e.g. a renderer) are `specs`:
    "default" when all run on the CPU, else "gpu"."""
    return "default" if all(runs_on_cpu(spec) for spec in specs) else "gpu"


def job_queue(job: Job) -> str:
    """The queue of the job's steps; its kind says which of its options name models."""
    return queue_for(job.generator, job.scorer, *TASK_KINDS[job.task].model_specs(job.options or {}))


def enqueue(job_id: int, step: int, queue: str, countdown: float | None = None) -> None:
    """Queue step `step` of the job (after `countdown` seconds). Call only after the transaction
    that made this step due has committed. BrokerError when the broker does not take it."""
    try:
        app.send_task(RUN_STEP, (job_id, step), queue=queue, countdown=countdown, retry=True,
                      retry_policy={"max_retries": 3, "interval_start": 0.5, "interval_step": 1})
    except Exception as exc:  # kombu raises several kinds; all mean "not queued"
        raise BrokerError(
            f"job {job_id} is stored but the broker did not take step {step} ({exc}); "
            f"run `mils resume {job_id}` when it is back", job_id
        ) from None


def enqueue_first_steps(jobs: list[tuple[int, str]], label: str) -> None:
    """Queue step 0 of several jobs ((id, queue) pairs, e.g. an arithmetic job's parents and the
    job itself), after their commit. Every one is tried; if the broker refused any, one
    BrokerError names them and says what to resume; its job_id is the last job's (`label` names it)."""
    refused = []
    for job_id, queue in jobs:
        try:
            enqueue(job_id, 0, queue)
        except BrokerError:
            refused.append(job_id)
    if refused:
        last = jobs[-1][0]
        raise BrokerError(f"{label} {last} is stored but the broker did not take job(s) "
                          f"{', '.join(map(str, refused))}; run `mils resume ID` for each when it is back", last)
