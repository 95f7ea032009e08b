"""Putting steps on the queue: which queue a job's steps go to, in what order, and enqueueing
one step; and which jobs' steps the broker holds (for the reaper's lost-message check).

A step is enqueued only after the transaction that made it due has committed, so the worker that
takes it always finds its job. The message names the task `worker.tasks.run_step` by name: the
queue does not import the tasks (they import it).

Order: on Redis a queue is ten lists, one per priority, taken in order (kombu's
`queue_order_strategy: priority`, see worker.celery_app). A job's next step goes ahead of every
new job's first step of its priority, so jobs finish in about the order they were submitted and a
job's time to finish does not grow with the backlog behind it:

    broker priority   high job   normal job   low job (a batch's default)
    next step             0          2            4
    first step            1          3            5
"""

from __future__ import annotations

from worker.celery_app import QUEUES, app
from worker.kinds import TASK_KINDS
from worker.models import runs_on_cpu
from worker.models.registry import RegistryError, registry
from worker.store.schema import PRIORITIES, PRIORITY_NAMES, Job

RUN_STEP = "worker.tasks.run_step"


class BrokerError(RuntimeError):
    """The broker did not take the message (the job itself is safely stored). `refused`: the
    messages not sent (worker.jobs.send)."""

    def __init__(self, message: str, job_id: int) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.refused: tuple = ()


def queue_for(*specs: str) -> str:
    """The queue of a job whose models (generator, scorer, and e.g. a renderer) are `specs`:
    "default" when all run on the CPU, else "gpu"."""
    return "default" if all(runs_on_cpu(spec) for spec in specs) else "gpu"


def job_queue(job: Job) -> str:
    """The queue of the job's steps: the queue the model registry gives its generator's (else its
    scorer's) name, if any; else by its specs (its kind says which of its options name models)."""
    try:
        models = registry()
    except RegistryError:  # edited into a bad file since this process started: route by the specs
        models = None
    for role, name in (("generator", job.generator_name), ("scorer", job.scorer_name)):
        entry = models.get(role, name) if models and name else None
        if entry is not None and entry.queue and entry.spec == getattr(job, role):
            return entry.queue
    return queue_for(job.generator, job.scorer, *TASK_KINDS[job.task].model_specs(job.options or {}))


def priority_value(name: str | int | None) -> int:
    """A job's priority from its name ("low", "normal", "high") or number (-1, 0, 1); None is
    normal. ValueError for anything else."""
    if name is None:
        return 0
    if isinstance(name, int) and name in PRIORITY_NAMES:
        return name
    if isinstance(name, str) and name.strip().lower() in PRIORITIES:
        return PRIORITIES[name.strip().lower()]
    raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {name!r}")


def broker_priority(priority: int, step: int) -> int:
    """The Redis priority (0 is taken first) of step `step` of a job of `priority` (-1, 0, 1):
    see the table above. Later steps go ahead of first steps of the same priority."""
    return 2 * (1 - max(-1, min(1, priority))) + (1 if step == 0 else 0)


def enqueue(job_id: int, step: int, queue: str, countdown: float | None = None, *, priority: int = 0) -> None:
    """Queue step `step` of the job (after `countdown` seconds) at the job's `priority`. Call only
    after the transaction that made this step due has committed. BrokerError when the broker does
    not take it."""
    try:
        app.send_task(RUN_STEP, (job_id, step), queue=queue, countdown=countdown,
                      priority=broker_priority(priority, step), retry=True,
                      retry_policy={"max_retries": 3, "interval_start": 0.5, "interval_step": 1})
    except Exception as exc:  # kombu raises several kinds; all mean "not queued"
        raise BrokerError(
            f"job {job_id} is stored but the broker did not take step {step} ({exc}); "
            f"run `mils resume {job_id}` when it is back", job_id
        ) from None


def jobs_on_broker() -> set[int] | None:
    """The ids of the jobs with a step message on the broker: waiting in any priority list of the
    queues, or delivered to a worker and not yet acknowledged (running, or held for a countdown).
    None when the broker cannot be read this way (only Redis can; the SQLite queue cannot).
    O(messages): the reaper calls it only when some job has waited longer than MILS_STALE_SECONDS."""
    import base64
    import json

    found: set[int] = set()

    def note(raw: bytes | str) -> None:
        try:
            message = json.loads(raw)
            if isinstance(message, list):  # the unacked hash keeps [message, exchange, routing key]
                message = message[0]
            if message.get("headers", {}).get("task") != RUN_STEP:
                return
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = json.loads(body)[0]
            found.add(int(args[0]))
        except (ValueError, KeyError, IndexError, TypeError):
            pass  # not one of our messages

    with app.connection_for_write() as connection:
        if connection.transport.driver_type != "redis":
            return None
        channel = connection.default_channel
        client = channel.client
        for queue in QUEUES:
            for _, key in priority_lists(channel, queue):
                start = 0
                while True:  # in pages: a long queue is never read in one reply
                    page = client.lrange(key, start, start + 999)
                    for raw in page:
                        note(raw)
                    if len(page) < 1000:
                        break
                    start += 1000
        for raw in client.hvals(channel.unacked_key):
            note(raw)
    return found


def priority_lists(channel, queue: str) -> list[tuple[int, str]]:
    """(priority, Redis list) of each priority of `queue`, as kombu's Redis `channel` lays them out
    (its `_q_for_pri`: `Q` for priority 0, `Q:p` for the others with the workers' options)."""
    return [(level, channel._q_for_pri(queue, level)) for level in sorted(set(channel.priority_steps))]
