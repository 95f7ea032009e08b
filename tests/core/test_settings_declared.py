"""A setting is declared once, on its Settings field, and appears on every surface it names: the
CLI's --help (a job's and a batch's), the web forms (a job's and a batch's), the API's validation
(a job's and a batch's) and the OpenAPI description (both request bodies). The test appends fields
to Settings in a fresh process, before the kinds, the CLI and the web app are built from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in its own process: declare the settings, then build the kinds, the CLI and the web app.
SCRIPT = r'''
import dataclasses, io, json, re, zipfile
import worker.core
from worker.core import settings as declared

@dataclasses.dataclass(frozen=True)
class Settings(declared.Settings):
    # Made-up settings, declared as the real ones are: one on every surface, one on the CLI only.
    shutter_steps: int = declared.declare(3, "Shutter steps of the test camera.", low=1, high=9,
                                          surfaces=declared.SURFACES, label="Shutter steps")
    shutter_speed: float = declared.declare(0.5, "Shutter speed of the test camera.", low=0, low_open=True,
                                            surfaces=("cli",))

Settings.__qualname__ = Settings.__name__
declared.Settings = worker.core.Settings = Settings

from click.testing import CliRunner
from PIL import Image
from worker.cli import cli
from worker.kinds import TASK_KINDS
from web import create_app

found = {"paper_default": TASK_KINDS["image-caption"].paper_settings.to_dict()}
try:
    Settings(shutter_steps=10)
except declared.SettingsError as exc:
    found["settings_bad"] = str(exc)
runner = CliRunner()
found["cli_help"] = runner.invoke(cli, ["caption", "--help"], terminal_width=200).output
found["cli_batch_help"] = runner.invoke(cli, ["batch", "submit", "--help"], terminal_width=200).output
fakes = {"llm": "py:tests.support.fakes:worker_generator", "scorer": "py:tests.support.fakes:worker_scorer"}
bad_cli = runner.invoke(cli, ["caption", "--sample", "chelsea", "--shutter-steps", "0",
                              "--llm", fakes["llm"], "--scorer", fakes["scorer"]])
found["cli_bad"] = [bad_cli.exit_code, bad_cli.output]

app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
client = app.test_client()
found["form"] = client.get("/jobs/new").get_data(as_text=True)
found["batch_form"] = client.get("/batches/new").get_data(as_text=True)
spec = client.get("/api/openapi.json").get_json()
bodies = {path: spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
          for path in ("/api/jobs", "/api/batches")}
found["openapi"] = {path: [props.get("shutter_steps"), "shutter_speed" in props] for path, props in bodies.items()}

bad = client.post("/api/jobs", data={"sample": "chelsea", "shutter_steps": "12", **fakes})
found["api_bad"] = [bad.status_code, bad.get_json()["error"]["message"]]
good = client.post("/api/jobs", data={"sample": "chelsea", "shutter_steps": "5", **fakes})
found["api_good"] = [good.status_code, good.get_json()["settings"]]
default = client.post("/api/jobs", data={"sample": "chelsea", **fakes})
found["api_default"] = default.get_json()["settings"]

png = io.BytesIO()
Image.new("RGB", (64, 48), "red").save(png, format="PNG")
archive = io.BytesIO()
with zipfile.ZipFile(archive, "w") as zipped:
    zipped.writestr("red.png", png.getvalue())

def batch(**fields):
    data = {"name": "shutter", "archive": (io.BytesIO(archive.getvalue()), "photos.zip"), **fakes, **fields}
    return client.post("/api/batches", data=data, content_type="multipart/form-data")

bad_batch = batch(shutter_steps="0")
found["batch_bad"] = [bad_batch.status_code, bad_batch.get_json()["error"]["message"]]
good_batch = batch(shutter_steps="7")
found["batch_good"] = [good_batch.status_code, good_batch.get_json()["settings"]]

page = client.post("/jobs/new", data={"sample": "chelsea", "shutter_steps": "0", **fakes})
found["form_bad"] = [page.status_code, page.get_data(as_text=True)]
print(json.dumps(found))
'''


def test_a_setting_declared_on_its_field_appears_in_the_cli_the_forms_the_api_and_openapi(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILS_")}
    env.update(MILS_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore",
               OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])

    # The dataclass: the task kinds' defaults carry it, and its bounds are checked with its message.
    assert found["paper_default"]["shutter_steps"] == 3 and found["paper_default"]["shutter_speed"] == 0.5
    assert found["settings_bad"] == "shutter_steps must be between 1 and 9"

    # The CLI: both on a job's command and a batch's, with their help; a bad value is refused.
    for help_text in (found["cli_help"], found["cli_batch_help"]):
        assert "--shutter-steps INTEGER" in help_text and "Shutter steps of the test camera." in help_text
        assert "--shutter-speed FLOAT" in help_text and "Shutter speed of the test camera." in help_text
    assert found["cli_bad"][0] != 0 and "shutter_steps must be between 1 and 9" in found["cli_bad"][1]

    # The forms: a field with its label and bounds in each; the CLI-only setting in neither.
    for form in (found["form"], found["batch_form"]):
        assert '<label for="shutter_steps">Shutter steps</label>' in form
        assert '<input id="shutter_steps" max="9" min="1" name="shutter_steps" type="number"' in form
        assert "shutter_speed" not in form
    assert found["form_bad"][0] == 400 and "Number must be between 1 and 9" in found["form_bad"][1]

    # The API: an out-of-bounds value is a 400 with the setting's message, a good one is stored,
    # and an unset one is the declared default.
    assert found["api_bad"][0] == 400 and "shutter_steps must be between 1 and 9" in found["api_bad"][1]
    assert found["api_good"][0] == 201 and found["api_good"][1]["shutter_steps"] == 5
    assert found["api_default"]["shutter_steps"] == 3
    assert found["batch_bad"][0] == 400 and "shutter_steps must be between 1 and 9" in found["batch_bad"][1]
    assert found["batch_good"][0] == 201 and found["batch_good"][1]["shutter_steps"] == 7

    # The OpenAPI description: both request bodies, without the CLI-only setting.
    schema = {"type": "integer", "minimum": 1, "maximum": 9, "description": "Shutter steps of the test camera."}
    assert found["openapi"] == {"/api/jobs": [schema, False], "/api/batches": [schema, False]}
