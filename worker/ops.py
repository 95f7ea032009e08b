"""What an operator of a busy service needs to see, in one snapshot: the broker's queues (per queue
and priority), messages delivered but not acknowledged, jobs by status, steps per minute, failures,
the oldest waiting step, and the steps running now grouped by worker.

The web shows it (`/ops`, `GET /api/ops`) and exports it to Prometheus (`/metrics`, web.metrics).
Every database read uses an index (jobs by status, queued jobs by queued_at, steps by finish time)
and none reads candidates, so a snapshot stays cheap at 10,000+ jobs; the broker is read with one
pipelined round of LLEN/HLEN on Redis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.celery_app import app as celery_app
from worker.queue import QUEUES, priority_lists
from worker.store.queries import iso
from worker.store.schema import Job, JobEvent, JobStatus, Step, utcnow

# The queues the workers consume (worker.queue routes a job's steps to one of them).
STEPS_WINDOW = timedelta(minutes=5)  # steps per minute = steps finished in this window / 5
FAILURES_WINDOW = timedelta(hours=1)
RUNNING_ROWS = 1000  # running steps listed one by one at most (counts per worker are always whole)


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    priority: int  # the broker's priority list (Redis: 0 is taken first); None when not known
    messages: int


@dataclass(frozen=True)
class BrokerState:
    transport: str  # kombu's name for it: "redis", "sqlalchemy", ...
    depths: list[QueueDepth]  # per queue and priority on Redis; one row per queue elsewhere
    unacked: int | None  # delivered to a worker, not yet acknowledged (Redis only)
    error: str | None = None  # why the broker could not be read (depths are then empty)

    def total(self, queue: str) -> int | None:
        rows = [d.messages for d in self.depths if d.queue == queue]
        return sum(rows) if rows else None


@dataclass(frozen=True)
class RunningStep:
    job_id: int
    step: int  # the step being run (the job's committed steps so far)
    heartbeat_age_seconds: float | None


@dataclass(frozen=True)
class WorkerSteps:
    worker: str  # jobs.worker: "celery@host/pid/thread"; "unknown" for a running job without one
    running: int
    steps: list[RunningStep]  # the longest-silent first; may be cut at RUNNING_ROWS overall


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    broker: BrokerState
    jobs_by_status: dict[str, int]  # every status, zeros included
    steps_total: int  # steps ever committed (purge keeps steps: it only grows)
    steps_last_5_minutes: int
    failures_last_hour: int  # jobs whose latest status is failed, finished in the last hour
    failures_total: int  # "failed" events ever (a job failed, resumed and failed again counts twice)
    oldest_waiting_job_id: int | None
    oldest_waiting_seconds: float | None  # how long the oldest queued step has waited
    workers: list[WorkerSteps] = field(default_factory=list)
    # LLM requests and tokens ever spent by the steps that recorded them, by generator spec:
    # {spec: {"requests": n, "prompt_tokens": n, "completion_tokens": n}} (tokens the engine reported).
    llm_by_model: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def steps_per_minute(self) -> float:
        return self.steps_last_5_minutes / (STEPS_WINDOW.total_seconds() / 60)

    def to_dict(self) -> dict:
        """JSON-ready: times in ISO 8601 UTC, ages in seconds."""
        data = asdict(self)
        data["taken_at"] = iso(self.taken_at)
        data["steps_per_minute"] = self.steps_per_minute
        data["broker"]["totals"] = {q: self.broker.total(q) for q in QUEUES}
        return data


# --------------------------------------------------------------------------- the broker


def broker_state(app: Celery = celery_app, queues: tuple[str, ...] = QUEUES) -> BrokerState:
    """The depth of each queue. On Redis (kombu's transport) a queue with priority steps is one
    list per step, `Q` for the first and `Q<sep><p>` for the others (kombu's `_q_for_pri`); the
    key names come from kombu's own channel, so `sep`, `priority_steps` and `global_keyprefix`
    are the workers'. Unacknowledged messages are the `unacked` hash. Any other transport gives
    one count per queue (a passive queue declare) and no unacked count. Never raises: a broker
    that cannot be reached is an `error` with no depths."""
    try:
        with app.connection_for_read() as connection:
            # At most one try: a page or a scrape must not wait out the workers' endless retries.
            connection.ensure_connection(max_retries=1, timeout=3)
            channel = connection.default_channel
            transport = connection.transport.driver_type
            if transport == "redis":
                return _redis_state(channel, queues)
            depths = []
            for queue in queues:
                _, messages, _ = channel.queue_declare(queue=queue, passive=True)
                depths.append(QueueDepth(queue, None, messages))
            return BrokerState(transport, depths, None)
    except Exception as exc:  # any failure means "could not read it": say which, do not fail the page
        return BrokerState("unknown", [], None, f"{type(exc).__name__}: {exc}"[:500])


def _redis_state(channel, queues: tuple[str, ...]) -> BrokerState:
    lists = [(queue, level, key) for queue in queues for level, key in priority_lists(channel, queue)]
    with channel.client.pipeline(transaction=False) as pipe:
        for _, _, key in lists:
            pipe.llen(key)
        pipe.hlen(channel.unacked_key)
        counts = pipe.execute()
    depths = [QueueDepth(queue, level, int(count)) for (queue, level, _), count in zip(lists, counts)]
    return BrokerState("redis", depths, int(counts[-1]))


# --------------------------------------------------------------------------- the database


def _age(now: datetime, moment: datetime | None) -> float | None:
    if moment is None:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)  # SQLite gives naive UTC
    return max(0.0, (now - moment).total_seconds())


def running_steps(session: Session, now: datetime, limit: int = RUNNING_ROWS) -> list[WorkerSteps]:
    """The steps claimed by workers now (jobs running), grouped by worker; within a worker the
    longest without a heartbeat first. Counts per worker are whole; at most `limit` steps are listed."""
    counts = dict(session.execute(select(Job.worker, func.count()).where(Job.status == JobStatus.RUNNING)
                                  .group_by(Job.worker)).all())
    # The step in flight is the number of committed ones (uq_steps_job_step makes this a lookup).
    step = select(func.coalesce(func.max(Step.step) + 1, 0)).where(Step.job_id == Job.id).scalar_subquery()
    rows = session.execute(select(Job.worker, Job.id, step, Job.heartbeat_at)
                           .where(Job.status == JobStatus.RUNNING)
                           .order_by(Job.heartbeat_at.asc().nulls_first(), Job.id).limit(limit)).all()
    listed: dict[str | None, list[RunningStep]] = {}
    for worker, job_id, number, heartbeat in rows:
        listed.setdefault(worker, []).append(RunningStep(job_id, number, _age(now, heartbeat)))
    return [WorkerSteps(worker or "unknown", count, listed.get(worker, []))
            for worker, count in sorted(counts.items(), key=lambda kv: kv[0] or "")]


def take_snapshot(session: Session, app: Celery = celery_app) -> Snapshot:
    """Everything on the operator page, read now (a few indexed queries and one broker round trip)."""
    now = utcnow()
    by_status = {s.value: 0 for s in JobStatus}
    for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
        by_status[JobStatus(status).value] = count
    oldest = session.execute(select(Job.id, Job.queued_at)
                             .where(Job.status == JobStatus.QUEUED, Job.queued_at.is_not(None))
                             .order_by(Job.queued_at).limit(1)).first()
    return Snapshot(
        taken_at=now,
        broker=broker_state(app),
        jobs_by_status=by_status,
        steps_total=session.scalar(select(func.count()).select_from(Step)),
        steps_last_5_minutes=session.scalar(select(func.count()).select_from(Step)
                                            .where(Step.finished_at >= now - STEPS_WINDOW)),
        failures_last_hour=session.scalar(select(func.count()).select_from(Job).where(
            Job.status == JobStatus.FAILED, Job.finished_at >= now - FAILURES_WINDOW)),
        failures_total=session.scalar(select(func.count()).select_from(JobEvent)
                                      .where(JobEvent.kind == JobStatus.FAILED.value)),
        oldest_waiting_job_id=oldest[0] if oldest else None,
        oldest_waiting_seconds=_age(now, oldest[1]) if oldest else None,
        workers=running_steps(session, now),
        llm_by_model={generator: {"requests": int(requests or 0), "prompt_tokens": int(prompt or 0),
                                  "completion_tokens": int(completion or 0)}
                      for generator, requests, prompt, completion in session.execute(
                          select(Job.generator, func.sum(Step.llm_requests), func.sum(Step.prompt_tokens),
                                 func.sum(Step.completion_tokens)).join(Job, Job.id == Step.job_id)
                          .where(Step.llm_requests > 0).group_by(Job.generator))},
    )
