"""The user's prompt template and initial pool (--prompt-file, --pool-file; the forms' and the API's
prompt_file and pool_file): checked at submission, stored once by content hash, and what the
generator and the scorer of a real run get. Jobs run in this process with the tiny fakes of
tests/support/fakes.py (a recording generator, a word-overlap scorer); the CLI runs as a process.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import func, select

from tests.support.fakes import HiddenCaptionScorer, ScriptedGenerator
from tests.support.services import assert_one_error_line, run_embedded
from web import create_app
from worker.core import Settings, SettingsError, normalize
from worker.kinds import TASK_KINDS
from worker.kinds.prompts import scored_lines
from worker.kinds.user_files import MAX_POOL_TEXT_CHARS, MAX_PROMPT_BYTES, check_pool, check_prompt
from worker.runner import JobModels, run_in_process
from worker.store.db import open_store
from worker.store.schema import Artifact, Batch, Job, Pool
from worker.submission import job_request, store_job, task_input, user_files

# The reference code's image prompt (facebookresearch/MILS, prompts/image_captioning_shorter.txt),
# its first lines and its placeholders as written there.
REFERENCE_PROMPT = (
    "You need to provide a short image description. \n"
    "I am providing to you a list of short image descriptions and scores. \n"
    "Higher score means that the image description characterizes the image better: \n\n"
    "{descriptions}\n\n"
    "Generate additional {requested_number} short image descriptions that you think that will maximize "
    "the score and fully capture the image. \n"
)
# Ours for the runs: the fakes find the scored lines and "Write N new" in it. The braces that are
# not a placeholder must reach the LLM as written.
TEMPLATE = ("Scored so far, best first:\n{descriptions}\n\nWrite {requested_number} new captions of at most "
            "{max_words} words. Answer as JSON like {\"captions\": [...]}, or a numbered list {like this}.")
POOL = "\n".join(["a cat on a table", "A cat on a table.", "", "  a tabby cat in the sun  ", "a dog on a sofa",
                  "a wooden table", "a red car"]) + "\n"
POOL_TEXTS = ["a cat on a table", "a tabby cat in the sun", "a dog on a sofa", "a wooden table", "a red car"]
TARGET = "a tabby cat sitting on a wooden table in the sun"
SETTINGS = {"steps": 2, "top_k": 3, "candidates": 4, "prompts_per_step": 1, "seed": 5}


# --------------------------------------------------------------------------- checks


def test_the_reference_prompt_is_accepted_as_written():
    assert check_prompt(REFERENCE_PROMPT.encode()) == REFERENCE_PROMPT
    assert check_prompt(b"\xef\xbb\xbf" + TEMPLATE.encode()) == TEMPLATE  # a byte order mark is dropped


@pytest.mark.parametrize("template, message", [
    ("Here: {descriptions}. Write more.", "has no placeholder {requested_number}"),
    ("Write {requested_number} more.", "has no placeholder {descriptions}"),
    ("Write some.", "{descriptions} (the scored texts"),
    ("{descriptions} {requested_number} {requested_numbr}", "unknown placeholder {requested_numbr}"),
])
def test_a_template_without_a_placeholder_is_refused_with_its_name(template, message):
    with pytest.raises(SettingsError, match=r"prompt file p\.txt") as refused:
        check_prompt(template.encode(), "p.txt")
    assert message in str(refused.value)


@pytest.mark.parametrize("data, message", [
    (b"", "is empty"),
    (b" \n\t\n", "is empty"),
    (b"{descriptions} \xff\xfe {requested_number}", "is not UTF-8 text (line 1"),
    (b"{descriptions}\x00{requested_number}", "NUL bytes"),
    (b"{descriptions}{requested_number}" + b"x" * MAX_PROMPT_BYTES, "at most 65,536"),
])
def test_a_prompt_file_that_is_not_a_template_is_refused(data, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        check_prompt(data)


def test_a_pool_file_is_its_lines_deduplicated_in_order():
    assert check_pool(POOL.encode()) == POOL_TEXTS
    assert check_pool("one\r\ntwo\r\n".encode()) == ["one", "two"]  # a Windows file


@pytest.mark.parametrize("data, message", [
    (b"", "is empty"),
    (b"\n\n", "is empty"),
    (b"...\n!!\n", "has no text with a word in it"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "NUL bytes"),
    (b"a cat\n\xc3\x28 a dog\n", "is not UTF-8 text (line 2"),
    (b"a cat\n" + b"x" * (MAX_POOL_TEXT_CHARS + 1) + b"\n", "line 2 has 1,001 characters"),
])
def test_a_pool_file_that_is_not_texts_is_refused(data, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        check_pool(data, "pool.txt")


def test_only_the_captioning_tasks_take_the_files():
    with pytest.raises(SettingsError, match="a prompt file are for the captioning tasks .* not style-transfer"):
        user_files("style-transfer", prompt=(TEMPLATE.encode(), "p.txt"))


# --------------------------------------------------------------------------- runs


class Recorder:
    """A ModelResolver that keeps the fakes it gave out."""

    def __init__(self) -> None:
        self.generators: list[ScriptedGenerator] = []
        self.scorers: list[HiddenCaptionScorer] = []

    def __call__(self, _generator: str, _scorer: str) -> JobModels:
        self.generators.append(ScriptedGenerator(extra_words=["sitting", "sun"]))
        self.scorers.append(HiddenCaptionScorer(TARGET))
        return JobModels(self.generators[-1], self.scorers[-1])


def _submit(Session, files) -> int:
    kind = TASK_KINDS["image-caption"]
    media, info = task_input(kind, sample="chelsea")
    request = job_request(kind.name, media, info, generator="py:tests.support.fakes:worker_generator",
                          scorer="py:tests.support.fakes:worker_scorer", overrides=SETTINGS, files=files)
    with Session.begin() as session:
        return store_job(session, request)[0].id


def test_a_job_runs_with_the_users_prompt_and_pool_stored_once(db_url):
    Session = open_store(db_url, auto_upgrade=True)
    files = user_files("image-caption", prompt=(TEMPLATE.encode(), "mine.txt"), pool=(POOL.encode(), "pool.txt"))
    models = Recorder()
    first = _submit(Session, files)
    results = list(run_in_process(Session, first, models))

    # Step 0 scored exactly the pool file's texts, in order, and nothing else.
    scorer = models.scorers[0]  # the resolver gives each step fresh fakes
    assert scorer.pool_calls == 1 and scorer.seen == POOL_TEXTS
    assert [c.text for c in results[0].candidates] == POOL_TEXTS
    # Each step's conversation is the user's text, filled in: one user message, no system message.
    calls = [call for generator in models.generators for call in generator.calls]
    assert len(calls) == 2
    for call, before in zip(calls, results):
        expected = (TEMPLATE.replace("{descriptions}", scored_lines(before.top)).replace("{requested_number}", "4")
                    .replace("{max_words}", str(Settings().max_words)))
        assert call.conversations == [[{"role": "user", "content": expected}]]
    assert '{"captions": [...]}' in expected and "{like this}" in expected
    # No text the pool already had is scored again.
    later = [c.text for r in results[1:] for c in r.candidates]
    assert later and not {normalize(t) for t in later} & {normalize(t) for t in POOL_TEXTS}

    # A second job of the same files stores neither again.
    second = _submit(Session, user_files("image-caption", prompt=(TEMPLATE.encode(), "again.txt"),
                                         pool=(POOL.encode(), "again.txt")))
    list(run_in_process(Session, second, Recorder()))
    with Session() as session:
        assert session.scalar(select(func.count()).select_from(Pool)) == 1
        pool = session.scalar(select(Pool))
        assert pool.size == len(POOL_TEXTS)
        jobs = session.scalars(select(Job).order_by(Job.id)).all()
        assert {j.pool_sha256 for j in jobs} == {pool.sha256} and jobs[0].prompt_sha256 == files.prompt_sha256
        prompt = session.get(Artifact, files.prompt_sha256)
        assert prompt.data.decode() == TEMPLATE
        assert session.scalar(select(func.count()).select_from(Artifact)
                              .where(Artifact.media_type.like("text/plain%"))) == 1


def test_a_job_without_the_files_runs_with_the_tasks_own(sqlite_url):
    Session = open_store(sqlite_url)
    models = Recorder()
    job_id = _submit(Session, user_files("image-caption"))
    results = list(run_in_process(Session, job_id, models))
    assert len(results[0].candidates) > 1000  # the bundled 5,000-caption pool (deduplicated)
    conversation = models.generators[1].calls[0].conversations[0]
    assert conversation[0]["role"] == "system" and "{descriptions}" not in conversation[1]["content"]
    with Session() as session:
        job = session.get(Job, job_id)
        assert job.prompt_sha256 is None and job.pool_sha256 is None


# --------------------------------------------------------------------------- the CLI


def test_the_cli_runs_a_job_with_the_files_and_refuses_a_broken_template(tmp_path):
    template, pool = tmp_path / "prompt.txt", tmp_path / "pool.txt"
    template.write_text(TEMPLATE)
    pool.write_text(POOL)
    home = tmp_path / "home"
    fakes = ["--llm", "py:tests.support.fakes:worker_generator", "--scorer", "py:tests.support.fakes:worker_scorer"]
    done = run_embedded("caption", "--sample", "chelsea", *fakes, "--steps", "1", "--candidates", "4", "--top-k", "3",
                        "--prompt-file", str(template), "--pool-file", str(pool), "--temperature", "0.3",
                        "--top-p", "0.8", "--max-words", "9", "--json", home=home, timeout=300)
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    status = run_embedded("status", str(job_id), "--json", home=home)
    summary = json.loads(status.stdout)
    assert summary["prompt_sha256"] and summary["pool_sha256"]
    assert (summary["settings"]["temperature"], summary["settings"]["top_p"], summary["settings"]["max_words"]) \
        == (0.3, 0.8, 9)
    shown = run_embedded("status", str(job_id), home=home).stdout
    assert f"prompt: the user's file, sha256 {summary['prompt_sha256']}" in shown

    broken = tmp_path / "broken.txt"
    broken.write_text("Improve these: {descriptions}")
    refused = run_embedded("caption", "--sample", "chelsea", *fakes, "--prompt-file", str(broken), home=home)
    assert_one_error_line(refused, r"prompt file .*broken\.txt has no placeholder \{requested_number\}")
    wrong_task = run_embedded("t2i", "a red bicycle", *fakes, "--pool-file", str(pool), home=home)
    assert_one_error_line(wrong_task, "a pool file are for the captioning tasks")
    jobs = json.loads(run_embedded("jobs", "--json", home=home).stdout)
    assert [j["id"] for j in jobs] == [job_id]  # the refused ones stored nothing


# --------------------------------------------------------------------------- the web and the API


@pytest.fixture
def client(pg, queue_db):
    return create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True}).test_client()


def _files(prompt: str = TEMPLATE, pool: str = POOL) -> dict:
    return {"prompt_file": (io.BytesIO(prompt.encode()), "prompt.txt"), "pool_file": (io.BytesIO(pool.encode()), "pool.txt")}


def test_the_api_takes_the_files_shows_them_and_refuses_bad_ones(client, pg):
    fields = {"sample": "chelsea", "llm": "py:tests.support.fakes:worker_generator",
              "scorer": "py:tests.support.fakes:worker_scorer", "steps": "1", "temperature": "0.25"}
    made = client.post("/api/jobs", data={**fields, **_files()}, content_type="multipart/form-data")
    assert made.status_code == 201, made.get_data(as_text=True)
    body = made.get_json()
    assert body["prompt"]["text"] == TEMPLATE and body["prompt"]["bytes"] == len(TEMPLATE.encode())
    assert body["pool"]["texts"] == len(POOL_TEXTS) and body["settings"]["temperature"] == 0.25
    page = client.get(f"/jobs/{body['id']}").get_data(as_text=True)
    assert body["prompt"]["sha256"] in page and "5 texts" in page

    before = client.get("/api/jobs").get_json()["jobs"]
    for files, message in [(_files(prompt="no placeholders"), "has no placeholder {descriptions}"),
                           (_files(pool="\x00\x01"), "pool file pool.txt is not text"),
                           ({"pool_file": (io.BytesIO(b""), "empty.txt")}, "pool file empty.txt is empty")]:
        refused = client.post("/api/jobs", data={**fields, **files}, content_type="multipart/form-data")
        assert refused.status_code == 400 and message in refused.get_json()["error"]["message"]
    t2i = client.post("/api/jobs", data={"task": "text-to-image", "prompt": "a red bicycle", **_files()},
                      content_type="multipart/form-data")
    assert t2i.status_code == 400 and "for the captioning tasks" in t2i.get_json()["error"]["message"]
    assert client.get("/api/jobs").get_json()["jobs"] == before

    described = client.get("/api/openapi.json").get_json()
    for path in ("/api/jobs", "/api/batches"):
        form = described["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert {"prompt_file", "pool_file", "temperature", "top_p", "max_words"} <= set(form["properties"])


def test_a_batch_keeps_its_files_for_every_item_and_export(client, pg, tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "photos").mkdir(parents=True)
    from worker.media.samples import sample_path

    for name in ("chelsea", "astronaut"):
        (root / "photos" / f"{name}.png").write_bytes(sample_path(name).read_bytes())
    monkeypatch.setenv("MILS_DATASET_ROOT", str(root))
    fields = {"name": "mine", "llm": "py:tests.support.fakes:worker_generator",
              "scorer": "py:tests.support.fakes:worker_scorer", "steps": "1"}
    manifest = "path\nphotos/chelsea.png\n"
    made = client.post("/api/batches", data={**fields, **_files(),
                                             "manifest": (io.BytesIO(manifest.encode()), "m.csv")},
                       content_type="multipart/form-data")
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.get_json()["pool"]["texts"] == len(POOL_TEXTS)
    # A later submission without the files gets the batch's; with another pool it is refused.
    more = "path\nphotos/astronaut.png\n"
    added = client.post("/api/batches", data={"name": "mine", "manifest": (io.BytesIO(more.encode()), "m.csv")},
                        content_type="multipart/form-data")
    assert added.status_code == 200 and added.get_json()["submission"]["added"] == 1
    other = client.post("/api/batches", data={"name": "mine", **_files(pool="a bird\n"),
                                              "manifest": (io.BytesIO(more.encode()), "m.csv")},
                        content_type="multipart/form-data")
    assert other.status_code == 400 and "not the pool file given" in other.get_json()["error"]["message"]

    engine_session = open_store(pg)
    with engine_session() as session:
        batch = session.scalar(select(Batch).where(Batch.name == "mine"))
        jobs = session.scalars(select(Job).order_by(Job.id)).all()
        assert len(jobs) == 2
        assert {(j.prompt_sha256, j.pool_sha256) for j in jobs} == {(batch.prompt_sha256, batch.pool_sha256)}
    exported = client.get("/api/batches/mine/results?format=csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["pool_sha256"] for r in rows] == [batch.pool_sha256] * 2
    assert [r["prompt_sha256"] for r in rows] == [batch.prompt_sha256] * 2
    assert batch.pool_sha256 in client.get("/batches/mine").get_data(as_text=True)
