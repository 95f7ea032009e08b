"""Text-to-image prompt rewriting on a tiny random Stable Diffusion pipeline built from a
config (no weights exist offline): rendering is seeded per prompt and cached, renders are
stored as the candidates' artifacts and served, the job runs through the CLI and the API,
and bad requests are refused before anything is stored. The scorer is the embedded one
(real weights): renders of random pipelines are noise, so only the wiring is judged here.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from tests.support.services import assert_one_error_line, run_embedded
from tests.support.tiny_pipelines import build_text_to_image

from worker.models.render import Renderer
from worker.kinds import TASK_KINDS, JobInput

ROOT = Path(__file__).resolve().parents[2]
T2I = TASK_KINDS["text-to-image"]
FAKE_LLM = "py:tests.support.fakes:worker_generator"
PROMPT = "A tabby cat sitting on a wooden table in the sun."


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> str:
    return "diffusers:" + str(build_text_to_image(tmp_path_factory.mktemp("tiny-sd")))


def test_renders_are_seeded_per_prompt_batch_independent_and_cached(pipeline, mils_home, tmp_path, monkeypatch):
    renderer = Renderer(pipeline, seed=5, size=32, steps=2, guidance=5.0)
    calls = []
    run = Renderer._run
    monkeypatch.setattr(Renderer, "_run", lambda self, prompts: calls.append(list(prompts)) or run(self, prompts))
    cat, dog, cat_again = renderer.render(["a cat", "a dog", "a cat"])
    assert cat == cat_again and cat != dog
    assert Image.open(io.BytesIO(cat)).size == (32, 32)
    assert calls == [["a cat", "a dog"]]
    assert renderer.render(["a dog"]) == [dog] and len(calls) == 1  # from the cache
    # A fresh cache (another MILS_HOME), the prompt alone in its batch: the same picture.
    monkeypatch.setenv("MILS_HOME", str(tmp_path / "other-home"))
    assert Renderer(pipeline, seed=5, size=32, steps=2, guidance=5.0).render(["a dog"]) == [dog]
    assert Renderer(pipeline, seed=6, size=32, steps=2, guidance=5.0).render(["a dog"]) != [dog]


def test_mils_t2i_rewrites_a_prompt_and_keeps_every_render(pipeline, tmp_path):
    home = tmp_path / "home"
    out = run_embedded("t2i", PROMPT, "--renderer", pipeline, "--size", "32", "--render-steps", "2", "--llm", FAKE_LLM,
                       "--steps", "2", "--candidates", "4", "--top-k", "3", "--seed", "1", "--json", home=home)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    best = [s["best_score"] for s in result["steps"]]
    assert len(best) == 3 and best == sorted(best) and result["prompt"] == result["steps"][-1]["best_text"]
    history = list(__import__("csv").DictReader(io.StringIO(
        run_embedded("history", str(result["job_id"]), home=home).stdout)))
    assert len(history) >= len(T2I.initial_pool(JobInput(PROMPT.encode(), "p", {}, T2I.paper_settings))) + 1
    renders = {row["artifact_sha256"] for row in history}
    assert "" not in renders and len(renders) == len(history)  # one render per candidate prompt
    summary = json.loads(run_embedded("status", str(result["job_id"]), "--json", home=home).stdout)
    assert summary["task"] == "text-to-image" and summary["settings"]["max_words"] == 40


@pytest.mark.parametrize("args, message", [
    (["t2i", PROMPT], r"text-to-image needs the text-to-image pipeline, diffusers:ID_OR_PATH"),
    (["t2i", PROMPT, "--renderer", "stable-diffusion"], r"unknown renderer 'stable-diffusion'"),
    (["t2i", PROMPT, "--renderer", "diffusers:/no/such/pipeline"], r"'/no/such/pipeline': no such directory"),
    (["t2i", " ", "--renderer", "{pipeline}"], r"prompt.txt: the prompt is empty or too short"),
    (["t2i", "--sample", "chelsea", "--renderer", "{pipeline}"], r"give the PROMPT text"),
    (["t2i", PROMPT, "--renderer", "{pipeline}", "--guidance", "99"], r"guidance must be between 0.0 and 50.0"),
])
def test_bad_t2i_commands_fail_with_one_error_line(pipeline, tmp_path, args, message):
    out = run_embedded(*[a.format(pipeline=pipeline) for a in args], "--llm", FAKE_LLM, home=tmp_path / "home")
    assert_one_error_line(out, message)


def test_the_api_and_pages_show_renders(pipeline, pg, queue_db):
    from web import create_app
    from worker.runner import JobModels, run_in_process
    from worker.models import _from_factory, load_scorer
    from worker.store.db import open_store

    client = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False}).test_client()
    made = client.post("/api/jobs", data={"task": "text-to-image", "prompt": PROMPT, "renderer": pipeline,
                                          "size": "32", "render_steps": "2", "llm": FAKE_LLM, "steps": "1",
                                          "candidates": "3", "top_k": "2"})
    assert made.status_code == 201, made.get_json()
    job = made.get_json()
    assert job["input_info"] == {"prompt": PROMPT} and job["options"]["renderer"] == pipeline
    for _ in run_in_process(open_store(pg), job["id"],
                            lambda g, s: JobModels(_from_factory(g), load_scorer(s))):
        pass
    rows = client.get(f"/api/jobs/{job['id']}/candidates?limit=100").get_json()["candidates"]
    assert rows and all(r["artifact_sha256"] for r in rows)
    render = client.get(f"/api/artifacts/{rows[0]['artifact_sha256']}")
    assert render.mimetype == "image/png" and Image.open(io.BytesIO(render.data)).size == (32, 32)
    page = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert f'src="/artifacts/{rows[0]["artifact_sha256"]}"' in page and PROMPT in page
    assert client.get("/api/artifacts/" + "0" * 64).status_code == 404
    refused = client.post("/api/jobs", data={"task": "text-to-image", "renderer": pipeline})
    assert refused.status_code == 400 and "needs a prompt" in refused.get_json()["error"]["message"]
    no_renderer = client.post("/api/jobs", data={"task": "text-to-image", "prompt": PROMPT})
    assert no_renderer.status_code == 400 and "needs the text-to-image pipeline" in no_renderer.get_json()["error"]["message"]
    assert [j["id"] for j in client.get("/api/jobs").get_json()["jobs"]] == [job["id"]]