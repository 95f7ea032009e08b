"""The Celery application: one task per optimization step (see worker.tasks).

MILS_BROKER_URL picks the broker: Redis for the distributed setup (redis://host:6379/0),
or by default a SQLite file beside the database (kombu's SQLAlchemy transport), so the
embedded default needs no server. Celery's result backend is not used: the database is
the record of every job.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from worker import config

# The queues steps are routed to (worker.queue.queue_for): CPU-only models, and the GPU's.
QUEUES = ("default", "gpu")

app = Celery("mils", include=["worker.tasks"])
app.conf.update(
    task_ignore_result=True,
    # A step is acknowledged only after it ran: a worker killed mid-step leaves the message
    # to be delivered again (the step is idempotent, see worker.runner.execute_step).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,  # a worker holds only the step it runs
    task_default_queue="default",
    task_routes={"worker.tasks.run_step": {"queue": "default"}},
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,  # ride out a broker restart
    worker_hijack_root_logger=False,
    # Task events (sent, received, started, succeeded, ...) for monitors such as Flower.
    worker_send_task_events=True,
    task_send_sent_event=True,
)


def transport_options(url: str) -> dict:
    """kombu's options for the broker at `url`. On Redis: a queue is ten lists, taken in order, so
    a job's next step goes before new jobs' first steps (worker.queue.broker_priority); senders
    and workers must agree on them. Other brokers take none (SQLAlchemy's would pass them on)."""
    if not url.startswith("redis"):
        return {}
    return {
        "priority_steps": list(range(10)), "sep": ":", "queue_order_strategy": "priority",
        # Redis redelivers an unacknowledged message after this long (its worker died mid-step).
        "visibility_timeout": config.visibility_timeout(),
    }


def _broker_settings() -> dict:
    """Read from the environment when the app first needs its configuration, not at import: a
    process that sets MILS_BROKER_URL before its first message uses it."""
    url = config.broker_url()
    if url.startswith("sqla+sqlite:///"):
        prepare_sqlite_queue(url)
    return {"broker_url": url, "broker_transport_options": transport_options(url)}


def prepare_sqlite_queue(url: str) -> None:
    """Make the embedded broker's SQLite file with its tables and QUEUES, under a lock across
    processes (a file beside it). kombu's SQLAlchemy transport makes them on first use under a
    lock of its own process only: a `mils worker` and a `mils submit` started at once on a new home
    both inserted a queue ("UNIQUE constraint failed: kombu_queue.name"). Once made, the transport
    finds them and inserts nothing."""
    import warnings

    from filelock import FileLock
    from kombu import Connection, Queue

    path = url.removeprefix("sqla+sqlite:///")
    with FileLock(path + ".lock"), Connection(url) as connection, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # kombu's mappings, on SQLAlchemy 2.1
        for name in QUEUES:
            Queue(name, channel=connection.default_channel).declare()


app.add_defaults(_broker_settings)


@worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs) -> None:
    """A forked pool process must not reuse its parent's database connections."""
    from worker.store.db import forget_engines

    forget_engines(close=False)
