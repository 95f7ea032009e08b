"""The reaper on a real database: stale running jobs are interrupted and resumed under a cap,
and a resume the broker refused is tried again on the next pass."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from worker.runner import execute_step
from worker.lifecycle import reap, undo_automatic_resume
from worker.store.db import open_store
from worker.store.schema import Job, JobEvent, JobStatus, utcnow

from tests.store.test_store import Resolver, new_job


def _make_stale(Session, job_id: int) -> None:
    with Session.begin() as session:
        job = session.get(Job, job_id)
        job.status, job.heartbeat_at = JobStatus.RUNNING, utcnow() - timedelta(hours=1)


def test_reaper_interrupts_resumes_and_retries_after_a_broker_failure(db_url):
    Session = open_store(db_url, auto_upgrade=True)
    job_id = new_job(Session)
    assert execute_step(Session, job_id, models_for=Resolver()) is not None  # step 0
    _make_stale(Session, job_id)

    with Session.begin() as session:
        assert [(m.job_id, m.step) for m in reap(session, stale_after=60, max_auto_resumes=2)] == [(job_id, 1)]
    with Session.begin() as session:  # the broker refused the message
        undo_automatic_resume(session, job_id, "broker down")
    with Session() as session:
        job = session.get(Job, job_id)
        assert (job.status, job.auto_resumes) == (JobStatus.INTERRUPTED, 0)

    with Session.begin() as session:  # next pass: tried again, although no heartbeat is stale now
        assert [(m.job_id, m.step) for m in reap(session, stale_after=60, max_auto_resumes=2)] == [(job_id, 1)]
    with Session() as session:
        job = session.get(Job, job_id)
        kinds = [e.kind for e in session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))]
        assert (job.status, job.auto_resumes) == (JobStatus.QUEUED, 1)
        assert kinds[-4:] == ["interrupted", "resumed", "resume_failed", "resumed"]


def test_reaper_stops_at_the_cap_and_leaves_fresh_jobs_alone(db_url):
    Session = open_store(db_url, auto_upgrade=True)
    job_id = new_job(Session)
    assert execute_step(Session, job_id, models_for=Resolver()) is not None
    with Session.begin() as session:  # a fresh heartbeat: not stale
        session.get(Job, job_id).status = JobStatus.RUNNING
        session.get(Job, job_id).heartbeat_at = utcnow()
        assert [(m.job_id, m.step) for m in reap(session, stale_after=60)] == []
    for expected in ([(job_id, 1)], []):  # cap of 1: resumed once, then left interrupted
        _make_stale(Session, job_id)
        with Session.begin() as session:
            assert [(m.job_id, m.step) for m in reap(session, stale_after=60, max_auto_resumes=1)] == expected
    with Session() as session:
        assert session.get(Job, job_id).status == JobStatus.INTERRUPTED


def test_the_queue_names_the_step_task_that_the_workers_register():
    """worker.queue sends `run_step` by name (it does not import the tasks): the name must be the task's."""
    from worker.queue import RUN_STEP
    from worker.tasks import run_step

    assert RUN_STEP == run_step.name
