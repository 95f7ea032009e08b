"""What an operator sees (worker.ops, web.ops): the snapshot's counts on the real PostgreSQL, the
queue depth per queue and priority on a real (private) redis-server, the /ops page, GET /api/ops,
and /metrics parsed by prometheus_client's own parser.

Jobs are stored by the store itself and put in each state by hand (queued since a given time,
running on a named worker with a heartbeat, failed at a given time), so the expected numbers are
exact; one job runs for real in this process with the tiny fakes, for the steps.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from tests.support.fakes import HiddenCaptionScorer, ScriptedGenerator
from tests.support.media import png_media
from tests.support.services import RedisServer, use_broker
from web import create_app
from worker.celery_app import app as celery_app
from worker.core import Settings
from worker.ops import broker_state, take_snapshot
from worker.runner import JobModels, run_in_process
from worker.store.db import open_store
from worker.store.jobs import add_event, create_job
from worker.store.schema import Job, JobStatus, utcnow
from worker.store.tokens import create_token

SETTINGS = Settings(steps=2, top_k=3, candidates=4, seed=1, max_words=10, prompts_per_step=1)


def new_job(Session) -> int:
    with Session.begin() as session:
        return create_job(session, task="image-caption", settings=SETTINGS, generator="fake-llm",
                          scorer="fake-scorer", media=png_media()).id


def set_job(Session, job_id: int, **values) -> None:
    with Session.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


@pytest.fixture
def Session(pg):
    return open_store(pg)


@pytest.fixture
def app(pg, queue_db):
    return create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True})


@pytest.fixture
def scene(Session):
    """Jobs in known states: two queued (waiting 120 s and 30 s), one held back (queued, not on the
    queue), three running on two workers, one failed 10 minutes ago, one failed 2 hours ago, and one
    that really ran its 3 steps (succeeded)."""
    now = utcnow()
    ids = {name: new_job(Session) for name in ("old", "new", "held", "r1", "r2", "r3", "f1", "f2", "done")}
    set_job(Session, ids["old"], status=JobStatus.QUEUED, queued_at=now - timedelta(seconds=120))
    set_job(Session, ids["new"], status=JobStatus.QUEUED, queued_at=now - timedelta(seconds=30))
    set_job(Session, ids["held"], status=JobStatus.QUEUED, queued_at=None)
    for name, worker, age in (("r1", "celery@a/11/1", 2), ("r2", "celery@a/11/2", 40), ("r3", "celery@b/12/1", 5)):
        set_job(Session, ids[name], status=JobStatus.RUNNING, worker=worker, queued_at=None,
                heartbeat_at=now - timedelta(seconds=age))
    for name, ago in (("f1", timedelta(minutes=10)), ("f2", timedelta(hours=2))):
        set_job(Session, ids[name], status=JobStatus.FAILED, finished_at=now - ago, queued_at=None)
        with Session.begin() as session:
            add_event(session, session.get(Job, ids[name]), "failed", "boom")
    models = JobModels(ScriptedGenerator(extra_words=["tabby", "sun"]), HiddenCaptionScorer("a tabby cat in the sun"))
    for _ in run_in_process(Session, ids["done"], lambda *_: models):
        pass
    return ids


def test_the_snapshot_counts_jobs_steps_failures_and_the_oldest_waiting_step(Session, scene, queue_db):
    with Session() as session:
        snap = take_snapshot(session)
    assert snap.jobs_by_status == {"queued": 3, "running": 3, "succeeded": 1, "failed": 2, "cancelled": 0,
                                   "interrupted": 0}
    assert snap.steps_total == snap.steps_last_5_minutes == 3  # the job that ran: steps 0, 1, 2
    assert snap.steps_per_minute == pytest.approx(3 / 5)
    assert (snap.failures_last_hour, snap.failures_total) == (1, 2)
    assert snap.oldest_waiting_job_id == scene["old"] and 119 <= snap.oldest_waiting_seconds < 180
    by_worker = {w.worker: w for w in snap.workers}
    assert sorted(by_worker) == ["celery@a/11/1", "celery@a/11/2", "celery@b/12/1"]
    assert all(w.running == 1 for w in snap.workers)
    step = by_worker["celery@a/11/2"].steps[0]
    assert step.job_id == scene["r2"] and step.step == 0 and 39 <= step.heartbeat_age_seconds < 100
    # The SQLite queue of this test: one count per queue, no priorities, no unacked count.
    assert snap.broker.transport == "sql" and snap.broker.error is None and snap.broker.unacked is None
    assert {(d.queue, d.priority) for d in snap.broker.depths} == {("default", None), ("gpu", None)}


def test_running_steps_of_one_worker_are_grouped_and_counted_whole(Session):
    ids = [new_job(Session) for _ in range(4)]
    for i, job_id in enumerate(ids):
        set_job(Session, job_id, status=JobStatus.RUNNING, worker="celery@w/1/%d" % (i % 2), heartbeat_at=utcnow())
    from worker.ops import running_steps

    with Session() as session:
        workers = running_steps(session, utcnow(), limit=3)
    assert [(w.worker, w.running) for w in workers] == [("celery@w/1/0", 2), ("celery@w/1/1", 2)]
    assert sum(len(w.steps) for w in workers) == 3  # listed up to the limit, counted in full


@pytest.fixture
def redis_broker(tmp_path, queue_db):
    """This process's Celery app on a private redis-server, with the workers' transport options
    (worker.celery_app.transport_options: ten lists per queue, `Q` and `Q:1`..`Q:9`)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    use_broker(server.url)
    try:
        yield server
    finally:
        use_broker(f"sqla+sqlite:///{queue_db}")
        server.close()


def test_queue_depth_per_queue_and_priority_on_redis(redis_broker):
    sent = {("default", 0): 2, ("default", 1): 1, ("default", 4): 3, ("gpu", 5): 2}
    for (queue, priority), n in sent.items():
        for i in range(n):
            celery_app.send_task("worker.tasks.run_step", (100 + i, 1), queue=queue, priority=priority)
    state = broker_state()
    assert state.transport == "redis" and state.error is None and state.unacked == 0
    depths = {(d.queue, d.priority): d.messages for d in state.depths}
    assert len(depths) == 20  # 2 queues x 10 priority lists
    assert {k: v for k, v in depths.items() if v} == sent
    assert (state.total("default"), state.total("gpu")) == (6, 2)
    # The lists are where kombu's `_q_for_pri` puts them: `Q` for priority 0, `Q:p` for the others.
    raw = redis.Redis.from_url(redis_broker.url)
    assert (raw.llen("default"), raw.llen("default:1"), raw.llen("default:4"), raw.llen("gpu:5")) == (2, 1, 3, 2)
    # A message delivered and not acknowledged leaves its list for the `unacked` hash.
    with celery_app.connection_for_read() as connection:
        message = connection.default_channel.basic_get("default", no_ack=False)
        assert message is not None
        state = broker_state()
        assert state.unacked == 1 and state.total("default") == 5


def test_an_unreachable_broker_is_reported_not_raised(queue_db):
    use_broker("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        state = broker_state()
    finally:
        use_broker(f"sqla+sqlite:///{queue_db}")
    assert state.depths == [] and state.error and "onnect" in state.error


def test_the_ops_page_api_and_metrics(app, scene):
    client = app.test_client()
    page = client.get("/ops")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'href="/ops"' in text and 'id="ops-live"' in text and 'hx-trigger="every 5s"' in text
    assert "celery@a/11/2" in text and f"job #{scene['old']}" in text
    assert '<span data-status="running">3</span>' in text
    live = client.get("/ops/live")
    assert live.status_code == 200 and live.get_data(as_text=True).startswith('<div id="ops-live"')

    body = client.get("/api/ops").get_json()
    assert body["jobs_by_status"]["queued"] == 3 and body["steps_total"] == 3
    assert body["oldest_waiting_job_id"] == scene["old"] and body["broker"]["totals"] == {"default": 0, "gpu": 0}
    assert {w["worker"] for w in body["workers"]} == {"celery@a/11/1", "celery@a/11/2", "celery@b/12/1"}
    assert body["taken_at"].endswith("+00:00") and body["failures_total"] == 2

    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}
    for name in ("mils_queue_messages", "mils_jobs", "mils_oldest_waiting_step_seconds", "mils_steps_per_minute",
                 "mils_running_steps", "mils_steps", "mils_job_failures", "mils_broker_up"):
        assert name in families, name
    assert families["mils_steps"].type == families["mils_job_failures"].type == "counter"

    def value(name, suffix="", **labels):
        family = families[name]
        return next(s.value for s in family.samples if s.name == name + suffix and s.labels == labels)

    assert value("mils_jobs", status="running") == 3 and value("mils_jobs", status="failed") == 2
    assert value("mils_steps", "_total") == 3 and value("mils_job_failures", "_total") == 2
    assert value("mils_running_steps", worker="celery@b/12/1") == 1
    assert 119 <= value("mils_oldest_waiting_step_seconds") < 180
    assert value("mils_queue_messages", queue="default", priority="all") == 0
    assert value("mils_broker_up") == 1
    # OpenMetrics for a scraper that asks for it.
    open_metrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert open_metrics.content_type.startswith("application/openmetrics-text")
    assert open_metrics.get_data(as_text=True).rstrip().endswith("# EOF")


def test_metrics_need_the_api_token_when_the_app_has_tokens(pg, queue_db):
    app = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True, "AUTH": "token"})
    with open_store(pg).begin() as session:
        token = create_token(session, "prometheus")
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/api/ops").status_code == 401
    assert client.get("/ops").status_code == 302  # a page: to the login
