"""Cross-modal arithmetic: inputs inverted to text by their own MILS jobs (the parents, linked),
combined by the LLM into one prompt, rendered (a tiny random Stable Diffusion) and scored
against every part. The LLM is the scripted fake; scorers are fakes (the colour judge for
renders, the hidden-caption judge for the photo's caption)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from tests.support.services import assert_one_error_line, run_embedded
from tests.support.tiny_pipelines import build_text_to_image

ROOT = Path(__file__).resolve().parents[2]
FAKE_LLM = "py:tests.support.fakes:worker_generator"
COLOUR = "py:tests.support.fakes:colour_scorer"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> str:
    return "diffusers:" + str(build_text_to_image(tmp_path_factory.mktemp("tiny-sd")))


RENDER = ["--size", "32", "--render-steps", "2"]


def test_an_image_and_a_text_are_inverted_combined_and_rendered(pipeline, tmp_path):
    home = tmp_path / "home"
    photo = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (220, 30, 30)).save(photo)
    out = run_embedded("arithmetic", str(photo), "--text", "a blue lake under a green forest",
                       "--renderer", pipeline, *RENDER, "--llm", FAKE_LLM, "--scorer", COLOUR, "--steps", "2",
                       "--candidates", "3", "--top-k", "3", "--json", home=home)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert len(result["parents"]) == 1 and len(result["steps"]) == 3
    detail = json.loads(run_embedded("status", str(result["job_id"]), "--json", home=home).stdout)
    assert detail["task"] == "arithmetic" and detail["status"] == "succeeded"
    parent = json.loads(run_embedded("status", str(result["parents"][0]), "--json", home=home).stdout)
    assert parent["task"] == "image-caption" and parent["status"] == "succeeded"
    # Step 0 holds combinations of the photo's caption and the text, each rendered.
    history = run_embedded("history", str(result["job_id"]), home=home).stdout
    rows = list(__import__("csv").DictReader(io.StringIO(history)))
    step0 = [r["text"] for r in rows if r["step"] == "0"]
    caption = parent["best_text"].rstrip(" .")
    assert any(caption in t and "a blue lake under a green forest" in t for t in step0), (caption, step0)
    assert all(r["artifact_sha256"] for r in rows)


def test_a_part_given_up_by_the_reaper_fails_the_arithmetic_job(pipeline, sqlite_url):
    from sqlalchemy import update

    from worker.config import max_auto_resumes
    from worker.kinds.arithmetic import part_from_file, part_from_text
    from worker.runner import execute_step
    from worker.submission import arithmetic_request, store_arithmetic
    from worker.store.db import open_store
    from worker.store.schema import Job, JobStatus


    Session = open_store(sqlite_url)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 10, 200)).save(buffer, "PNG")
    with Session.begin() as s:
        job, parents, _ = store_arithmetic(s, arithmetic_request(
            [part_from_file(buffer.getvalue(), "b.png"), part_from_text("a kite")], generator=FAKE_LLM, scorer=COLOUR,
            overrides=dict(steps=1), options={"renderer": pipeline, "size": 32}))
        job_id, parent_id = job.id, parents[0].id
    with Session.begin() as s:
        s.execute(update(Job).where(Job.id == parent_id).values(status=JobStatus.INTERRUPTED,
                                                                  auto_resumes=max_auto_resumes()))
    assert execute_step(Session, job_id, lambda g, s: None) is None
    with Session() as s:
        assert s.get(Job, job_id).error == f"parent job {parent_id} interrupted"


def test_a_failed_part_fails_the_arithmetic_job_and_an_early_step_waits(pipeline, sqlite_url):
    from worker.kinds.arithmetic import part_from_file, part_from_text
    from worker.runner import WaitingForParents, execute_step
    from worker.submission import arithmetic_request, store_arithmetic
    from worker.store.queries import job_detail
    from worker.store.db import open_store


    Session = open_store(sqlite_url)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buffer, "PNG")
    parts = [part_from_file(buffer.getvalue(), "green.png"), part_from_text("a yellow sun")]
    with Session.begin() as s:
        job, parents, _ = store_arithmetic(s, arithmetic_request(
            parts, generator=FAKE_LLM, scorer=COLOUR,
            overrides=dict(steps=1), options={"renderer": pipeline, "size": 32, "render_steps": 2}))
        job_id, parent_id = job.id, parents[0].id
    with pytest.raises(WaitingForParents, match=f"job {job_id} waits for job\\(s\\) {parent_id}"):
        execute_step(Session, job_id, lambda g, s: None)
    from worker.lifecycle import cancel

    with Session.begin() as s:
        cancel(s, parent_id)
    assert execute_step(Session, job_id, lambda g, s: None) is None
    with Session() as s:
        detail = job_detail(s, job_id)
    assert detail["status"] == "failed" and detail["error"] == f"parent job {parent_id} cancelled"
    assert [(p["id"], p["status"]) for p in detail["parents"]] == [(parent_id, "cancelled")]


@pytest.mark.parametrize("args, message", [
    (["--text", "a cat"], r"arithmetic combines at least two inputs"),
    (["{wav}", "--text", "a cat"], r"an audio part needs an audio-text scorer"),
    (["{bad}", "--text", "a cat"], r"bad.bin: neither an image nor a sound recording"),
    (["--text", "a cat", "--text", "a dog"], r"arithmetic needs the text-to-image pipeline"),
])
def test_bad_arithmetic_commands_fail_with_one_error_line(tmp_path, args, message):
    from tests.support.media import recording

    wav, bad = tmp_path / "tone.wav", tmp_path / "bad.bin"
    wav.write_bytes(recording(2.0))
    bad.write_bytes(b"\x00\x01 nothing" * 20)
    extra = [] if "needs the text-to-image" in message else ["--renderer", "diffusers:" + str(tmp_path)]
    out = run_embedded("arithmetic", *[a.format(wav=wav, bad=bad) for a in args], *extra, "--llm", FAKE_LLM,
                       home=tmp_path / "home")
    assert_one_error_line(out, message)


def test_the_api_submits_an_arithmetic_job_with_its_parents(pipeline, pg, queue_db):
    from tests.support.services import queued

    from web import create_app

    client = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False}).test_client()
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 200, 10)).save(buffer, "PNG")
    made = client.post("/api/jobs", data={"task": "arithmetic", "parts": [(io.BytesIO(buffer.getvalue()), "y.png")],
                                          "text": ["a purple boat", "a white cloud"], "renderer": pipeline,
                                          "size": "32", "llm": FAKE_LLM, "scorer": COLOUR})
    assert made.status_code == 201, made.get_json()
    job = made.get_json()
    assert [p["task"] for p in job["parents"]] == ["image-caption"] and job["task"] == "arithmetic"
    assert [p.get("text") for p in job["input_info"]["parts"]] == [None, "a purple boat", "a white cloud"]
    assert queued(queue_db) == [(job["parents"][0]["id"], 0), (job["id"], 0)]
    page = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert f'href="/jobs/{job["parents"][0]["id"]}"' in page
    alone = client.post("/api/jobs", data={"task": "arithmetic", "text": "a boat", "renderer": pipeline})
    assert alone.status_code == 400 and "at least two inputs" in alone.get_json()["error"]["message"]
    assert len(client.get("/api/jobs").get_json()["jobs"]) == 2  # the refused one left nothing


def test_an_interrupted_arithmetic_job_resumes_to_the_same_result(pipeline, sqlite_url):
    """Two arithmetic jobs on the same finished part: one straight through, one interrupted
    after step 1 (left running, as a dead worker leaves it), reaped and resumed."""
    from datetime import timedelta

    from sqlalchemy import update

    from worker.kinds.arithmetic import part_from_file, part_from_text
    from worker.runner import JobModels, execute_step, run_in_process
    from worker.submission import arithmetic_request, store_arithmetic
    from worker.lifecycle import reap
    from worker.models import _from_factory
    from worker.store.queries import job_detail
    from worker.store.db import open_store
    from worker.store.schema import Job, JobLink, JobStatus, utcnow


    Session = open_store(sqlite_url)
    models = lambda g, s: JobModels(_from_factory(g), _from_factory(s))  # noqa: E731
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (30, 30, 220)).save(buffer, "PNG")
    with Session.begin() as s:
        job, parents, _ = store_arithmetic(s, arithmetic_request(
            [part_from_file(buffer.getvalue(), "blue.png"), part_from_text("a red kite")], generator=FAKE_LLM, scorer=COLOUR,
            overrides=dict(steps=4, candidates=3, top_k=3, seed=8), options={"renderer": pipeline, "size": 32, "render_steps": 2}))
        reference, parent = job.id, parents[0].id
        fields = {c: getattr(job, c) for c in ("task", "settings", "generator", "scorer", "input_sha256",
                                               "input_name", "options", "input_info")}
        again = Job(**fields)
        s.add(again)
        s.flush()
        s.add(JobLink(job_id=again.id, position=0, parent_id=parent))
        interrupted = again.id
    list(run_in_process(Session, parent, models))
    list(run_in_process(Session, reference, models))
    execute_step(Session, interrupted, models)
    execute_step(Session, interrupted, models)
    with Session.begin() as s:
        # A worker took step 2 and died: running, its heartbeat an hour old.
        s.execute(update(Job).where(Job.id == interrupted).values(status=JobStatus.RUNNING,
                                                          heartbeat_at=utcnow() - timedelta(hours=1)))
        assert [(m.job_id, m.step) for m in reap(s, stale_after=60)] == [(interrupted, 2)]
    list(run_in_process(Session, interrupted, models))
    with Session() as s:
        want, got = job_detail(s, reference), job_detail(s, interrupted)
    assert got["status"] == "succeeded" and len(got["steps"]) == 5
    assert [(x["best_text"], x["best_score"], x["mean_topk"]) for x in got["steps"]] == \
        [(x["best_text"], x["best_score"], x["mean_topk"]) for x in want["steps"]]
    assert got["top_k"] == want["top_k"]
