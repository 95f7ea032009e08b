"""The OpenAPI description served at /api/openapi.json: web/openapi.yaml, with the settings added
to both request bodies from their declarations (worker.core.settings), the prompt and pool file
uploads to both, and the task enum, the input each kind takes (one of them), the bundled samples'
names and every kind's options and attachments from theirs (worker.kinds, worker.media.samples),
so a setting or an option declared once is described here without another edit."""

from __future__ import annotations

import functools
from importlib.resources import files

import yaml

from worker.core.settings import Setting, shown_on
from worker.kinds import TASK_KINDS, Option, all_options
from worker.kinds.user_files import POOL_FILE_HELP, PROMPT_FILE_HELP
from worker.media.samples import SAMPLES

_JSON_TYPES = {int: "integer", float: "number", str: "string"}


def option_schema(option: Option, kinds: list[str]) -> dict:
    """The JSON schema of one task option (form field) as its first declaration states it."""
    schema: dict = {"type": "string" if option.choices else _JSON_TYPES[option.type]}
    if option.choices:
        schema["enum"] = list(option.choices)
    if option.low is not None:
        schema["minimum"] = option.low
    if option.high is not None:
        schema["maximum"] = option.high
    if option.default is not None:
        schema["default"] = option.default
    required = " (required)" if option.required else ""
    schema["description"] = f"{', '.join(kinds)}: {option.help}{required}."
    return schema


def setting_schema(setting: Setting, *, batch: bool) -> dict:
    """The JSON schema of one setting (form field) of a new job's or, `batch`, a batch's request body."""
    schema: dict = {"type": _JSON_TYPES[setting.type]}
    if setting.low is not None:
        schema["exclusiveMinimum" if setting.low_open else "minimum"] = setting.low
    if setting.number_high is not None:
        schema["maximum"] = setting.number_high
    if setting.show_default and not batch:
        schema["default"] = setting.default
    description = setting.wording("batch_api" if batch else "api")
    if description:
        schema["description"] = description
    return schema


def input_schemas() -> list[dict]:
    """What a new job's input is, per kind (POST /api/jobs, one of them): a media kind's upload
    `file` or bundled `sample`, exactly one (an empty `sample` is none); a text kind's `prompt`
    (not blank), and arithmetic's `parts` and `text` lines, neither with a file or a sample. Only
    what web.submission refuses, so a request outside all of them is a 400."""
    media = [kind.name for kind in TASK_KINDS.values() if kind.input_kind not in ("text", "parts")]
    text, parts = ([kind.name for kind in TASK_KINDS.values() if kind.input_kind == what] for what in ("text", "parts"))
    neither = {"file": False, "sample": {"const": ""}}
    return [
        {"title": "file", "description": f"{', '.join(media)} (task left out: image-caption): an upload.",
         "required": ["file"], "properties": {"task": {"enum": media}, "sample": {"const": ""}}},
        {"title": "sample", "description": f"{', '.join(media)}: a bundled sample.",
         "required": ["sample"],
         "properties": {"task": {"enum": media}, "sample": {"enum": list(SAMPLES)}, "file": False}},
        {"title": "prompt", "description": f"{', '.join(text)}: a prompt.", "required": ["task", "prompt"],
         "properties": {"task": {"enum": text}, "prompt": {"pattern": r"\S"}, **neither}},
        {"title": "parts", "description": f"{', '.join(parts)}: parts, text lines or both.",
         "required": ["task"], "properties": {"task": {"enum": parts}, **neither},
         "anyOf": [{"required": ["parts"]}, {"required": ["text"]}]},
    ]


def _request_form(spec: dict, path: str) -> dict:
    return spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]


@functools.cache
def openapi_description() -> dict:
    spec = yaml.safe_load((files("web") / "openapi.yaml").read_text("utf-8"))
    for path, batch in (("/api/jobs", False), ("/api/batches", True)):
        for setting in shown_on("api"):
            _request_form(spec, path)["properties"][setting.name] = setting_schema(setting, batch=batch)
    for path in ("/api/jobs", "/api/batches"):
        for name, help_text in (("prompt_file", PROMPT_FILE_HELP), ("pool_file", POOL_FILE_HELP)):
            _request_form(spec, path)["properties"][name] = {"type": "string", "format": "binary",
                                                             "description": help_text}
    form = _request_form(spec, "/api/jobs")
    form["properties"]["task"]["enum"] = list(TASK_KINDS)
    form["properties"]["sample"]["enum"] = ["", *SAMPLES]
    form["oneOf"] = input_schemas()
    for name, (option, kinds) in all_options().items():
        form["properties"][name] = option_schema(option, kinds)
    for kind in TASK_KINDS.values():
        for name, what in kind.attachments.items():
            form["properties"][f"{name}_file"] = {"type": "string", "format": "binary",
                                                  "description": f"{kind.name}: {what} (or {name}_sample)."}
            form["properties"][f"{name}_sample"] = {"type": "string",
                                                    "description": f"{kind.name}: a bundled photo as {what}."}
    return spec
