"""The JSON API against its own description, fuzzed: Schemathesis (its CLI, a subprocess) reads
/api/openapi.json from a real `mils web` and sends every operation requests generated from it,
valid ones and ones the description forbids, with token auth on (MILS_WEB_AUTH=token, a token
from `mils token create`), on PostgreSQL and a private Redis; no worker, so submitted jobs stay
queued. Every answer must be no server error, have a status code and a content type the
description lists for the operation, and a body its schema holds; a request the description
forbids must be refused (4xx).

The seed is fixed (SEED) and printed, with the run's summary when it fails (each failure with
the curl command that reproduces it). About two minutes on 2 cores; not `slow`, which marks the
tests that load real models.
"""

from __future__ import annotations

import io
import os
import json
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.support.services import RedisServer, mils_env, run_mils, scalar
from tests.web.test_web_browser import WebServer, database  # noqa: F401 - fixture

SEED = int(os.environ.get("MILS_FUZZ_SEED", "20260507"))  # another seed: MILS_FUZZ_SEED
MAX_EXAMPLES = 50  # per operation, in the fuzzing phase
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "negative_data_rejection"]
SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))


def _post_multipart(url: str, token: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> dict:
    """POST a multipart form (like `curl -F`); returns the JSON answer."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def served(database, tmp_path_factory):  # noqa: F811 - the imported fixture
    """(web server, token, database): `mils web` with tokens on, holding a queued job and a batch,
    so the lists and the lookups answer with real records too."""
    from worker.media.samples import sample_path

    folder = tmp_path_factory.mktemp("fuzz")
    home = folder / "mils-home"
    home.mkdir()
    redis = RedisServer(folder / "redis")
    web = None
    try:
        redis.start()
        env = mils_env(home=home, database_url=database, broker_url=redis.url, MILS_WEB_AUTH="token")
        for args in (("db", "upgrade"), ("token", "create", "fuzzer")):
            out = run_mils(*args, env=env)
            assert out.returncode == 0, out.stdout + out.stderr
        token = out.stdout.strip().splitlines()[-1]
        web = WebServer(env, folder)
        web.wait_ready()
        _post_multipart(f"{web.url}/api/jobs", token, {"sample": "chelsea"}, {})
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as photos:
            photos.write(sample_path("chelsea"), "a.png")
            photos.write(sample_path("chelsea"), "b.png")
        _post_multipart(f"{web.url}/api/batches", token, {"name": "fuzzed"},
                        {"archive": ("photos.zip", archive.getvalue())})
        yield web, token, database
    finally:
        if web is not None:
            web.close()
        redis.close()


def test_every_operation_holds_to_the_description_under_fuzzing(served, tmp_path):
    web, token, database = served
    jobs_before = scalar(database, "SELECT count(*) FROM jobs")
    command = [SCHEMATHESIS, "run", f"{web.url}/api/openapi.json", "--url", web.url,
               "--header", f"Authorization: Bearer {token}",
               "--checks", ",".join(CHECKS), "--mode", "all", "--phases", "examples,coverage,fuzzing",
               "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
               "--generation-database", "none", "--request-timeout", "30",
               "--no-color"]
    print(f"schemathesis seed {SEED}: {' '.join(command).replace(token, '<token>')}")
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    print(f"schemathesis took {time.monotonic() - started:.0f} s")
    summary = out.stdout.replace(token, "<token>")
    assert out.returncode == 0, (f"schemathesis (seed {SEED}) found failures:\n{summary[-20000:]}\n{out.stderr[-4000:]}"
                                 f"\n===== web log\n{web.text()[-6000:]}")
    # The description lets it make submissions the server takes, not only ones it refuses.
    assert scalar(database, "SELECT count(*) FROM jobs") > jobs_before, summary[-4000:]
