"""The Celery application: one task per optimization step (see worker.tasks).

MILS_BROKER_URL picks the broker: Redis for the distributed setup (redis://host:6379/0),
or by default a SQLite file beside the database (kombu's SQLAlchemy transport), so the
embedded default needs no server. Celery's result backend is not used: the database is
the record of every job.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

from worker.config import data_dir


def broker_url() -> str:
    return os.environ.get("MILS_BROKER_URL") or f"sqla+sqlite:///{data_dir() / 'queue.db'}"


app = Celery("mils", broker=broker_url(), include=["worker.tasks"])
app.conf.update(
    task_ignore_result=True,
    # A step is acknowledged only after it ran: a worker killed mid-step leaves the message
    # to be delivered again (the step is idempotent, see worker.jobs.execute_step).
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
)
if broker_url().startswith("redis"):
    # Redis redelivers an unacknowledged message after this long (its worker died mid-step).
    app.conf.broker_transport_options = {
        "visibility_timeout": float(os.environ.get("MILS_VISIBILITY_TIMEOUT", "3600")),
    }


@worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs) -> None:
    """A forked pool process must not reuse its parent's database connections."""
    from worker.store.db import forget_engines

    forget_engines(close=False)
