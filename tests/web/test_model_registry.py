"""A shared server (token auth) runs only the models its operator named (worker.models.registry,
MILS_MODELS): through the real web app on the real PostgreSQL, every kind of raw spec that would
import code, open a server file or call a URL is refused, by the API and by the forms, storing
nothing; a registry name runs end to end (the in-process runner against a fake LLM server; a real
`mils worker` on the entry's own queue) and the job records the name beside the spec."""

from __future__ import annotations

import io
import html
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from tests.support.fake_llm_server import FakeLLMServer
from tests.support.fakes import HiddenCaptionScorer
from tests.support.media import make_zip
from tests.support.services import Worker, mils_env, wait_for
from web import create_app
from worker.models.chat import openai_generator
from worker.models.registry import RegistryError
from worker.runner import JobModels, run_in_process
from worker.store.db import open_store
from worker.store.schema import Batch, Job
from worker.store.tokens import create_token

TARGET = "a tabby cat sitting on a wooden table in the sun"
FAKE_LLM, FAKE_SCORER = "py:tests.support.fakes:worker_generator", "py:tests.support.fakes:worker_scorer"
SMALL = {"steps": "1", "candidates": "4", "top_k": "3"}


class CountingServer:
    """A plain HTTP listener that answers 500 to anything and counts the requests it got."""

    def __init__(self) -> None:
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                owner.hits += 1
                self.send_response(500)
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_PUT = _any  # noqa: N815 (http.server's names)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def llm_server():
    server = FakeLLMServer("echo", delay=0.01).start()
    yield server
    server.close()


@pytest.fixture
def stranger():
    server = CountingServer()
    yield server
    server.close()


@pytest.fixture
def registry_file(tmp_path, monkeypatch, llm_server):
    """MILS_MODELS: a generator at the fake LLM server, the tests' fakes under names (on their own
    queue), and an audio scorer."""
    path = tmp_path / "models.toml"
    path.write_text(f"""\
[generators.fake-llm]
spec = "openai:fake-model@{llm_server.url}"
description = "the fake LLM server"

[generators.scripted]
spec = "{FAKE_LLM}"
description = "the tests' scripted generator"
queue = "fakes"

[scorers.hidden-caption]
spec = "{FAKE_SCORER}"
description = "the tests' hidden-caption scorer"
""")
    monkeypatch.setenv("MILS_MODELS", str(path))
    return path


@pytest.fixture
def token_app(pg, queue_db, registry_file):
    return create_app({"DATABASE_URL": pg, "TESTING": True, "AUTH": "token"})


@pytest.fixture
def bearer(pg) -> dict:
    with open_store(pg).begin() as session:
        return {"Authorization": f"Bearer {create_token(session, 'alice')}"}


def rows(pg) -> dict[str, int]:
    with open_store(pg)() as session:
        return {t.__tablename__: session.scalar(select(func.count()).select_from(t)) for t in (Job, Batch)}


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    return response.get_json()["error"]["message"]


def png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def forbidden(stranger_url: str) -> list[tuple[dict, str]]:
    """(fields, what the refusal says) of every kind of raw spec a shared server must refuse."""
    return [
        ({"llm": "py:os:getpid"}, "not a model this server offers"),
        ({"llm": "gguf:/etc/passwd"}, "not a model this server offers"),
        ({"llm": "/etc"}, "not a model this server offers"),
        ({"scorer": "open_clip:ViT-B-32@/etc/passwd"}, "not a model this server offers"),
        ({"scorer": "clap:/etc"}, "not a model this server offers"),
        ({"scorer": FAKE_SCORER}, "not a model this server offers"),  # the registry's spec, not its name
        ({"llm": f"openai:x@{stranger_url}"}, "not a model this server offers"),
        ({"llm": "openai:x@http://169.254.169.254/latest"}, "not a model this server offers"),
        ({"task": "text-to-image", "prompt": "a cat", "renderer": "diffusers:/etc"}, "not a model this server offers"),
    ]


def test_the_api_refuses_every_raw_spec_with_token_auth_and_stores_nothing(token_app, bearer, pg, stranger):
    client = token_app.test_client()
    for fields, message in forbidden(stranger.url):
        given = fields if "task" in fields else {"sample": "chelsea", **fields}  # a text task takes no sample
        job = client.post("/api/jobs", headers=bearer, data={**SMALL, **given})
        assert message in error_of(job, 400), fields
        if "task" in fields:
            continue  # a batch runs captioning tasks only (no renderer)
        archive = make_zip({"a.png": png()})
        batch = client.post("/api/batches", headers=bearer, data={"name": "b", **SMALL, **fields,
                                                                  "archive": (io.BytesIO(archive), "a.zip")})
        assert message in error_of(batch, 400), fields
    assert rows(pg) == {"jobs": 0, "batches": 0}
    assert stranger.hits == 0


def test_the_admin_seam_stays_shut_without_admin_tokens(pg, queue_db, registry_file, bearer, stranger, monkeypatch):
    """MILS_WEB_RAW_SPECS=admin lets only admin tokens send raw specs: an ordinary token still
    cannot, and never sees the specs' URLs in GET /api/models."""
    monkeypatch.setenv("MILS_WEB_RAW_SPECS", "admin")
    client = create_app({"DATABASE_URL": pg, "TESTING": True, "AUTH": "token"}).test_client()
    refused = client.post("/api/jobs", headers=bearer, data={"sample": "chelsea", "llm": "openai:x@" + stranger.url})
    assert "not a model this server offers" in error_of(refused, 400)
    listing = client.get("/api/models", headers=bearer).get_json()
    assert listing["raw_specs"] is False and all("spec" not in m for m in listing["models"])
    assert {(m["name"], m["role"], m["queue"]) for m in listing["models"]} == {
        ("embedded", "generator", None), ("embedded", "scorer", None), ("fake-llm", "generator", None),
        ("scripted", "generator", "fakes"), ("hidden-caption", "scorer", None)}
    assert "fake-model" not in json.dumps(listing) and stranger.hits == 0 and rows(pg)["jobs"] == 0


def test_admin_tokens_send_raw_specs_only_where_the_operator_allows_and_never_files_code_or_unnamed_urls(
        pg, queue_db, registry_file, llm_server, stranger, monkeypatch):
    """An admin token's raw spec: refused by default; with MILS_WEB_RAW_SPECS=admin accepted for an
    engine URL the registry names (another model on it), still refused for a py: factory, a file
    and an address the registry does not name."""
    with open_store(pg).begin() as session:
        admin = {"Authorization": f"Bearer {create_token(session, 'root', role='admin')}"}
    other_model = f"openai:other-model@{llm_server.url}"
    client = create_app({"DATABASE_URL": pg, "TESTING": True, "AUTH": "token"}).test_client()
    shut = client.post("/api/jobs", headers=admin, data={"sample": "chelsea", **SMALL, "llm": other_model})
    assert "not a model this server offers" in error_of(shut, 400)
    monkeypatch.setenv("MILS_WEB_RAW_SPECS", "admin")
    client = create_app({"DATABASE_URL": pg, "TESTING": True, "AUTH": "token"}).test_client()
    assert client.get("/api/models", headers=admin).get_json()["raw_specs"] is True
    for fields, _ in forbidden(stranger.url):
        given = fields if "task" in fields else {"sample": "chelsea", **fields}
        refused = client.post("/api/jobs", headers=admin, data={**SMALL, **given})
        # "takes no py: specs and no file paths", "no engine URL it does not name", "not a model ..."
        assert "offers" in error_of(refused, 400), fields
    assert rows(pg)["jobs"] == 0 and stranger.hits == 0
    accepted = client.post("/api/jobs", headers=admin, data={"sample": "chelsea", **SMALL, "llm": other_model})
    assert accepted.status_code == 201, accepted.get_data(as_text=True)[:300]
    with open_store(pg)() as session:
        job = session.get(Job, accepted.get_json()["id"])
        assert (job.generator, job.generator_name) == (other_model, None)


def login(client, raw_token: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"csrf_token": csrf, "token": raw_token}).status_code == 302


def csrf_of(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def test_the_forms_offer_names_only_and_refuse_raw_specs_with_token_auth(token_app, bearer, pg, stranger):
    client = token_app.test_client()
    login(client, bearer["Authorization"].removeprefix("Bearer "))
    page = client.get("/jobs/new").get_data(as_text=True)
    assert '<option value="fake-llm">fake-llm: the fake LLM server</option>' in page
    assert 'id="llm"' not in page and 'id="scorer"' not in page  # no free-text specs on a shared server
    assert 'id="llm_name"' in page and 'id="scorer_name"' in page and 'id="audio_scorer_name"' in page
    assert llm_server_url_absent(page)
    for fields, message in forbidden(stranger.url):
        job = client.post("/jobs/new", data={"csrf_token": csrf_of(client, "/jobs/new"), "sample": "chelsea",
                                             "task": "image-caption", **SMALL, **fields})
        assert job.status_code == 400 and message in html.unescape(job.get_data(as_text=True)), fields
        if "task" in fields:
            continue
        batch = client.post("/batches/new", data={"csrf_token": csrf_of(client, "/batches/new"), "name": "b",
                                                  "task": "image-caption", **SMALL, **fields,
                                                  "archive": (io.BytesIO(make_zip({"a.png": png()})), "a.zip")})
        assert batch.status_code == 400 and message in html.unescape(batch.get_data(as_text=True)), fields
    # A name from the drop-down is taken.
    chosen = client.post("/jobs/new", data={"csrf_token": csrf_of(client, "/jobs/new"), "sample": "chelsea",
                                            "task": "image-caption", "llm_name": "fake-llm",
                                            "scorer_name": "hidden-caption", **SMALL})
    assert chosen.status_code == 302, chosen.get_data(as_text=True)[:2000]
    assert rows(pg) == {"jobs": 1, "batches": 0} and stranger.hits == 0


def llm_server_url_absent(page: str) -> bool:
    return "127.0.0.1:" not in page


def test_a_job_by_name_runs_on_the_named_engine_and_records_name_and_spec(token_app, bearer, pg, llm_server,
                                                                          stranger):
    client = token_app.test_client()
    # An engine the registry does not name is never called: the job is refused before it is stored.
    refused = client.post("/api/jobs", headers=bearer,
                          data={"sample": "chelsea", "llm": f"openai:fake-model@{stranger.url}", **SMALL})
    assert "not a model this server offers" in error_of(refused, 400)
    created = client.post("/api/jobs", headers=bearer, data={"sample": "chelsea", "llm": "fake-llm", **SMALL})
    assert created.status_code == 201, created.get_data(as_text=True)
    job = created.get_json()
    spec = f"openai:fake-model@{llm_server.url}"
    assert (job["generator_name"], job["generator"], job["scorer_name"], job["scorer"]) == (
        "fake-llm", spec, "embedded", "embedded")
    # The runner loads the generator from the job's stored spec: the real OpenAI-compatible client.
    for _ in run_in_process(open_store(pg), job["id"],
                            lambda g, _s: JobModels(openai_generator(g), HiddenCaptionScorer(TARGET))):
        pass
    done = client.get(f"/api/jobs/{job['id']}", headers=bearer).get_json()
    assert done["status"] == "succeeded" and done["generator_name"] == "fake-llm" and done["generator"] == spec
    assert len(llm_server.requests) > 0 and stranger.hits == 0
    login(client, bearer["Authorization"].removeprefix("Bearer "))
    page = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert f'<dd id="model-generator">fake-llm: {spec}</dd>' in page


def test_without_auth_raw_specs_still_run_and_a_registered_engine_is_called(pg, queue_db, registry_file,
                                                                           llm_server):
    """One user on 127.0.0.1 (no auth): a raw spec is taken as before, and shown beside the names."""
    client = create_app({"DATABASE_URL": pg, "TESTING": True, "WTF_CSRF_ENABLED": False}).test_client()
    spec = f"openai:fake-model@{llm_server.url}"
    job = client.post("/api/jobs", data={"sample": "chelsea", "llm": spec, **SMALL}).get_json()
    assert job["generator_name"] is None and job["generator"] == spec
    page = client.get("/jobs/new").get_data(as_text=True)
    assert 'id="llm"' in page and 'id="llm_name"' in page
    assert client.get("/api/models").get_json()["models"][2] == {
        "name": "fake-llm", "role": "generator", "description": "the fake LLM server", "queue": None, "spec": spec}


def test_a_named_entry_routes_its_jobs_to_its_queue_and_a_real_worker_runs_them(token_app, bearer, pg, queue_db,
                                                                               registry_file, tmp_path):
    """`queue = "fakes"`: the job's steps go to that queue, which a worker started for it takes."""
    client = token_app.test_client()
    created = client.post("/api/jobs", headers=bearer, data={"sample": "chelsea", "llm": "scripted",
                                                             "scorer": "hidden-caption", **SMALL})
    assert created.status_code == 201, created.get_data(as_text=True)
    job_id = created.get_json()["id"]
    env = mils_env(home=tmp_path / "home", database_url=pg, broker_url=f"sqla+sqlite:///{queue_db}",
                   MILS_MODELS=str(registry_file), MILS_FAKE_STEP_SECONDS="0")
    worker = Worker("fakes", env, tmp_path, args=["--queues", "fakes"])
    try:
        def finished() -> bool:
            return client.get(f"/api/jobs/{job_id}", headers=bearer).get_json()["status"] == "succeeded"
        wait_for("the job to succeed on the fakes queue", finished, timeout=90, interval=0.5, on_timeout=worker.text)
    finally:
        worker.close()
    job = client.get(f"/api/jobs/{job_id}", headers=bearer).get_json()
    assert (job["generator_name"], job["generator"], job["scorer_name"], job["scorer"]) == (
        "scripted", FAKE_LLM, "hidden-caption", FAKE_SCORER)
    assert "queues" in worker.text() and "fakes" in worker.text()


def test_a_malformed_registry_stops_the_app_naming_the_line(pg, tmp_path, monkeypatch):
    path = tmp_path / "models.toml"
    path.write_text('[generators.ok]\nspec = "embedded"\n\n[generators.typo]\nspec = "embedded"\ndescripton = "x"\n')
    monkeypatch.setenv("MILS_MODELS", str(path))
    with pytest.raises(RegistryError, match=rf"{re.escape(str(path))}:4: \[generators\.typo\]: unknown key descripton"):
        create_app({"DATABASE_URL": pg})
