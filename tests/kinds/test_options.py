"""An option is declared once, on its kind, and appears everywhere: the CLI's --help, the web form,
the API's validation and the OpenAPI description. The test adds an option to the video kind in a
fresh process (the CLI, the form and the description are built from the kinds when imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in its own process: declare the option, then build the CLI and the web app.
SCRIPT = r'''
import json, os, re
from worker.kinds import Option, TASK_KINDS
TASK_KINDS["video-caption"].options["shutter_steps"] = Option(
    3, "shutter steps of the test camera", low=1, high=9)

from click.testing import CliRunner
from worker.cli import cli
from web import create_app
from worker.store.db import open_store

found = {}
runner = CliRunner()
found["cli_help"] = runner.invoke(cli, ["caption-video", "--help"]).output
found["cli_other_help"] = runner.invoke(cli, ["caption", "--help"]).output
found["cli_wrong_kind"] = runner.invoke(cli, ["submit", "--sample", "chelsea", "--shutter-steps", "2"]).output

app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
client = app.test_client()
found["form"] = client.get("/jobs/new").get_data(as_text=True)
spec = client.get("/api/openapi.json").get_json()
found["openapi"] = spec["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"].get("shutter_steps")
fakes = {"llm": "py:tests.support.fakes:worker_generator", "scorer": "py:tests.support.fakes:worker_scorer"}
bad = client.post("/api/jobs", data={"task": "video-caption", "sample": "chelsea", "shutter_steps": "12", **fakes})
found["api_bad"] = [bad.status_code, bad.get_json()["error"]["message"]]
wrong = client.post("/api/jobs", data={"task": "image-caption", "sample": "chelsea", "shutter_steps": "2", **fakes})
found["api_wrong_kind"] = [wrong.status_code, wrong.get_json()["error"]["message"]]
good = client.post("/api/jobs", data={"task": "video-caption", "sample": "chelsea", "shutter_steps": "5", **fakes})
found["api_good"] = [good.status_code, good.get_json()["options"]]
default = client.post("/api/jobs", data={"task": "video-caption", "sample": "chelsea", **fakes})
found["api_default"] = default.get_json()["options"]
page = client.post("/jobs/new", data={"task": "video-caption", "sample": "chelsea", "shutter_steps": "0",
                                      "steps": "1", **fakes})
found["form_bad"] = [page.status_code, page.get_data(as_text=True)]
print(json.dumps(found))
'''


def test_an_option_declared_on_its_kind_appears_in_the_cli_the_form_the_api_and_openapi(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILS_")}
    env.update(MILS_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])

    # The CLI: shown with its help and default for its own kind, refused by name for another.
    assert "--shutter-steps INTEGER" in found["cli_help"]
    assert "Shutter steps of the test camera (default 3)." in " ".join(found["cli_help"].split())
    assert "--shutter-steps" not in found["cli_other_help"]
    assert "--shutter-steps is for --task video-caption" in found["cli_wrong_kind"]

    # The form: a field with its label, bounds and help, shown only for video captioning.
    form = found["form"]
    assert 'id="shutter_steps"' in form and 'data-task="video-caption"' in form
    assert "Shutter steps of the test camera." in form

    # The API: checked by the kind (bounds, which kind has it) and stored with its default.
    assert found["api_bad"][0] == 400 and "shutter_steps must be between 1 and 9" in found["api_bad"][1]
    assert found["api_wrong_kind"] == [400, "image-caption has no option shutter_steps"]
    assert found["api_good"][0] == 201 and found["api_good"][1]["shutter_steps"] == 5
    assert found["api_default"]["shutter_steps"] == 3

    # The form refuses an out-of-range value next to the field, before anything is stored.
    assert found["form_bad"][0] == 400 and "Number must be between 1 and 9" in found["form_bad"][1]

    # The OpenAPI description.
    assert found["openapi"] == {"type": "integer", "minimum": 1, "maximum": 9, "default": 3,
                                "description": "video-caption: shutter steps of the test camera."}
