"""Style transfer: the style and content distances on the embedded CNN (real EfficientNet-Lite0
weights), instructions applied by a tiny random InstructPix2Pix built from a config (no weights
exist offline: this proves the wiring, seeding, storage and resume, not the pictures), both
distances shown to the LLM, and jobs through the CLI and the API with their error cases.
"""

from __future__ import annotations

import io
import json
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from tests.support.fakes import ScriptedGenerator
from PIL import Image, ImageFilter
from tests.support.services import assert_one_error_line, run_embedded
from tests.support.tiny_pipelines import build_instruct_pix2pix

from worker.media import decode_image
from worker.media.samples import sample_path
from worker.kinds import TASK_KINDS

ROOT = Path(__file__).resolve().parents[2]
STYLE = TASK_KINDS["style-transfer"]
FAKE_LLM = "py:tests.support.fakes:worker_generator"


@pytest.fixture(scope="module")
def editor(tmp_path_factory) -> str:
    return "diffusers:" + str(build_instruct_pix2pix(tmp_path_factory.mktemp("tiny-ip2p")))


@pytest.fixture(scope="module")
def cnn():
    from worker.models import load_scorer

    return load_scorer("embedded")


def photo(name: str) -> Image.Image:
    return decode_image(sample_path(name).read_bytes())


def test_distances_are_zero_for_the_references_and_grow_away_from_them(cnn, editor):
    from worker.models.render import Renderer
    from worker.models.style import StyleScorer

    coffee, chelsea = photo("coffee"), photo("chelsea")
    scorer = StyleScorer(cnn, Renderer(editor, seed=0, size=32, steps=1, guidance=1.0, image=chelsea,
                                       image_guidance=1.5), style_image=coffee, content_weight=1.0)
    content = scorer.encode_sample(chelsea)
    assert scorer.distances(content, coffee)[0] == pytest.approx(0.0, abs=1e-6)  # the style image itself
    assert scorer.distances(content, chelsea)[1] == pytest.approx(0.0, abs=1e-6)  # the content image itself
    blurred = chelsea.filter(ImageFilter.GaussianBlur(3))
    style_of_chelsea, content_of_blur = scorer.distances(content, chelsea)[0], scorer.distances(content, blurred)[1]
    assert style_of_chelsea > 0 and content_of_blur > 0
    # The coffee photo is further from the cat's content than a blurred cat is.
    assert scorer.distances(content, coffee)[1] > content_of_blur


def test_both_distances_reach_the_llm_and_the_store(cnn, editor, sqlite_url):
    from sqlalchemy import select

    from worker.runner import JobModels, run_in_process
    from worker.submission import job_request, store_job
    from worker.media import load_image_file
    from worker.store.db import open_store
    from worker.store.schema import Candidate


    Session = open_store(sqlite_url)
    generator = ScriptedGenerator(extra_words=["watercolor", "brush", "warm", "texture"])
    with Session.begin() as s:
        job_id = store_job(s, job_request("style-transfer", load_image_file(sample_path("chelsea")), {},
                                          generator="fake", overrides=dict(steps=2, candidates=3, top_k=3, seed=2),
                                          options={"editor": editor, "size": 32, "render_steps": 1},
                                          attachments={"style": load_image_file(sample_path("coffee"))}))[0].id
    results = list(run_in_process(Session, job_id, lambda g, s: JobModels(generator, cnn)))
    assert len(results) == 3 and results[0].best.details
    prompt = generator.calls[0].conversations[0][-1]["content"]
    assert re.search(r"-\d+\.\d{4} \(style \d+\.\d{4}, content \d+\.\d{4}\): ", prompt), prompt
    with Session() as s:
        rows = s.execute(select(Candidate.score, Candidate.details, Candidate.artifact_sha256)
                         .where(Candidate.job_id == job_id)).all()
    assert len(rows) == 30 + 3 + 3  # the instruction pool, then 3 new instructions a step
    for score, details, artifact in rows:
        assert set(details) == {"style", "content"} and artifact
        assert score == pytest.approx(-(details["style"] + details["content"]), rel=1e-5)


def test_mils_style_runs_and_resumes_after_an_interruption(editor, tmp_path):
    """The same job twice: once straight through, once killed (the job left running, as a
    dead worker leaves it), reaped and resumed; the records are equal."""
    home = tmp_path / "home"
    args = ["style", "--sample", "chelsea", "--style-sample", "coffee", "--editor", editor, "--size", "32",
            "--render-steps", "1", "--llm", FAKE_LLM, "--steps", "3", "--candidates", "3", "--top-k", "3",
            "--seed", "5", "--json"]
    out = run_embedded(*args, home=home)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["instruction"] == result["steps"][-1]["best_text"] and len(result["steps"]) == 4

    from sqlalchemy import update

    from worker.runner import JobModels, execute_step, run_in_process
    from worker.lifecycle import reap
    from worker.models import _from_factory, load_scorer
    from worker.store.queries import job_detail
    from worker.store.db import open_store
    from worker.store.schema import Job, JobStatus, utcnow

    os.environ["MILS_HOME"] = str(home)  # the same database and render cache as the CLI's
    try:
        Session = open_store(f"sqlite:///{home / 'mils.db'}")
        with Session() as s:
            original = s.get(Job, result["job_id"])
            copy = dict(task=original.task, settings=original.settings, generator=original.generator,
                        scorer=original.scorer, input_sha256=original.input_sha256, input_name=original.input_name,
                        options=original.options, input_info=original.input_info)
        with Session.begin() as s:
            again = Job(**copy)
            s.add(again)
            s.flush()
            again_id = again.id
        models = lambda g, sc: JobModels(_from_factory(g), load_scorer(sc))  # noqa: E731
        execute_step(Session, again_id, models)
        execute_step(Session, again_id, models)
        with Session.begin() as s:
            # A worker took step 2 and died: running, its heartbeat an hour old.
            s.execute(update(Job).where(Job.id == again_id).values(status=JobStatus.RUNNING,
                                                              heartbeat_at=utcnow() - timedelta(hours=1)))
            assert [(m.job_id, m.step) for m in reap(s, stale_after=60)] == [(again_id, 2)]
        list(run_in_process(Session, again_id, models))
        with Session() as s:
            want, got = job_detail(s, result["job_id"]), job_detail(s, again_id)
        assert got["status"] == "succeeded"
        assert [(x["best_text"], x["best_score"]) for x in got["steps"]] == \
            [(x["best_text"], x["best_score"]) for x in want["steps"]]
    finally:
        os.environ.pop("MILS_HOME", None)


@pytest.mark.parametrize("args, message", [
    (["style", "--sample", "chelsea", "--editor", "{editor}"], r"style-transfer needs a style image"),
    (["style", "--sample", "chelsea", "--style-sample", "coffee"], r"style-transfer needs the instruction-editing pipeline"),
    (["style", "--sample", "chelsea", "--style", "{bad}", "--editor", "{editor}"], r"bad.png: not an image"),
    (["style", "--sample", "chelsea", "--style-sample", "coffee", "--editor", "{editor}", "--scorer", "open_clip:ViT-B-32"],
     r"style-transfer measures style and content with the embedded scorer's CNN"),
    (["style", "--sample", "chelsea", "--style-sample", "coffee", "--renderer", "{editor}"], r"--renderer is for `mils t2i`"),
    (["submit", "--sample", "chelsea", "--style-sample", "coffee"], r"--style and --style-sample are for --task style-transfer"),
])
def test_bad_style_commands_fail_with_one_error_line(editor, tmp_path, args, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture at all")
    out = run_embedded(*[a.format(editor=editor, bad=bad) for a in args], "--llm", FAKE_LLM, home=tmp_path / "home")
    assert_one_error_line(out, message)


def test_the_api_takes_a_style_job_with_its_style_image(editor, pg, queue_db):
    from web import create_app

    client = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False}).test_client()
    style = sample_path("coffee").read_bytes()
    made = client.post("/api/jobs", data={"task": "style-transfer", "sample": "chelsea", "editor": editor,
                                          "style_file": (io.BytesIO(style), "coffee.png"), "size": "32"})
    assert made.status_code == 201, made.get_json()
    job = made.get_json()
    assert client.get(f"/api/artifacts/{job['options']['style_sha256']}").data == style
    missing = client.post("/api/jobs", data={"task": "style-transfer", "sample": "chelsea", "editor": editor})
    assert missing.status_code == 400 and "needs a style image" in missing.get_json()["error"]["message"]
    broken = client.post("/api/jobs", data={"task": "style-transfer", "sample": "chelsea", "editor": editor,
                                            "style_file": (io.BytesIO(style[:300]), "cut.png")})
    assert broken.status_code == 400 and "cut.png" in broken.get_json()["error"]["message"]
    assert [j["id"] for j in client.get("/api/jobs").get_json()["jobs"]] == [job["id"]]