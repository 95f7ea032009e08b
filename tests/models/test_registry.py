"""The model registry (worker.models.registry): the file's checks, each naming the file and the
line, and the one rule by which a name or a raw spec becomes the spec a job runs; `mils models`."""

from __future__ import annotations

import pytest

from tests.support.services import mils_env, run_mils
from worker.models import ModelLoadError
from worker.models.registry import RegistryError, load_registry, parse_registry, resolve

GOOD = """\
[generators.llama-8b]
spec = "openai:meta-llama/Llama-3.1-8B-Instruct@http://gpu1:8000/v1"
description = "Llama 3.1 8B on gpu1"
queue = "gpu"

[scorers.siglip]
spec = "open_clip:ViT-SO400M-14-SigLIP@webli"

[renderers.sd-turbo]
spec = "diffusers:stabilityai/sd-turbo"
"""


def test_a_registry_names_specs_and_embedded_is_built_in():
    models = parse_registry(GOOD)
    assert [(e.role, e.name) for e in models.entries] == [
        ("generator", "embedded"), ("scorer", "embedded"), ("generator", "llama-8b"), ("scorer", "siglip"),
        ("renderer", "sd-turbo")]
    llama = models.get("generator", "llama-8b")
    assert (llama.spec, llama.description, llama.queue) == (
        "openai:meta-llama/Llama-3.1-8B-Instruct@http://gpu1:8000/v1", "Llama 3.1 8B on gpu1", "gpu")
    assert models.engine_urls() == {"http://gpu1:8000/v1"}
    assert [e.name for e in load_registry(None).entries] == ["embedded", "embedded"]


@pytest.mark.parametrize("text, message", [
    ("[generators.a\nspec = 'x'", r"registry\.toml: not TOML: .*line 1"),
    ("[generators.a]\nspec = 'embedded'\n\n[generators.b]\nsepc = 'embedded'\n",
     r"registry\.toml:4: \[generators\.b\]: unknown key sepc"),
    ("[scorers.bad]\nspec = 'clip:nothing'\n", r"registry\.toml:1: \[scorers\.bad\]: unknown scorer 'clip:nothing'"),
    ("\n[generators.local]\nspec = 'gguf:/no/such/file.gguf'\n", r"registry\.toml:2: .*no such file"),
    ("[generators.'my model']\nspec = 'embedded'\n", r"registry\.toml:1: \[generators\.my model\]: a name is letters"),
    ("[generators.x]\ndescription = 'no spec'\n", r"\[generators\.x\]: no spec"),
    ("[generators.embedded]\nspec = 'openai:m@http://h/v1'\n", r"'embedded' is built in"),
    ("[generators.x]\nspec = 'embedded'\nqueue = 'a queue'\n", r"queue 'a queue'"),
    ("[llms.x]\nspec = 'embedded'\n", r"unknown table \[llms\]"),
    ("[renderers.x]\nspec = 'openai:m@http://h/v1'\n", r"unknown renderer"),
])
def test_a_malformed_registry_is_refused_naming_the_file_and_the_line(tmp_path, text, message):
    path = tmp_path / "registry.toml"
    path.write_text(text)
    with pytest.raises(RegistryError, match=message):
        load_registry(path)


def test_names_resolve_and_raw_specs_only_where_allowed():
    models = parse_registry(GOOD)
    assert resolve("generator", "llama-8b", raw_allowed=False, models=models) == (
        "llama-8b", "openai:meta-llama/Llama-3.1-8B-Instruct@http://gpu1:8000/v1")
    assert resolve("scorer", "embedded", raw_allowed=False, models=models) == ("embedded", "embedded")
    with pytest.raises(ModelLoadError, match=r"'siglip' is not a model this server offers; known: embedded, llama-8b"):
        resolve("generator", "siglip", raw_allowed=False, models=models)  # a scorer's name is no generator
    with pytest.raises(ModelLoadError, match="not a model this server offers"):
        resolve("generator", "openai:m@http://gpu1:8000/v1", raw_allowed=False, models=models)
    # The operator's own command line (raw_allowed, not shared): any spec, as before.
    assert resolve("generator", "py:os:getpid", raw_allowed=True, models=models) == (None, "py:os:getpid")


@pytest.mark.parametrize("role, spec", [
    ("generator", "py:os:getpid"), ("generator", "gguf:/etc/passwd"), ("generator", "/etc"),
    ("generator", "./models/llm"), ("generator", "~/llm"), ("generator", "org/../../etc"),
    ("scorer", "open_clip:ViT-B-32@/etc/passwd"), ("scorer", "open_clip:/etc/arch.json"),
    ("scorer", "clap:/etc"), ("renderer", "diffusers:/etc"), ("scorer", "py:tests.support.fakes:worker_scorer"),
    ("generator", "openai:x@http://169.254.169.254/latest"), ("generator", "openai:x@http://gpu1:8001/v1"),
])
def test_a_shared_server_refuses_files_code_and_unnamed_engines_even_where_raw_specs_are_allowed(role, spec):
    with pytest.raises(ModelLoadError, match="shared server takes no py: specs and no file paths|not an engine the "
                                             "registry names"):
        resolve(role, spec, raw_allowed=True, shared=True, models=parse_registry(GOOD))


def test_a_shared_server_takes_from_admins_a_hub_id_or_another_model_on_a_named_engine():
    models = parse_registry(GOOD)
    for role, spec in [("generator", "openai:other-model@http://gpu1:8000/v1/"), ("scorer", "open_clip:ViT-B-32@openai"),
                       ("generator", "meta-llama/Llama-3.1-8B-Instruct"), ("renderer", "diffusers:org/model")]:
        assert resolve(role, spec, raw_allowed=True, shared=True, models=models) == (None, spec)


def test_mils_models_lists_the_registry_and_refuses_a_malformed_one(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(GOOD)
    env = mils_env(home=tmp_path / "home", database_url="", broker_url="", MILS_MODELS=str(path))
    out = run_mils("models", env=env)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines() if not line.startswith("#")]
    assert ["llama-8b", "generator", "openai:meta-llama/Llama-3.1-8B-Instruct@http://gpu1:8000/v1", "gpu",
            "Llama 3.1 8B on gpu1"] in rows
    assert ["siglip", "scorer", "open_clip:ViT-SO400M-14-SigLIP@webli", "-", ""] in rows
    assert [r[:2] for r in rows][:2] == [["embedded", "generator"], ["embedded", "scorer"]]

    path.write_text(GOOD + "\n[scorers.broken]\nspec = 'clip:x'\n")
    for command in (["models"], ["worker", "--queues", "default"]):
        out = run_mils(*command, env=env)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        assert f"Error: {path}:12: [scorers.broken]: unknown scorer 'clip:x'" in out.stderr, out.stderr


def test_the_command_line_takes_registry_names_beside_raw_specs(tmp_path):
    import json

    path = tmp_path / "models.toml"
    path.write_text('[generators.scripted]\nspec = "py:tests.support.fakes:worker_generator"\n')
    env = mils_env(home=tmp_path / "home", database_url="", broker_url="", MILS_MODELS=str(path))
    env = {k: v for k, v in env.items() if k not in ("MILS_DATABASE_URL", "MILS_BROKER_URL")}
    out = run_mils("submit", "--sample", "chelsea", "--llm", "scripted", "--scorer",
                   "py:tests.support.fakes:worker_scorer", "--steps", "1", env=env)
    assert out.returncode == 0, out.stderr
    status = json.loads(run_mils("status", out.stdout.strip(), "--json", env=env).stdout)
    assert (status["generator_name"], status["generator"]) == ("scripted", "py:tests.support.fakes:worker_generator")
    assert (status["scorer_name"], status["scorer"]) == (None, "py:tests.support.fakes:worker_scorer")
