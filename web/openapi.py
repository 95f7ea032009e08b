"""The OpenAPI description served at /api/openapi.json: web/openapi.yaml, with the task enum and
every kind's options and attachments added from their declarations (worker.kinds), so an option
declared on its kind is described here without another edit."""

from __future__ import annotations

import functools
from importlib.resources import files

import yaml

from worker.kinds import TASK_KINDS, Option, all_options

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


@functools.cache
def openapi_description() -> dict:
    spec = yaml.safe_load((files("web") / "openapi.yaml").read_text("utf-8"))
    form = spec["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    form["properties"]["task"]["enum"] = list(TASK_KINDS)
    for name, (option, kinds) in all_options().items():
        form["properties"][name] = option_schema(option, kinds)
    for kind in TASK_KINDS.values():
        for name, what in kind.attachments.items():
            form["properties"][f"{name}_file"] = {"type": "string", "format": "binary",
                                                  "description": f"{kind.name}: {what} (or {name}_sample)."}
            form["properties"][f"{name}_sample"] = {"type": "string",
                                                    "description": f"{kind.name}: a bundled photo as {what}."}
    return spec
