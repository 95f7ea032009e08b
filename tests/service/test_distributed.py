"""The distributed setup for real: `mils worker` processes, a private redis-server and
PostgreSQL, jobs submitted and managed with the `mils` command line.

Workers run the tiny fakes of tests/support/fakes.py through `py:tests.support.fakes:worker_generator` /
`worker_scorer`; MILS_FAKE_STEP_SECONDS makes every optimization step take about a second,
so a worker, Redis or PostgreSQL can be killed while a step is in flight. Every job's
result is compared with a reference: the same settings and seed run uninterrupted, in this
process (`worker.runner.run_in_process`), as another job of the same database.

The short timings (heartbeat 0.5 s, stale after 4 s, reaper every 1 s, visibility timeout
10 s) are set for the workers in `services.mils_env`.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.services import (
    assert_one_error_line,
    ROOT,
    PgCluster,
    RedisServer,
    Worker,
    assert_committed_once,
    assert_logged_commits_true,
    committed_steps,
    events,
    job_record,
    job_status,
    mils_env,
    mils_executable,
    query,
    row_counts,
    run_mils,
    scalar,
    use_broker,
    wait_for,
)

GENERATOR = "py:tests.support.fakes:worker_generator"
SCORER = "py:tests.support.fakes:worker_scorer"
STEPS = 6  # optimization steps after the bootstrap: steps 0..6 are stored
JOB_ARGS = ["--sample", "chelsea", "--llm", GENERATOR, "--scorer", SCORER, "--steps", str(STEPS),
            "--top-k", "5", "--candidates", "6"]
ALL_STEPS = list(range(STEPS + 1))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """One private redis-server for the module (never the machine's on 6379)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis(redis_server):
    """The module's Redis, running and empty: no message of an earlier test (whose job ids
    mean other jobs in this test's database) can reach this test's workers."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    _flushall(redis_server)
    yield redis_server
    if redis_server.proc.poll() is not None:  # a test that left it down
        redis_server.start()
    _flushall(redis_server)


def _flushall(server: RedisServer) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"FLUSHALL\r\n")
        assert s.recv(64).startswith(b"+OK")


class Stack:
    """A database, the private Redis, and the `mils` processes of one test."""

    def __init__(self, url: str, redis: RedisServer, folder: Path, monkeypatch) -> None:
        self.url = url
        self.redis = redis
        self.folder = folder
        self.monkeypatch = monkeypatch
        self.workers: list[Worker] = []
        self.home = folder / "mils-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.task = "image-caption"  # what `submit` and `reference` run
        self._references: dict[tuple[str, int], dict] = {}
        self.reference_ids: dict[int, int] = {}

    def env(self, **extra: str) -> dict[str, str]:
        return mils_env(home=self.home, database_url=self.url, broker_url=self.redis.url, **extra)

    def cli(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return run_mils(*args, env=self.env(**extra_env))

    def upgrade(self) -> None:
        out = self.cli("db", "upgrade")
        assert out.returncode == 0, out.stdout + out.stderr

    def start_worker(self, name: str, wait: bool = True, **extra_env: str) -> Worker:
        worker = Worker(name, self.env(**extra_env), self.folder)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def submit(self, seed: int) -> int:
        out = self.cli("submit", "--task", self.task, *JOB_ARGS, "--seed", str(seed))
        assert out.returncode == 0, out.stdout + out.stderr
        return int(out.stdout.strip())

    def logs(self) -> str:
        return "\n".join(f"===== {w.log.name} (pid {w.pid}, {'alive' if w.alive() else 'exited'})\n"
                         f"{w.text()[-15000:]}" for w in self.workers)

    def wait_status(self, job_id: int, wanted: str, timeout: float = 60) -> None:
        wait_for(f"job {job_id} to be {wanted}", lambda: job_status(self.url, job_id) == wanted, timeout,
                 interval=0.2, on_timeout=lambda: self.describe(job_id))

    def wait_mid_step(self, job_id: int, step: int, into: float = 0.3) -> None:
        """Until step-1 is committed and `step` has started (its attempt is on record, the job's
        heartbeat runs), then `into` seconds more: the worker is computing `step`."""
        def started() -> bool:
            row = query(self.url, "SELECT status, attempt_step FROM jobs WHERE id = %s", (job_id,))[0]
            return row == ("running", step) and committed_steps(self.url, job_id) == list(range(step))

        wait_for(f"job {job_id} to run step {step}", started, timeout=60, interval=0.05,
                 on_timeout=lambda: self.describe(job_id))
        time.sleep(into)
        assert committed_steps(self.url, job_id) == list(range(step)), "the step ended before the fault"

    def describe(self, job_id: int) -> str:
        try:
            row = query(self.url, "SELECT status, attempt_step, attempts, auto_resumes, error FROM jobs "
                                  "WHERE id = %s", (job_id,))
            state = (f"job {job_id} (status, attempt_step, attempts, auto_resumes, error): {row}\n"
                     f"steps {committed_steps(self.url, job_id)}\nevents {events(self.url, job_id)}\n")
        except Exception as exc:
            state = f"(database unreadable: {exc!r})\n"
        return state + self.logs()

    def reference(self, seed: int) -> dict:
        """The same job run uninterrupted, in this process, as another job of the same database."""
        if (self.task, seed) not in self._references:
            from worker.kinds import get_kind
            from worker.models import _from_factory
            from worker.runner import JobModels, run_in_process
            from worker.store.db import open_store
            from worker.submission import job_request, store_job, task_input

            self.monkeypatch.setenv("MILS_DATABASE_URL", self.url)
            self.monkeypatch.syspath_prepend(str(ROOT))  # for the `py:tests.support.fakes:...` specs
            media, info = task_input(get_kind(self.task), sample="chelsea")
            request = job_request(self.task, media, info, generator=GENERATOR, scorer=SCORER,
                                  overrides=dict(steps=STEPS, candidates=6, top_k=5, seed=seed))
            Session = open_store()
            with Session.begin() as session:
                job_id = store_job(session, request)[0].id
            for _ in run_in_process(Session, job_id, lambda g, s: JobModels(_from_factory(g), _from_factory(s))):
                pass
            assert job_status(self.url, job_id) == "succeeded"
            self._references[self.task, seed] = job_record(self.url, job_id)
            self.reference_ids[seed] = job_id
        return self._references[self.task, seed]

    def close(self) -> None:
        from worker import config

        for worker in self.workers:
            worker.close()
        use_broker(config.broker_url())  # a test may have pointed this process at the private Redis


@pytest.fixture
def stack(pg_url, redis, tmp_path, monkeypatch):
    """The machine's PostgreSQL (a fresh database), the module's Redis; workers killed at teardown."""
    s = Stack(pg_url, redis, tmp_path, monkeypatch)
    try:
        s.upgrade()
        yield s
    finally:
        s.close()


@pytest.fixture
def private_pg():
    cluster = PgCluster()
    try:
        cluster.start()
        cluster.create_database()
        yield cluster
    finally:
        from worker.store.db import forget_engines

        forget_engines()
        cluster.close()


@pytest.fixture
def pg_stack(private_pg, redis, tmp_path, monkeypatch):
    """A private PostgreSQL cluster that this test may stop and start."""
    s = Stack(private_pg.url, redis, tmp_path, monkeypatch)
    try:
        s.upgrade()
        yield s
    finally:
        s.close()


# --------------------------------------------------------------------------- checks


def assert_complete_and_equal_to_reference(stack: Stack, job_id: int, seed: int) -> None:
    url = stack.url
    context = stack.describe(job_id)
    assert job_status(url, job_id) == "succeeded", context
    per_step = query(url, "SELECT step, count(*) FROM steps WHERE job_id = %s GROUP BY step ORDER BY step",
                     (job_id,))
    assert per_step == [(s, 1) for s in ALL_STEPS], context
    total, distinct = query(url, "SELECT count(*), count(DISTINCT text_key) FROM candidates WHERE job_id = %s",
                            (job_id,))[0]
    assert total == distinct, f"{total - distinct} duplicate candidate texts\n{context}"
    best = [row[0] for row in query(url, "SELECT best_score FROM steps WHERE job_id = %s ORDER BY step",
                                    (job_id,))]
    assert best == sorted(best), f"best score went down: {best}"
    got, want = job_record(url, job_id), stack.reference(seed)
    assert [s[:3] for s in got["steps"]] == [s[:3] for s in want["steps"]], context
    assert got["steps"] == want["steps"]
    assert got["candidates"].keys() == want["candidates"].keys()
    for step in want["candidates"]:
        assert got["candidates"][step] == want["candidates"][step], f"step {step}'s candidates differ"
    assert got["tops"] == want["tops"]
    assert got["result"] == want["result"]


def assert_each_step_once_split(stack: Stack, job_id: int, dead: Worker, survivor: Worker, at: int) -> None:
    """After `dead` was SIGKILLed with steps 0..at-1 committed (read from the database once it
    was dead) and `survivor` was the only worker left: every step is committed once, so steps
    0..at-1 were the dead worker's and the rest the survivor's. Their logs agree as far as a log
    can: a line only follows a commit, so the kill may cut one off but never add one."""
    assert_committed_once(stack.url, [job_id], [(job_id, s) for s in ALL_STEPS])
    assert [w for w in stack.workers if w.alive()] == [survivor], stack.logs()
    assert_logged_commits_true(stack.url, [dead, survivor], [job_id])
    assert set(dead.committed()) <= {(job_id, s) for s in range(at)}, stack.logs()
    assert set(survivor.committed()) <= {(job_id, s) for s in range(at, STEPS + 1)}, stack.logs()


def assert_only_one_error_line(out: subprocess.CompletedProcess, pattern: str) -> None:
    """services.assert_one_error_line, and nothing else: no traceback on stdout either, and on
    exit code 1 the error line is all of stderr."""
    errors = assert_one_error_line(out, pattern)
    everything = out.stdout + out.stderr
    assert "Traceback" not in everything, everything
    if out.returncode == 1:
        assert out.stderr.strip().splitlines() == errors, everything


def recovery_report(stack: Stack, job_id: int, step: int, before: list[Worker], after: list[Worker]) -> dict:
    """Which mechanisms brought the job back: the reaper (stale heartbeat -> interrupted ->
    resumed automatically) and/or the broker redelivering the unacknowledged message."""
    kinds = events(stack.url, job_id)
    reaped = any(k == "interrupted" for k, _ in kinds) and any(
        k == "resumed" and d and d.startswith(f"automatically from step {step}") for k, d in kinds)
    old_ids = {i for w in before for i in w.received_task_ids()}
    redelivered = sorted(old_ids & {i for w in after for i in w.received_task_ids()})
    return {"reaper": reaped, "redelivered": redelivered,
            "celery_retries": sum(w.text().count("Retry in") for w in before + after)}


# --------------------------------------------------------------------------- 1. a worker dies


@pytest.mark.parametrize("task", ["image-caption", "video-caption"])
def test_worker_sigkilled_mid_step_then_a_new_worker_finishes_the_job(stack, task):
    stack.task = task  # a video job: frames sampled from a pan over the photo, per-frame scores
    seed = 11
    first = stack.start_worker("first")
    job_id = stack.submit(seed)
    stack.wait_mid_step(job_id, 3)
    first.sigkill()
    # Read once it is dead (not from its log, which a kill can cut short): it died in step 3.
    assert committed_steps(stack.url, job_id) == [0, 1, 2], stack.describe(job_id)

    second = stack.start_worker("second")
    stack.reference(seed)  # computed while the job recovers
    stack.wait_status(job_id, "succeeded", timeout=60)
    assert_complete_and_equal_to_reference(stack, job_id, seed)

    # Steps 0-2 were the first worker's (all there was when it died), step 3 onwards the
    # second's (the only worker alive after), each committed once; no log claims otherwise.
    assert_each_step_once_split(stack, job_id, first, second, at=3)
    report = recovery_report(stack, job_id, 3, [first], [second])
    print(f"\nworker SIGKILL: recovered by {report}")
    # Both are plausible: the heartbeat goes stale after 4 s and the reaper runs every second
    # (MILS_STALE_SECONDS=4); Redis gives the unacknowledged message back once it is older
    # than the visibility timeout (10 s) and kombu's sweep comes round.
    assert report["reaper"] or report["redelivered"], stack.describe(job_id)
    if report["reaper"]:
        assert f"job {job_id} was interrupted; resuming it from step 3" in second.text()


def test_a_text_to_image_job_survives_a_worker_sigkill_mid_step(stack, tmp_path, monkeypatch):
    """Renders on a tiny random Stable Diffusion (seeded per prompt, so any worker renders the
    same picture), scored by a fake colour judge; the worker dies while step 3 generates."""
    from tests.support.tiny_pipelines import build_text_to_image

    pipeline = "diffusers:" + str(build_text_to_image(tmp_path / "sd"))
    prompt = "A red fox resting in green grass under a blue sky"
    args = ["--task", "text-to-image", prompt, "--renderer", pipeline, "--size", "32", "--render-steps", "2",
            "--llm", GENERATOR, "--scorer", "py:tests.support.fakes:colour_scorer", "--steps", str(STEPS),
            "--candidates", "4", "--top-k", "3", "--seed", "21"]
    first = stack.start_worker("first")
    out = stack.cli("submit", *args)
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout)
    stack.wait_mid_step(job_id, 3)
    first.sigkill()
    assert committed_steps(stack.url, job_id) == [0, 1, 2], stack.describe(job_id)  # it died in step 3
    second = stack.start_worker("second")

    # The reference: the same job uninterrupted, in this process.
    from worker.kinds import get_kind
    from worker.models import _from_factory
    from worker.runner import JobModels, run_in_process
    from worker.store.db import open_store
    from worker.submission import job_request, store_job, task_input

    monkeypatch.setenv("MILS_DATABASE_URL", stack.url)
    monkeypatch.setenv("MILS_HOME", str(stack.home))  # the same render cache as the workers
    monkeypatch.syspath_prepend(str(ROOT))
    media, info = task_input(get_kind("text-to-image"), prompt=prompt)
    request = job_request("text-to-image", media, info, generator=GENERATOR,
                          scorer="py:tests.support.fakes:colour_scorer", overrides=dict(steps=STEPS, candidates=4,
                                                                                          top_k=3, seed=21),
                          options=dict(renderer=pipeline, size=32, render_steps=2))
    Session = open_store()
    with Session.begin() as session:
        reference = store_job(session, request)[0].id
    for _ in run_in_process(Session, reference, lambda g, s: JobModels(_from_factory(g), _from_factory(s))):
        pass

    stack.wait_status(job_id, "succeeded", timeout=90)
    assert_each_step_once_split(stack, job_id, first, second, at=3)
    got, want = job_record(stack.url, job_id), job_record(stack.url, reference)
    assert got == want, stack.describe(job_id)
    renders = query(stack.url, "SELECT count(*), count(artifact_sha256), count(DISTINCT artifact_sha256) "
                               "FROM candidates WHERE job_id = %s", (job_id,))[0]
    assert renders[0] == renders[1] == renders[2] > 10  # every candidate prompt has its own render


def test_an_arithmetic_job_waits_for_its_parts_then_runs_on_the_workers(stack, tmp_path):
    """`mils arithmetic --queue`: the photo's captioning job and the arithmetic job are queued
    together; on the second worker the arithmetic step finds its parent unfinished, is queued
    again a moment later (MILS_PARENT_POLL_SECONDS), and runs once the caption is in. (One worker
    would run the caption first: its next steps go ahead of new first steps.)"""
    from tests.support.tiny_pipelines import build_text_to_image

    pipeline = "diffusers:" + str(build_text_to_image(tmp_path / "sd"))
    for name in ("one", "two"):
        stack.start_worker(name, MILS_PARENT_POLL_SECONDS="0.5", MILS_FAKE_STEP_SECONDS="0.2")
    out = stack.cli("arithmetic", "--sample", "chelsea", "--text", "a green hat", "--renderer", pipeline, "--size", "32",
                    "--render-steps", "2", "--llm", GENERATOR, "--scorer", "py:tests.support.fakes:colour_scorer",
                    "--steps", "2", "--candidates", "3", "--top-k", "3", "--queue", "--json")
    assert out.returncode == 0, out.stderr
    ids = json.loads(out.stdout)
    stack.wait_status(ids["job_id"], "succeeded", timeout=120)
    assert job_status(stack.url, ids["parents"][0]) == "succeeded"
    assert committed_steps(stack.url, ids["job_id"]) == [0, 1, 2]
    assert "waits for job(s)" in stack.logs()  # it was early, and asked again
    links = query(stack.url, "SELECT position, parent_id FROM job_links WHERE job_id = %s", (ids["job_id"],))
    assert links == [(0, ids["parents"][0])]


# --------------------------------------------------------------------------- 2. Redis dies


def test_redis_killed_and_restarted_mid_job(stack):
    seed = 12
    worker = stack.start_worker("solo")
    job_id = stack.submit(seed)
    stack.wait_mid_step(job_id, 3)
    stack.redis.kill()
    time.sleep(2)  # Redis stays away for a while (the length of the outage is the point)
    assert worker.alive()
    stack.redis.start()  # same port, empty: every queued message was lost with it
    stack.reference(seed)
    stack.wait_status(job_id, "succeeded", timeout=60)
    assert worker.alive(), stack.logs()
    assert_complete_and_equal_to_reference(stack, job_id, seed)
    # The one worker committed every step once (the database; its log names no other).
    assert_committed_once(stack.url, [job_id], [(job_id, s) for s in ALL_STEPS])
    assert_logged_commits_true(stack.url, [worker], [job_id])
    log = worker.text()
    assert log.count("Connected to redis://") >= 2, "the worker did not reconnect to the broker\n" + log
    # What carried the job over the outage: the publish of step 4 (retried by kombu until Redis
    # was back: the step-3 task took longer than its step) or, if that gave up, the reaper.
    step3 = re.search(r"Task worker\.tasks\.run_step\[[0-9a-f-]+\] succeeded in ([0-9.]+)s",
                      log.split(f"job {job_id} step 3 committed", 1)[1])
    report = recovery_report(stack, job_id, 4, [worker], [])
    print(f"\nRedis restart: step-3 task took {step3 and step3.group(1)} s (publish retried); "
          f"reaper resumed the job: {report['reaper']}; events {events(stack.url, job_id)}")
    assert report["reaper"] or (step3 and float(step3.group(1)) > 1.5), log


# --------------------------------------------------------------------------- 3. PostgreSQL dies


def test_postgresql_stopped_and_started_mid_job(pg_stack, private_pg):
    stack, seed = pg_stack, 13
    worker = stack.start_worker("solo")
    job_id = stack.submit(seed)
    stack.wait_mid_step(job_id, 3)
    private_pg.stop("fast")
    time.sleep(3)  # the database stays away for a while
    assert worker.alive()
    private_pg.start()
    stack.reference(seed)
    stack.wait_status(job_id, "succeeded", timeout=90)
    assert worker.alive(), stack.logs()
    assert_complete_and_equal_to_reference(stack, job_id, seed)
    assert_committed_once(stack.url, [job_id], [(job_id, s) for s in ALL_STEPS])
    assert_logged_commits_true(stack.url, [worker], [job_id])
    log = worker.text()
    assert re.search(r"run_step\[[0-9a-f-]+\] retry: Retry in .*OperationalError", log), \
        "the step was not retried after the database error\n" + log
    # Both may fire: Celery retries the task (same task id, with a backoff) and, as the heartbeat
    # stops while the database is away, the reaper may resume the job (a new message). Whichever
    # comes first runs step 3; the other finds it committed and is dropped.
    retried = set(re.findall(r"run_step\[([0-9a-f-]+)\] retry: Retry in", log))
    after = log.split(f"job {job_id} step 3 committed", 1)[1]
    committer = re.search(r"run_step\[([0-9a-f-]+)\] succeeded in", after).group(1)
    report = recovery_report(stack, job_id, 3, [worker], [])
    by = "the retried task" if committer in retried else "the reaper's message"
    print(f"\nPostgreSQL restart: step 3 committed by {by}; {report}")
    assert committer in retried or report["reaper"]


# --------------------------------------------------------------------------- 4. two workers


def test_two_workers_share_ten_jobs_and_commit_each_step_once(stack):
    """Ten jobs submitted at once (by ten concurrent `mils submit`) on two workers. The steps
    are short (0.4 s) and the heartbeat is taken for dead after 2 s, less than a job waits in
    the queue between its steps: a job waiting in the queue is not judged by it (no job is
    interrupted). Duplicate messages of each job's next step are sent while they run (as a lost
    and re-sent message, or a person's `mils resume` of a queued job, would), so duplicate
    deliveries race with the real ones. Each step must still be committed exactly once, by one
    worker, and every job must end as its reference."""
    seeds = list(range(100, 110))
    timing = dict(MILS_FAKE_STEP_SECONDS="0.4", MILS_STALE_SECONDS="2")
    workers = [stack.start_worker(name, wait=False, **timing) for name in ("left", "right")]
    for worker in workers:
        worker.wait_ready()
    procs = [subprocess.Popen([mils_executable(), "submit", *JOB_ARGS, "--seed", str(seed)], env=stack.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in seeds]
    jobs = {}
    for seed, proc in zip(seeds, procs):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + err
        jobs[int(out.strip())] = seed
    use_broker(stack.redis.url)
    from worker.queue import enqueue

    duplicates = 0
    for _ in range(3):  # while the workers run: the step each job waits for, sent once more
        for job_id in jobs:
            done = committed_steps(stack.url, job_id)
            if len(done) <= STEPS:
                enqueue(job_id, len(done), "default")
                duplicates += 1
        time.sleep(1.0)
    for seed in seeds:
        stack.reference(seed)  # while the workers run

    finished = "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND id = ANY(%s)"
    wait_for("all ten jobs to finish", lambda: scalar(stack.url, finished, (list(jobs),)) == len(jobs),
             timeout=120, interval=0.5, on_timeout=lambda: stack.describe(min(jobs)) + str(
                 query(stack.url, "SELECT id, status FROM jobs ORDER BY id")))
    for job_id, seed in jobs.items():
        assert_complete_and_equal_to_reference(stack, job_id, seed)

    # Each step committed once (the database); the logs name no other step, and none twice (a
    # worker's last line may still be on its way when the last job reads finished).
    want = {(job_id, step) for job_id in jobs for step in ALL_STEPS}
    assert_committed_once(stack.url, jobs, want)
    assert_logged_commits_true(stack.url, workers, jobs)
    assert all(worker.committed() for worker in workers), "one worker did all the work"
    assert all(worker.alive() for worker in workers)

    dropped = sum(len(re.findall(r"was already committed; skipping|is not next|committed meanwhile", w.text()))
                  for w in workers)
    alarms = query(stack.url, "SELECT job_id, kind FROM job_events WHERE kind IN ('interrupted', 'resumed', "
                              "'requeued') AND job_id = ANY(%s)", (list(jobs),))
    assert alarms == [], "a job waiting in the queue was taken for dead"
    received = sum(len(w.received_task_ids()) for w in workers)
    print(f"\ntwo workers: {received} messages for {len(want)} steps, {duplicates} duplicates sent, "
          f"{dropped} duplicate deliveries dropped; steps per worker {[len(w.committed()) for w in workers]}")
    assert duplicates > 0 and dropped > 0, "no duplicate raced: this test did not do what it is for"
    # Every message is a link of a job's chain or a duplicate: a dropped duplicate must not
    # start a chain of its own (messages would multiply).
    assert received <= len(want) + duplicates, stack.logs()


# --------------------------------------------------------------------------- 5. cancel, resume


def test_cancel_mid_step_then_resume_to_the_reference_result(stack):
    seed = 14
    slow = stack.start_worker("slow", MILS_FAKE_STEP_SECONDS="2.5")  # room for the cancel to land mid-step
    job_id = stack.submit(seed)
    stack.wait_mid_step(job_id, 3, into=0.2)
    out = stack.cli("cancel", str(job_id))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == f"job {job_id}: stops after the step in flight"

    stack.reference(seed)
    stack.wait_status(job_id, "cancelled", timeout=30)
    # It stops after the step in flight (3): nothing after it, now or a step's time later.
    done = committed_steps(stack.url, job_id)
    assert done == [0, 1, 2, 3], stack.describe(job_id)
    before_cancel = scalar(stack.url, "SELECT count(*) FROM steps WHERE job_id = %s AND finished_at < "
                                      "(SELECT at FROM job_events WHERE job_id = %s AND kind = 'cancel_requested')",
                           (job_id, job_id))
    assert max(done) <= before_cancel  # i.e. no step after (the last committed before the cancel) + 1
    _stays(lambda: committed_steps(stack.url, job_id) == done and job_status(stack.url, job_id) == "cancelled",
           seconds=2.6)
    # The job's lifecycle (a step's "rejected" count of the LLM's lines may sit between them).
    lifecycle = [e for e in events(stack.url, job_id) if e[0] != "rejected"]
    assert lifecycle[-2:] == [("cancel_requested", None), ("cancelled", "after step 3")]
    assert (job_id, 4) not in slow.committed()
    slow.close()

    stack.start_worker("fast", MILS_FAKE_STEP_SECONDS="0.5")
    out = stack.cli("resume", str(job_id))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == f"job {job_id}: resumed at step 4"
    stack.wait_status(job_id, "succeeded", timeout=30)
    assert_complete_and_equal_to_reference(stack, job_id, seed)
    assert ("resumed", "from step 4 (was cancelled)") in events(stack.url, job_id)


def test_a_cancelled_job_whose_worker_dies_is_not_resumed_by_the_reaper(stack):
    """The cancel request outlives its worker: the reaper finds the job stale and ends it
    cancelled instead of resuming it (which would drop the request); a person may resume it."""
    seed = 17
    # Redis keeps the dead worker's message (the product's default visibility timeout, not the
    # 10 s of these tests): a worker that starts slowly must not get it redelivered and end the
    # job "before a step" ahead of the reaper, which is what this test is about.
    unhurried = dict(MILS_VISIBILITY_TIMEOUT="3600")
    slow = stack.start_worker("slow", MILS_FAKE_STEP_SECONDS="3", **unhurried)
    job_id = stack.submit(seed)
    stack.wait_mid_step(job_id, 2, into=0.2)
    # Frozen mid-step: it cannot commit step 2 however long the `mils cancel` process takes to
    # start (seconds on a loaded machine, longer than the rest of the step).
    slow.freeze()
    out = stack.cli("cancel", str(job_id))
    assert out.returncode == 0, out.stdout + out.stderr
    slow.sigkill()
    # Read once it is dead (a kill can come between a commit and its log line): it died in step 2.
    assert committed_steps(stack.url, job_id) == [0, 1], "step 2 ended before the worker could be stopped"

    reaper = stack.start_worker("reaper", MILS_FAKE_STEP_SECONDS="0.5", **unhurried)
    stack.reference(seed)
    stack.wait_status(job_id, "cancelled", timeout=30)
    assert committed_steps(stack.url, job_id) == [0, 1]
    kinds = events(stack.url, job_id)
    assert [k for k, _ in kinds][-3:] == ["cancel_requested", "interrupted", "cancelled"], kinds
    assert "resumed" not in [k for k, _ in kinds], kinds
    _stays(lambda: job_status(stack.url, job_id) == "cancelled", seconds=1.5)

    out = stack.cli("resume", str(job_id))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == f"job {job_id}: resumed at step 2"
    stack.wait_status(job_id, "succeeded", timeout=30)
    assert_complete_and_equal_to_reference(stack, job_id, seed)
    assert_each_step_once_split(stack, job_id, slow, reaper, at=2)


def test_a_failed_job_resumes_on_a_healthy_worker(stack):
    seed = 15
    # This worker's fake LLM falls over on its third call (step 3, as one call makes a step).
    sick = stack.start_worker("sick", MILS_FAKE_FAIL_AFTER_CALLS="2", MILS_FAKE_STEP_SECONDS="0.5")
    job_id = stack.submit(seed)
    stack.reference(seed)
    stack.wait_status(job_id, "failed", timeout=30)
    done = committed_steps(stack.url, job_id)
    assert done == list(range(len(done))) and 1 < len(done) < len(ALL_STEPS), done
    error = scalar(stack.url, "SELECT error FROM jobs WHERE id = %s", (job_id,))
    assert error and "RuntimeError" in error and "fake LLM" in error
    assert sick.alive()
    sick.close()

    stack.start_worker("healthy", MILS_FAKE_STEP_SECONDS="0.5")
    out = stack.cli("resume", str(job_id))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == f"job {job_id}: resumed at step {len(done)}"
    stack.wait_status(job_id, "succeeded", timeout=30)
    assert_complete_and_equal_to_reference(stack, job_id, seed)
    assert scalar(stack.url, "SELECT error FROM jobs WHERE id = %s", (job_id,)) is None
    kinds = events(stack.url, job_id)
    assert ("resumed", f"from step {len(done)} (was failed)") in kinds
    assert [k for k, _ in kinds].count("failed") == 1


def _stays(check, seconds: float) -> None:
    """`check` holds throughout the next `seconds` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check()
        time.sleep(0.1)
    assert check()


# --------------------------------------------------------------------------- 6. bad input


def test_bad_requests_fail_with_one_error_line_and_change_nothing(stack, tmp_path):
    stack.reference(16)  # a succeeded job (run in this process)
    done_id = stack.reference_ids[16]
    notes = tmp_path / "notes.png"
    notes.write_text("these are my notes, not a picture\n")
    bad = [
        (["status", "999999"], r"^Error: no job 999999$"),
        (["cancel", "999999"], r"^Error: no job 999999$"),
        (["resume", "999999"], r"^Error: no job 999999$"),
        (["history", "999999"], r"^Error: no job 999999$"),
        (["resume", str(done_id)], rf"job {done_id} already succeeded"),
        (["cancel", str(done_id)], rf"job {done_id} is already succeeded"),
        (["submit", str(notes), "--llm", GENERATOR, "--scorer", SCORER], r"notes\.png: not an image"),
        (["submit", *JOB_ARGS[:-6], "--steps", "0"], r"steps must be between 1 and 1000"),
        (["submit", *JOB_ARGS, "--epsilon", "3"], r"epsilon must be between 0 and 1"),
    ]
    for args, pattern in bad:
        before = row_counts(stack.url)
        out = stack.cli(*args)
        assert_only_one_error_line(out, pattern)
        assert row_counts(stack.url) == before, f"`mils {' '.join(args)}` changed the database"
    assert job_status(stack.url, done_id) == "succeeded"
