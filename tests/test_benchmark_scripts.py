"""The benchmark scripts (benchmarks/*.py) cannot rot unseen: each one imports without running,
imports no heavy library at import time (torch, transformers, numpy, psycopg, ... are imported
inside the functions that use them), and answers `--help` with its usage, exit status 0. One
benchmark runs, in its tiny mode: gpu_e2e.py, whose GPU run happens where no test can watch it.
`_common.throwaway_database`, which the scripts share to make their PostgreSQL databases, is
checked against the real local server like the rest of the suite."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
HEAVY = ("torch", "transformers", "numpy", "scipy", "PIL", "psycopg", "psutil", "sqlalchemy", "flask",
         "sentence_transformers", "xllamacpp", "pycocoevalcap", "worker", "web")


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")


@pytest.fixture(scope="module")
def help_runs() -> dict[str, subprocess.CompletedProcess]:
    """`python benchmarks/X.py --help` for every script, a few at a time (each is a fresh interpreter)."""
    def run(script: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, env=_env(), capture_output=True,
                              text=True, timeout=60)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip((s.name for s in SCRIPTS), pool.map(run, SCRIPTS)))


def test_the_scripts_are_found():
    assert len(SCRIPTS) >= 10, SCRIPTS
    assert (BENCHMARKS / "_common.py").exists()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help(script, help_runs):
    out = help_runs[script.name]
    assert out.returncode == 0, f"{script.name} --help: exit {out.returncode}\n{out.stderr[-3000:]}"
    assert out.stdout.startswith(f"usage: {script.name}"), out.stdout[:500]
    assert "--help" in out.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_imports_without_running(script, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts put benchmarks/ on sys.path
    monkeypatch.delitem(sys.modules, "_common", raising=False)
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"


def test_no_heavy_library_at_import_time():
    """Importing a script loads only the standard library and _common, so `--help` stays fast."""
    code = (
        "import importlib.util, json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "found = {}\n"
        "for path in sys.argv[1:]:\n"
        "    before = set(sys.modules)\n"
        "    spec = importlib.util.spec_from_file_location('b_' + path.rsplit('/', 1)[-1][:-3], path)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "    new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "    found[path] = sorted(new & set(heavy))\n"
        "print(json.dumps(found))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *map(str, SCRIPTS)], cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = {Path(path).name: mods for path, mods in json.loads(out.stdout).items() if mods}
    assert loaded == {}, f"heavy libraries imported at import time: {loaded}"


def test_throwaway_database_is_made_and_dropped():
    psycopg = pytest.importorskip("psycopg")
    monkey_path = list(sys.path)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        sys.modules.pop("_common", None)
        import _common
    finally:
        sys.path[:] = monkey_path
        sys.modules.pop("_common", None)

    name = f"mils_bench_test_{uuid.uuid4().hex[:12]}"

    def exists() -> bool:
        with psycopg.connect(f"{_common.PG_SERVER}/postgres", autocommit=True) as admin:
            return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    with pytest.raises(RuntimeError, match="inside"):
        with _common.throwaway_database(name) as url:
            assert url.startswith("postgresql+psycopg://") and url.endswith(f"/{name}")
            assert exists()
            left_open = psycopg.connect(_common.libpq_url(url))  # an open connection does not stop the drop
            left_open.execute("CREATE TABLE t (x int)")
            left_open.commit()
            raise RuntimeError("a failure inside the block")
    assert not exists()
    left_open.close()

    with _common.throwaway_database(name, upgrade=True) as url:  # the schema, by the migrations
        with psycopg.connect(_common.libpq_url(url)) as conn:
            assert conn.execute("SELECT to_regclass('jobs')").fetchone()[0] == "jobs"
    assert not exists()


@pytest.mark.slow
def test_gpu_e2e_tiny_runs_a_real_worker_against_transformers_serve(tmp_path, mils_home):
    """gpu_e2e.py --tiny: `transformers serve` with a tiny random Llama, real `mils worker`s at 1 and
    2 jobs in flight; every level reports throughput and a step's time split, from the store."""
    out = tmp_path / "gpu_e2e.json"
    run = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_e2e.py"), "--tiny", "--home", str(tmp_path / "home"),
                          "--tokenizer", str(mils_home / "gpu-e2e-tokenizer"), "--port", "18449", "--out", str(out)],
                         cwd=ROOT, env=dict(_env(), MILS_HOME=str(mils_home)), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["tiny"] and data["llm"].startswith("openai:") and data["scorer"].endswith("@random")
    assert [level["in_flight"] for level in data["levels"]] == [1, 2]
    for level in data["levels"]:
        assert level["jobs"] == level["succeeded"] == level["in_flight"]
        assert level["steps_recorded"] == 2 * level["jobs"]  # the bootstrap and one step each
        for field in ("images_per_hour", "seconds_per_image", "prompt_tokens_per_image",
                      "completion_tokens_per_image", "completion_tokens_per_second", "llm_requests_per_step"):
            assert level[field] > 0, (field, level)
        split = level["per_step"]
        assert split["step_seconds"] > 0 and split["llm_seconds"] > 0
        assert split["llm_seconds"] + split["scoring_seconds"] <= split["step_seconds"] + 1e-3, split
    assert "| in flight |" in run.stdout


def test_compare_intervals_agrees_with_a_stored_comparison_and_catches_a_changed_one(tmp_path):
    """The stored comparison of BENCHMARKS.md rechecked with scipy directly; an interval moved by a
    hundredth is reported, exit status 1."""
    stored = BENCHMARKS / "results" / "compare_ours_own.json"
    script = [sys.executable, str(BENCHMARKS / "compare_intervals.py")]
    same = subprocess.run([*script, str(stored)], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.count(": equal") == 2 and "DIFFERENT" not in same.stdout
    changed = json.loads(stored.read_text())
    changed["paired"][0]["metrics"]["METEOR"]["low"] -= 0.01
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    moved = subprocess.run([*script, str(tmp_path / "changed.json")], cwd=ROOT, env=_env(), capture_output=True,
                           text=True, timeout=120)
    assert moved.returncode == 1 and "METEOR" in moved.stdout and "DIFFERENT" in moved.stdout
