"""The OpenAI-compatible generator (worker.models.chat) against a named fake HTTP server
(tests/support/fake_llm_server.py) that answers well, junk, errors, nothing, or too slowly; and
jobs on it through the in-process runner on SQLite. The real engine (llama.cpp) is in
tests/service/test_llm_engine.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.support.fake_llm_server import FakeLLMServer
from tests.support.fakes import HiddenCaptionScorer
from tests.support.services import free_port
from tests.store.test_store import png_media
from worker.core import GeneratorError, GeneratorUnavailable, Settings
from worker.kinds import job_settings
from worker.models import ModelLoadError, check_generator_spec, load_generator
from worker.models.chat import openai_generator, parse_openai_spec
from worker.runner import JobModels, run_in_process
from worker.store.db import open_store
from worker.store.jobs import create_job
from worker.store.schema import Job, JobEvent, JobStatus, Step

CONVERSATION = [{"role": "user", "content": "Write 3 captions."}]
SAMPLING = dict(temperature=0.5, top_p=0.9, max_tokens=64)


@pytest.fixture
def fake_server():
    servers = []

    def start(mode: str = "echo", **kwargs) -> FakeLLMServer:
        servers.append(FakeLLMServer(mode, **kwargs).start())
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_spec_names_model_and_server():
    assert parse_openai_spec("openai:meta-llama/Llama-3.1-8B-Instruct@http://llm:8000/v1") == (
        "meta-llama/Llama-3.1-8B-Instruct", "http://llm:8000/v1")
    assert parse_openai_spec("openai:qwen2.5:7b") == ("qwen2.5:7b", None)  # Ollama ids have a colon
    assert parse_openai_spec("openai:org/model@v2") == ("org/model@v2", None)  # an "@" that is no URL
    with pytest.raises(ModelLoadError, match="openai:MODEL@BASE_URL"):
        check_generator_spec("openai:@http://x/v1")
    with pytest.raises(ModelLoadError, match="no such file"):
        check_generator_spec("gguf:/nonexistent/model.gguf")


def test_a_step_is_asked_for_in_parallel_shares_with_their_own_seeds(fake_server):
    server = fake_server("echo", delay=0.5)
    generator = load_generator(f"openai:fake-model@{server.url}")
    started = time.monotonic()
    answers = generator.complete([CONVERSATION] * 4, seed=100, **SAMPLING)
    elapsed = time.monotonic() - started
    # Answer i is the answer to request i (seeded seed + i), whatever order they came back in.
    assert [re.findall(r"photo number (\d+)", a)[0] for a in answers] == ["100", "101", "102", "103"]
    assert sorted(r["seed"] for r in server.requests) == [100, 101, 102, 103]
    assert all(r["model"] == "fake-model" and r["max_tokens"] == 64 and r["temperature"] == 0.5
               for r in server.requests)
    assert server.max_in_flight == 4 and elapsed < 4 * 0.5  # at once, not one after another
    assert generator.served == {"model": "fake-model", "fingerprint": "fake-fp-1"}


def test_engine_specific_sampling_fields_travel_in_the_body(fake_server):
    server = fake_server("echo", delay=0.01)
    generator = openai_generator(f"openai:m@{server.url}")
    generator.extra = {"dry_multiplier": 8.0, "min_p": 0.0}  # llama.cpp's own fields, unknown to the API
    generator.complete([CONVERSATION], seed=1, **SAMPLING)
    assert server.requests[0]["dry_multiplier"] == 8.0 and server.requests[0]["min_p"] == 0.0


def test_serving_engines_get_a_step_in_shares_by_default():
    assert job_settings("image-caption", "openai:m@http://x/v1").prompts_per_step == 5  # 50 candidates
    assert job_settings("image-caption", "openai:m@http://x/v1", candidates=12).prompts_per_step == 2
    assert job_settings("image-caption", "openai:m@http://x/v1", prompts_per_step=1).prompts_per_step == 1
    assert job_settings("image-caption", "embedded").prompts_per_step == 1


@pytest.mark.parametrize("mode, error, pattern", [
    ("junk", GeneratorError, r"answered junk|not a chat completion"),
    ("not-chat", GeneratorError, r"not a chat completion"),
    ("empty", GeneratorError, r"empty answer"),
    ("error", GeneratorError, r"refused the request: HTTP 400: model 'nope' not found"),
])
def test_a_bad_answer_is_a_clear_error(fake_server, mode, error, pattern):
    server = fake_server(mode)
    generator = openai_generator(f"openai:m@{server.url}")
    with pytest.raises(error, match=pattern) as caught:
        generator.complete([CONVERSATION] * 2, seed=1, **SAMPLING)
    assert not isinstance(caught.value, GeneratorUnavailable)


def test_an_overloaded_server_is_unavailable_after_the_clients_retries(fake_server):
    server = fake_server("unavailable")
    with pytest.raises(GeneratorUnavailable, match="HTTP 503: loading model"):
        openai_generator(f"openai:m@{server.url}").complete([CONVERSATION], seed=1, **SAMPLING)
    assert len(server.requests) == 3  # the first try and the openai client's two retries


def test_no_server_is_unavailable_and_a_slow_one_times_out(fake_server, monkeypatch):
    with pytest.raises(GeneratorUnavailable, match="unreachable"):
        openai_generator(f"openai:m@http://127.0.0.1:{free_port()}/v1").complete([CONVERSATION], seed=1, **SAMPLING)
    monkeypatch.setenv("MILS_LLM_TIMEOUT", "0.5")
    server = fake_server("slow", delay=30)
    started = time.monotonic()
    with pytest.raises(GeneratorError, match=r"did not answer within 0.5 s") as caught:
        openai_generator(f"openai:m@{server.url}").complete([CONVERSATION], seed=1, **SAMPLING)
    assert not isinstance(caught.value, GeneratorUnavailable)
    assert time.monotonic() - started < 15  # three tries of 0.5 s and the client's backoff: never a hang


# --------------------------------------------------------------------------- jobs on it, in process

SETTINGS = Settings(steps=2, top_k=3, candidates=6, seed=5, max_words=12, prompts_per_step=2)


def _run_job(url: str, spec: str) -> tuple[int, Exception | None]:
    sessions = open_store(url)
    with sessions.begin() as session:
        job_id = create_job(session, task="image-caption", settings=SETTINGS, generator=spec,
                            scorer="fake-scorer", media=png_media()).id

    def models(generator_spec: str, _scorer: str) -> JobModels:
        return JobModels(openai_generator(generator_spec), HiddenCaptionScorer("a photo of a cat on a rug"))

    try:
        list(run_in_process(sessions, job_id, models))
    except Exception as exc:  # noqa: BLE001 (the test looks at what it was)
        return job_id, exc
    return job_id, None


def _job(url: str, job_id: int) -> tuple[Job, list[int], list[tuple[str, str]]]:
    with open_store(url)() as session:
        job = session.get(Job, job_id)
        steps = sorted(s.step for s in session.query(Step).filter_by(job_id=job_id))
        events = [(e.kind, e.detail or "") for e in session.query(JobEvent).filter_by(job_id=job_id).order_by(JobEvent.id)]
        session.expunge(job)
        return job, steps, events


def test_a_job_runs_on_the_server_and_keeps_what_it_reported(fake_server, sqlite_url):
    server = fake_server("echo", delay=0.05)
    job_id, error = _run_job(sqlite_url, f"openai:fake-model@{server.url}")
    assert error is None
    job, steps, _ = _job(sqlite_url, job_id)
    assert job.status == JobStatus.SUCCEEDED and steps == [0, 1, 2]
    assert job.model_versions["generator"]["served"] == {"model": "fake-model", "fingerprint": "fake-fp-1"}
    assert len(server.requests) >= 4  # two shares a step


@pytest.mark.parametrize("mode, pattern", [("error", "HTTP 400"), ("empty", "empty answer")])
def test_a_server_error_fails_the_job_clearly_and_keeps_its_steps(fake_server, sqlite_url, mode, pattern):
    server = fake_server(mode)
    job_id, error = _run_job(sqlite_url, f"openai:m@{server.url}")
    assert isinstance(error, GeneratorError)
    job, steps, _ = _job(sqlite_url, job_id)
    assert job.status == JobStatus.FAILED and re.search(pattern, job.error) and steps == [0]


def test_an_unreachable_server_is_recorded_as_waiting_and_fails_the_in_process_run(sqlite_url):
    job_id, error = _run_job(sqlite_url, f"openai:m@http://127.0.0.1:{free_port()}/v1")
    assert isinstance(error, GeneratorUnavailable)
    job, steps, events = _job(sqlite_url, job_id)
    assert job.status == JobStatus.FAILED and "unreachable" in job.error and steps == [0]
    assert any(kind == "waiting_for_llm" and "step 1" in detail for kind, detail in events)
    assert job.attempts == 0  # waiting for the server is not an attempt that died


RELEASE = """
import os, torch
from worker.models.openmp import release_openmp_threads

def threads():
    return len(os.listdir("/proc/self/task"))

torch.set_num_threads(3)
before = threads()
torch.randn(1_000_000).exp()  # a parallel op: torch's OpenMP pool, 2 threads beside this one
made = threads()
release_openmp_threads()
released = threads()
torch.randn(1_000_000).exp()
print(before, made, released, threads())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc; libgomp is Linux's")
def test_torchs_idle_openmp_threads_go_before_llamacpp_decodes():
    """llama.cpp and torch share one libgomp; its idle threads beyond the cores put llama.cpp's to
    sleep at every barrier (BENCHMARKS.md, "The embedded scorer's eyes and the fluency guard", item 7). The in-process engine lets them go before each
    step's requests, and torch makes them again when it next needs them."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_THREAD_LIMIT", "OMP_NUM_THREADS")}
    env["OMP_DYNAMIC"] = "false"  # libgomp must make the 3 threads asked for, on any number of cores
    out = subprocess.run([sys.executable, "-c", RELEASE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, made, released, again = map(int, out.stdout.split())
    assert made == before + 2 and released == before and again == made


def test_the_hook_before_a_steps_requests_runs_once_in_the_calling_thread():
    """OpenMP pools belong to the thread that made them: the release must run in the thread that
    scored, not in the request threads of a step asked for in shares."""
    import threading

    from worker.models.chat import ChatGenerator

    calls = []
    generator = ChatGenerator(lambda request: {"choices": [{"message": {"content": "1. A cat."}}]}, name="engine",
                              version="test", before_requests=lambda: calls.append(threading.get_ident()))
    generator.complete([CONVERSATION] * 3, seed=0, **SAMPLING)
    generator.complete([CONVERSATION], seed=0, **SAMPLING)
    assert calls == [threading.get_ident()] * 2
