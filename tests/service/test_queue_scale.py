"""The queue at scale, CI-sized: 500 jobs of 5 steps on 4 real `mils worker` processes, a private
redis-server and PostgreSQL, instant named fakes (`py:tests.support.fakes:worker_generator` with
no sleep). The full-size run (10,000 jobs) is benchmarks/queue_scale.py.

The queue here is far longer than MILS_STALE_SECONDS (3 s) is long: a liveness check that took a
long wait in the queue for a dead worker would interrupt and re-send jobs. A message deleted from
Redis by hand stands for one the broker lost: it must be found and sent again.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter

from scipy.stats import spearmanr

from tests.service.test_distributed import GENERATOR, SCORER, Stack, redis, redis_server, stack  # noqa: F401 (fixtures)
from tests.support.services import assert_logged_commits_true, query, use_broker, wait_for

JOBS = 500
STEPS = 5  # 3,000 step executions: the backlog lasts over a minute, 20x MILS_STALE_SECONDS and more
WORKERS = 4


def submit_many(stack: Stack, monkeypatch, n: int, *, priority: str | None = None) -> list[int]:
    """`n` jobs stored and queued from this process (the CLI would start `n` processes)."""
    from worker.kinds import get_kind
    from worker.store.db import open_store
    from worker.submission import job_request, submit, task_input

    monkeypatch.setenv("MILS_DATABASE_URL", stack.url)
    monkeypatch.syspath_prepend(str(stack.folder.parent))
    from worker.celery_app import app

    if app.conf.broker_url != stack.redis.url:
        use_broker(stack.redis.url)
    media, info = task_input(get_kind("image-caption"), sample="chelsea")
    request = job_request("image-caption", media, info, generator=GENERATOR, scorer=SCORER,
                          overrides=dict(steps=STEPS, candidates=6, top_k=5))
    sessions = open_store()
    return [submit(sessions, request, priority=priority) for _ in range(n)]


def redis_call(stack: Stack, *args: str):
    import redis as redis_client

    return redis_client.Redis(port=stack.redis.port).execute_command(*args)


def test_five_hundred_jobs_in_order_without_false_alarms_and_a_lost_message_found(stack, monkeypatch):  # noqa: F811
    fast = dict(MILS_FAKE_STEP_SECONDS="0", MILS_STALE_SECONDS="3", MILS_REAP_SECONDS="2", OMP_NUM_THREADS="1")
    jobs = submit_many(stack, monkeypatch, JOBS)
    # A message the broker lost: job 500's first step, taken off its list before any worker runs.
    lost = jobs[499]
    # (Normal priority, first step: the list "default:3", see worker.queue.broker_priority.)
    waiting = redis_call(stack, "LRANGE", "default:3", "0", "-1")
    assert len(waiting) == JOBS
    message = next(m for m in waiting if json.loads(base64.b64decode(json.loads(m)["body"]))[0] == [lost, 0])
    assert redis_call(stack, "LREM", "default:3", "1", message) == 1

    for n in range(WORKERS):
        stack.start_worker(f"w{n}", wait=False, **fast)
    # Mid-run: a high-priority job goes ahead of the backlog.
    wait_for("a tenth of the jobs", lambda: query(stack.url, "SELECT count(*) FROM jobs WHERE status = 'succeeded'")
             [0][0] >= JOBS // 10, timeout=600, interval=0.5, on_timeout=stack.logs)
    [urgent] = submit_many(stack, monkeypatch, 1, priority="high")
    waiting_now = query(stack.url, "SELECT status, count(*), count(queued_at) FROM jobs GROUP BY status")
    snapshot = {status: (count, with_time) for status, count, with_time in waiting_now}
    assert snapshot["running"][0] <= WORKERS, snapshot  # running means a worker holds its step
    assert snapshot["queued"][0] == snapshot["queued"][1], "every queued job says since when"

    def all_done() -> bool:
        return query(stack.url, "SELECT count(*) FROM jobs WHERE finished_at IS NULL")[0][0] == 0

    wait_for("every job to finish", all_done, timeout=1200, interval=1, on_timeout=stack.logs)
    statuses = dict(query(stack.url, "SELECT status, count(*) FROM jobs GROUP BY status"))
    assert statuses == {"succeeded": JOBS + 1}, statuses
    per_step = Counter(n for (n,) in query(stack.url, "SELECT count(*) FROM steps GROUP BY job_id, step"))
    assert per_step == {1: (JOBS + 1) * (STEPS + 1)}, per_step
    # The logs name only committed steps, none twice (each step once is the count above; a log line
    # comes just after its commit and may still be on its way).
    assert_logged_commits_true(stack.url, stack.workers, [i for (i,) in query(stack.url, "SELECT id FROM jobs")])

    events = query(stack.url, "SELECT job_id, kind, detail FROM job_events WHERE kind IN "
                              "('interrupted', 'requeued', 'resumed')")
    assert [(job_id, kind) for job_id, kind, _ in events] == [(lost, "requeued")], events
    assert "step 0 was queued at" in events[0][2]

    finished = query(stack.url, "SELECT id, extract(epoch FROM finished_at) FROM jobs WHERE id <> ALL(%s) "
                                "ORDER BY id", ([lost, urgent],))
    rho = spearmanr([i for i, _ in finished], [f for _, f in finished]).statistic
    assert rho >= 0.9, rho
    # The urgent job overtook the backlog: most jobs submitted before it finished after it.
    unfinished, overtaken = query(stack.url, "SELECT count(*) FILTER (WHERE j.finished_at > u.created_at), "
                                             "count(*) FILTER (WHERE j.finished_at > u.finished_at) FROM jobs j, "
                                             "jobs u WHERE u.id = %s AND j.id < u.id", (urgent,))[0]
    assert overtaken >= 0.8 * unfinished, (overtaken, unfinished)
