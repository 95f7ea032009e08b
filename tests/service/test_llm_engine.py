"""Jobs on a real OpenAI-compatible server process: `mils llm-server` (llama.cpp through xllamacpp,
serving the embedded Qwen GGUF) on localhost, real `mils worker` processes, a private Redis and the
machine's PostgreSQL. The scorer is the named fake of tests/support/fakes.py (the LLM is what these
tests are about); one job scores with the real embedded scorer.

Steps are small (4 candidates) so that a step takes seconds on 2 cores.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from tests.conftest import SLOW_HOME
from tests.service.test_distributed import redis, redis_server, stack  # noqa: F401 (fixtures)
from tests.support.services import (
    LLMServer,
    Worker,
    assert_committed_once,
    assert_logged_commits_true,
    committed_steps,
    events,
    job_status,
    query,
    wait_for,
)

pytestmark = pytest.mark.slow

FAKE_SCORER = "py:tests.support.fakes:worker_scorer"


def job_args(server: LLMServer, *, steps: int = 2, seed: int = 0, scorer: str = FAKE_SCORER) -> list[str]:
    return ["--task", "image-caption", "--sample", "chelsea", "--llm", f"openai:embedded@{server.url}",
            "--scorer", scorer, "--steps", str(steps), "--top-k", "3", "--candidates", "4",
            "--seed", str(seed)]


@pytest.fixture
def llm_server(tmp_path):
    servers: list[LLMServer] = []

    def start(**kwargs) -> LLMServer:
        servers.append(LLMServer(tmp_path, SLOW_HOME, **kwargs).start())
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def submit(stack, *args: str) -> int:
    out = stack.cli("submit", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    return int(out.stdout.strip())


def start_worker(stack, name: str, *args: str, **env: str) -> Worker:
    worker = Worker(name, stack.env(MILS_FAKE_STEP_SECONDS="0", **env), stack.folder, args=args)
    stack.workers.append(worker)
    worker.wait_ready()
    return worker


def candidates_by_step(url: str, job_id: int) -> list[tuple[int, str]]:
    return [tuple(row) for row in query(url, "SELECT step, text FROM candidates WHERE job_id = %s AND step > 0 "
                                             "ORDER BY id", (job_id,))]


def test_a_caption_job_runs_through_a_worker_on_the_server(stack, llm_server):
    server = llm_server(parallel=2)
    start_worker(stack, "w1")
    job_id = submit(stack, *job_args(server, scorer="embedded"))
    stack.wait_status(job_id, "succeeded", timeout=600)
    assert committed_steps(stack.url, job_id) == [0, 1, 2]
    versions = query(stack.url, "SELECT model_versions FROM jobs WHERE id = %s", (job_id,))[0][0]
    assert versions["generator"]["name"] == f"openai:embedded@{server.url}"
    assert versions["generator"]["served"]["model"] == "embedded"  # what the server said it runs
    assert len(candidates_by_step(stack.url, job_id)) >= 2
    # The tokens stored for the steps are those the server counted (its Prometheus counters; this
    # job is the only one it served).
    stored = query(stack.url, "SELECT SUM(llm_requests), SUM(prompt_tokens), SUM(completion_tokens) FROM steps "
                              "WHERE job_id = %s", (job_id,))[0]
    counted = server_metrics(server)
    assert stored[0] >= 2 and stored[1] > 0 and stored[2] > 0
    assert (stored[1], stored[2]) == (counted["llamacpp:prompt_tokens_total"], counted["llamacpp:tokens_predicted_total"])


def server_metrics(server: LLMServer) -> dict[str, float]:
    """The llama.cpp server's own Prometheus counters (GET /metrics)."""
    with urllib.request.urlopen(server.url.removesuffix("/v1") + "/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {name: float(value) for name, value in (line.split()[:2] for line in lines if line and line[0] != "#")}


def test_the_same_seed_gives_the_same_candidates(stack, llm_server):
    # One slot and no prompt cache: each request is decoded alone, so its text depends on its seed only.
    server = llm_server(parallel=1, reproducible=True)
    start_worker(stack, "w1", "--concurrency", "2")
    first, second, other = (submit(stack, *job_args(server, seed=seed, steps=1)) for seed in (7, 7, 8))
    for job_id in (first, second, other):
        stack.wait_status(job_id, "succeeded", timeout=600)
    assert candidates_by_step(stack.url, first) == candidates_by_step(stack.url, second)
    assert candidates_by_step(stack.url, first) != candidates_by_step(stack.url, other)


def test_the_server_killed_mid_step_and_started_again(stack, llm_server):
    server = llm_server(parallel=1)
    worker = start_worker(stack, "w1", MILS_LLM_WAIT_SECONDS="300")
    job_id = submit(stack, *job_args(server, steps=2))
    stack.wait_mid_step(job_id, 1, into=0.5)  # step 1's request is with the server
    server.kill()
    # Waiting (its step tried again from the queue), not failed: the event and the status are
    # awaited together, as each new try of the step holds the job running for a while.
    wait_for("the job to wait for the LLM server, queued",
             lambda: any(kind == "waiting_for_llm" for kind, _ in events(stack.url, job_id))
             and job_status(stack.url, job_id) == "queued", 60, on_timeout=lambda: stack.describe(job_id))
    assert "failed" not in [kind for kind, _ in events(stack.url, job_id)], stack.describe(job_id)
    time.sleep(2)
    server.start()  # the same port
    stack.wait_status(job_id, "succeeded", timeout=600)
    assert committed_steps(stack.url, job_id) == [0, 1, 2]
    # Every step once, by the database (a log line follows its commit, it may not be written yet);
    # the worker's log names no other step and none twice.
    assert_committed_once(stack.url, [job_id], [(job_id, step) for step in range(3)])
    assert_logged_commits_true(stack.url, [worker], [job_id])
    texts = [text for _, text in candidates_by_step(stack.url, job_id)]
    assert len(texts) == len(set(texts))  # nothing stored twice


def test_a_server_that_errs_fails_the_job_clearly(stack, tmp_path):
    from tests.support.fake_llm_server import FakeLLMServer

    fake = FakeLLMServer("error").start()
    try:
        start_worker(stack, "w1")
        out = stack.cli("submit", "--task", "image-caption", "--sample", "chelsea", "--llm",
                        f"openai:nope@{fake.url}", "--scorer", FAKE_SCORER, "--steps", "2", "--candidates", "4")
        job_id = int(out.stdout.strip())
        stack.wait_status(job_id, "failed", timeout=120)
        error = query(stack.url, "SELECT error FROM jobs WHERE id = %s", (job_id,))[0][0]
        assert "HTTP 400: model 'nope' not found" in error
        assert committed_steps(stack.url, job_id) == [0]  # the bootstrap stays; resumable
    finally:
        fake.close()


def test_a_worker_with_concurrency_4_runs_8_jobs_each_step_once(stack, llm_server):
    server = llm_server(parallel=4, reproducible=False)
    worker = start_worker(stack, "w1", "--concurrency", "4")
    jobs = [submit(stack, *job_args(server, seed=seed, steps=1)) for seed in range(8)]
    for job_id in jobs:
        stack.wait_status(job_id, "succeeded", timeout=900)
        assert committed_steps(stack.url, job_id) == [0, 1]
    assert_committed_once(stack.url, jobs, [(j, s) for j in jobs for s in range(2)])
    assert_logged_commits_true(stack.url, [worker], jobs)
    # Several jobs' LLM steps were in flight at once: their step intervals overlap.
    spans = query(stack.url, "SELECT started_at, finished_at FROM steps WHERE step > 0 AND job_id = ANY(%s) "
                             "ORDER BY started_at", (jobs,))
    overlapping = sum(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
    assert overlapping >= 3, spans
