"""The layering of the code (pyproject.toml, [tool.importlinter]) holds: `lint-imports` keeps
every contract. .ci/run runs it too, before the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_contract_is_kept():
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert command, "lint-imports is not installed (pip install -e '.[test]')"
    out = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout and "6 kept" in out.stdout, out.stdout[-2000:]


def test_no_module_is_in_an_import_circle():
    """import-linter's acyclic_siblings contract does not see a package importing its own modules
    (e.g. a package's registry and its adapters importing each other); this looks at every
    direct import a -> b and asks grimp for a chain b -> ... -> a."""
    import grimp

    graph = grimp.build_graph("worker", "web")
    circle = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            if graph.find_shortest_chain(importer=imported, imported=importer):
                circle |= {importer, imported}
    assert not circle, f"modules in an import circle: {sorted(circle)}"


# A job's status and lease fields: worker.jobs alone writes them.
LEASE_FIELDS = {"status", "error", "finished_at", "started_at", "worker", "heartbeat_at", "attempts", "attempt_step",
                "auto_resumes", "queued_at", "cancel_requested"}


def _lease_writes(path: Path) -> list[str]:
    """Where the module writes a job's status or lease field: `x.FIELD = ...` (or +=, or in a
    tuple), `Job(FIELD=...)`, `update(Job)....values(FIELD=...)`. A field that other tables have
    too (a batch item's error, a step's finish time) counts only on a name that says job."""
    import ast

    from worker.store.schema import Job

    others = {name for table in Job.metadata.tables.values() if table.name != "jobs" for name in table.columns.keys()}
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = {ast.Assign: lambda n: n.targets, ast.AugAssign: lambda n: [n.target],
                   ast.AnnAssign: lambda n: [n.target]}.get(type(node), lambda n: [])(node)
        for target in [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]:
            if isinstance(target, ast.Attribute) and target.attr in LEASE_FIELDS:
                owner = ast.unparse(target.value)
                if target.attr not in others or "job" in owner.lower():
                    found.append(f"{path}:{node.lineno}: {owner}.{target.attr}")
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            if called == "Job" or (called.endswith(".values") and "Job" in called):
                found += [f"{path}:{node.lineno}: {called}({kw.arg}=...)" for kw in node.keywords
                          if kw.arg in LEASE_FIELDS]
    return found


def test_one_module_writes_a_jobs_status_and_lease_fields():
    modules = sorted([*ROOT.joinpath("worker").rglob("*.py"), *ROOT.joinpath("web").rglob("*.py")])
    writers = {str(p.relative_to(ROOT)) for p in modules for _ in _lease_writes(p)[:1]}
    assert writers == {"worker/jobs.py"}, [w for p in modules if p.name != "jobs.py" or p.parent.name != "worker"
                                           for w in _lease_writes(p)]
    # The check itself sees a write outside it: the old store's own status setter.
    sample = ROOT / "tests" / "data" / "lease_write_sample.py"
    assert _lease_writes(sample) == [f"{sample}:4: job.status", f"{sample}:5: job.queued_at",
                                     f"{sample}:5: job.worker", f"{sample}:6: update(Job).where(Job.id == 1).values"
                                                                  "(heartbeat_at=...)"]
