"""The schema is made once when ten `mils` processes start together on an empty database.

SQLite: on a MILS_HOME without a database, two `mils worker`, `mils web`, four `mils submit
--sample chelsea`, two `mils batch submit` and `mils db upgrade` all find no schema and make it
(the embedded default migrates itself; a new file is also switched to WAL by every process that
opens it). PostgreSQL: on an empty database, where the commands refuse a schema behind the code
and only `mils db upgrade` (or a caller's `open_store(auto_upgrade=True)`) makes it, seven
`mils db upgrade` and three processes that open the store with auto_upgrade start together.

Each process runs the `mils` command's own entry point (`worker.cli.main`, what the console script
calls) through a small launcher that first imports what the commands import, says it is ready and
waits for a start file: the ten reach the schema check within milliseconds of each other, so a
race a person hits now and then (`mils worker &` then `mils submit` at once) happens on nearly
every run. The launcher also writes down every migration Alembic runs (from its "Running upgrade"
log lines), so the test can check that each migration ran exactly once across all the processes.

The home starts empty: the embedded broker's queue file beside the database is made by the
processes too, under its own lock (worker.celery_app.prepare_sqlite_queue; kombu's SQLite transport
alone inserted a queue's row twice: "UNIQUE constraint failed: kombu_queue.name").

Checked: every command exits 0 and the worker and the web app go on (the web app answers, the
workers run every submitted job to the end and stop cleanly), no output holds a traceback,
alembic_version has one row, at head, and each migration ran once. And a process that finds the
schema at head does not wait for the lock.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from alembic.script import ScriptDirectory
from PIL import Image

from tests.support.services import ROOT, free_port, query, wait_for
from worker.store.db import alembic_config

FAKES = ["--llm", "py:tests.support.fakes:worker_generator", "--scorer", "py:tests.support.fakes:worker_scorer"]
JOB = ["--steps", "1", "--candidates", "4", "--top-k", "3", *FAKES]

# argv: READY START RECORD MODE ARGS...; MODE "mils" runs `mils ARGS`, MODE "open_store" opens
# the store of MILS_DATABASE_URL with auto_upgrade=True and reads from it.
LAUNCHER = r"""
import logging, os, re, sys, time

ready, start, record, mode, *args = sys.argv[1:]


class Record(logging.Handler):
    def emit(self, entry):
        found = re.match(r"Running upgrade .*?-> (\w+)", entry.getMessage())
        if found:  # the revision it went to
            with open(record, "a") as out:
                out.write(found.group(1) + "\n")


migrations = logging.getLogger("alembic.runtime.migration")
migrations.setLevel(logging.INFO)
migrations.addHandler(Record())
migrations.propagate = False

# What the commands import before they look at the schema, so that none is still importing.
import sqlalchemy, alembic.command, filelock, waitress
import worker.cli, worker.store.db, worker.celery_app, worker.submission, worker.batches, worker.datasets
import worker.media.samples, worker.models, tests.support.fakes, web

open(ready, "w").close()
while not os.path.exists(start):
    time.sleep(0.002)
if mode == "open_store":
    from sqlalchemy import text
    from worker.store.db import open_store

    with open_store(auto_upgrade=True)() as session:
        print("jobs:", session.execute(text("SELECT count(*) FROM jobs")).scalar_one())
    sys.exit(0)
sys.argv = ["mils", *args]
sys.exit(worker.cli.main())
"""


class Process:
    """One launched process, logging stdout and stderr to a file."""

    def __init__(self, name: str, folder: Path, env: dict[str, str], mode: str, *args: str) -> None:
        self.name = name
        self.log = folder / f"{name}.log"
        self.ready = folder / f"{name}.ready"
        self.record = folder / f"{name}.migrations"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, str(self.ready), str(folder / "start"), str(self.record), mode,
                 *args],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def migrations(self) -> list[str]:
        return self.record.read_text().splitlines() if self.record.exists() else []

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, signum: int, timeout: float = 30) -> int | None:
        """Send `signum` and wait for the exit; SIGKILL and None if it does not come."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return None
        return self.proc.returncode


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILS_")}
    env.update(MILS_HOME=str(home), PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1", MILS_FAKE_STEP_SECONDS="0", MILS_REAP_SECONDS="1")
    env.update(extra)
    return env


def logs(processes: list[Process]) -> str:
    return "\n".join(f"===== {p.name} (pid {p.proc.pid}, rc {p.proc.poll()})\n{p.text()[-6000:]}" for p in processes)


def start_together(processes: list[Process], folder: Path) -> None:
    """Wait until every process is ready at the barrier, then open it for all at once."""
    def all_ready() -> bool:
        for p in processes:
            if not p.alive() and not p.ready.exists():
                raise AssertionError(f"{p.name} exited before the start:\n{p.text()}")
        return all(p.ready.exists() for p in processes)

    wait_for("every process to be ready", all_ready, timeout=120, interval=0.05,
             on_timeout=lambda: logs(processes))
    (folder / "start").touch()


def finish(processes: list[Process], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for p in processes:
        try:
            p.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{p.name} did not finish in {timeout:.0f}s:\n{logs(processes)}") from None


def assert_made_once(processes: list[Process], revision_rows: list[tuple], url: str) -> None:
    """alembic_version holds one row, at head, and every migration ran once in all the processes."""
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    assert revision_rows == [(head,)], revision_rows
    expected = sorted(r.revision for r in script.walk_revisions())
    ran = sorted(revision for p in processes for revision in p.migrations())
    assert ran == expected, f"migrations run (each should run once): {ran}\n{logs(processes)}"


def assert_no_traceback(processes: list[Process]) -> None:
    for p in processes:
        assert "Traceback" not in p.text(), f"{p.name}:\n{p.text()}"


def write_images(folder: Path, n: int = 2) -> Path:
    folder.mkdir()
    for i in range(n):
        buffer = io.BytesIO()
        Image.new("RGB", (24, 16), (40 * i, 200 - 30 * i, 90)).save(buffer, "PNG")
        (folder / f"img{i}.png").write_bytes(buffer.getvalue())
    return folder


def test_ten_processes_make_the_sqlite_schema_once(tmp_path):
    home = tmp_path / "home"
    assert not home.exists()
    images = write_images(tmp_path / "images")
    port = free_port()
    env = base_env(home)
    processes: list[Process] = []
    try:
        def launch(name: str, *args: str) -> Process:
            processes.append(Process(name, tmp_path, env, "mils", *args))
            return processes[-1]

        workers = [launch(f"worker{i}", "worker", "--name", f"race{i}@%h") for i in range(2)]
        web = launch("web", "web", "--port", str(port), "--threads", "2")
        submits = [launch(f"submit{i}", "submit", "--sample", "chelsea", "--seed", str(i), *JOB) for i in range(4)]
        batches = [launch(f"batch{i}", "batch", "submit", f"b{i}", str(images), *JOB) for i in range(2)]
        upgrade = launch("upgrade", "db", "upgrade")
        commands = [*submits, *batches, upgrade]
        assert len(processes) == 10
        start_together(processes, tmp_path)

        finish(commands)
        for p in commands:
            assert p.proc.returncode == 0, f"{p.name} exited {p.proc.returncode}:\n{p.text()}"
        assert all(p.text().strip().splitlines()[-1].isdigit() for p in submits), logs(submits)
        for i, p in enumerate(batches):
            assert f"batch b{i} (made): 2 item(s) queued" in p.text(), p.text()
        assert "schema up to date" in upgrade.text(), upgrade.text()

        def answers() -> bool:
            assert web.alive(), web.text()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                return response.status == 200

        wait_for("the web app to answer", answers, timeout=60, interval=0.2, on_timeout=web.text)

        database = home / "mils.db"

        def all_succeeded() -> bool:
            assert all(w.alive() for w in workers), logs(workers)
            with sqlite3.connect(database, timeout=10) as conn:
                statuses = [row[0] for row in conn.execute("SELECT status FROM jobs")]
            return len(statuses) == 8 and set(statuses) == {"succeeded"}

        wait_for("the workers to run all 8 jobs", all_succeeded, timeout=90, interval=0.5,
                 on_timeout=lambda: logs(processes))

        for w in workers:
            assert w.stop(signal.SIGTERM) == 0, f"{w.name} did not stop cleanly:\n{w.text()}"
        assert web.stop(signal.SIGINT) == 0, f"web did not stop cleanly:\n{web.text()}"

        assert_no_traceback(processes)
        with sqlite3.connect(database) as conn:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        assert_made_once(processes, rows, f"sqlite:///{database}")
    finally:
        for p in processes:
            p.stop(signal.SIGKILL, timeout=10)


def test_ten_processes_make_the_postgresql_schema_once(pg_url, tmp_path):
    env = base_env(tmp_path / "home", MILS_DATABASE_URL=pg_url)
    processes: list[Process] = []
    try:
        upgrades = [Process(f"upgrade{i}", tmp_path, env, "mils", "db", "upgrade") for i in range(7)]
        processes += upgrades
        openers = [Process(f"open{i}", tmp_path, env, "open_store") for i in range(3)]
        processes += openers
        start_together(processes, tmp_path)
        finish(processes)
        for p in processes:
            assert p.proc.returncode == 0, f"{p.name} exited {p.proc.returncode}:\n{p.text()}"
        assert all("schema up to date" in p.text() for p in upgrades), logs(upgrades)
        assert all("jobs: 0" in p.text() for p in openers), logs(openers)
        assert_no_traceback(processes)
        assert_made_once(processes, query(pg_url, "SELECT version_num FROM alembic_version"), pg_url)
    finally:
        for p in processes:
            p.stop(signal.SIGKILL, timeout=10)


def test_a_schema_at_head_is_opened_without_waiting_for_the_lock(db_url):
    """While another process holds the schema lock (a long upgrade, say), opening or upgrading a
    database already at head goes on at once."""
    import threading

    from worker.store.db import open_store, schema_lock, upgrade

    upgrade(db_url)
    done = threading.Event()

    def open_and_upgrade() -> None:
        open_store(db_url, auto_upgrade=True)
        upgrade(db_url)
        done.set()

    with schema_lock(db_url):
        threading.Thread(target=open_and_upgrade, daemon=True).start()
        assert done.wait(10), "a database at head waited for the schema lock"
