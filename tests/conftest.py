"""Shared fixtures: throw-away databases (SQLite and the real local PostgreSQL) and MILS_HOME.

MILS_HOME
    Every test gets its own empty MILS_HOME (under tmp_path), so no test reads or writes
    ~/.mils. Tests marked `slow` load the real models instead; they share one folder per
    machine, `$MILS_TEST_HOME` or else /tmp/mils-test-home, so the model caches (the
    joined GGUF of the embedded LLM, the de-quantised copy of its transformers path) are built once.
    MILS_DATABASE_URL is always unset: a test names its database explicitly.

PostgreSQL
    `pg_url` creates a uniquely named database on 127.0.0.1:5432 (user postgres, trust auth;
    `MILS_TEST_PG` overrides the server URL) and drops it afterwards. The suite is meant to
    run against that real server: when it cannot be reached the test FAILS, it is not skipped.
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest


PG_SERVER = os.environ.get("MILS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
SLOW_HOME = Path(os.environ.get("MILS_TEST_HOME", "/tmp/mils-test-home"))


@pytest.fixture(autouse=True)
def mils_home(request, tmp_path, monkeypatch) -> Path:
    """MILS_HOME for this test: private and empty, or the shared model-cache home for slow tests."""
    if request.node.get_closest_marker("slow"):
        home = SLOW_HOME
    else:
        home = tmp_path / "mils-home"
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("MILS_HOME", str(home))
    monkeypatch.delenv("MILS_DATABASE_URL", raising=False)
    return home


@pytest.fixture(autouse=True)
def _fresh_feature_cache():
    """worker.runner keeps sample features per (scorer name, input) for the process: fakes with
    the same name but another hidden target must not see the previous test's features."""
    import worker.runner

    worker.runner._features.clear()
    yield
    worker.runner._features.clear()


def _release_engine(url: str) -> None:
    """Close every pooled connection of `url`'s cached engine and forget all cached engines."""
    from worker.store.db import forget_engines

    forget_engines()


def _admin_connection():
    import psycopg

    try:
        return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_SERVER} is unreachable (the suite needs it): {exc}")


@contextmanager
def _database(template: str | None = None):
    """A uniquely named PostgreSQL database (a copy of `template` if given), dropped afterwards."""
    name = f"mils_test_{uuid.uuid4().hex[:16]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    url = f"{PG_SERVER.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    try:
        yield url
    finally:
        _release_engine(url)
        with _admin_connection() as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def pg_url():
    """A fresh, empty (no schema) PostgreSQL database, dropped at teardown."""
    with _database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    """A SQLite file in tmp_path (not created yet: open_store migrates it into being)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    yield url
    _release_engine(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def _schema_template() -> str:
    """A PostgreSQL database at the code's schema, made once by `mils db upgrade` and named by a
    hash of the migrations, so that each `pg` database is a copy of it (CREATE DATABASE ...
    TEMPLATE: a tenth of the time the migrations take) and a changed migration makes a new one."""
    from worker.store.db import upgrade

    digest = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parents[1] / "migrations").rglob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    name = f"mils_template_{digest.hexdigest()[:16]}"
    with _admin_connection() as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return name
    with _database() as url:
        upgrade(url)
        _release_engine(url)  # a template must have no connections while it is copied
        building = url.rpartition("/")[2]
        with _admin_connection() as admin:
            try:
                # Renamed, it outlives this run; another run that built it first wins the name.
                admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            except psycopg.errors.DuplicateDatabase:
                pass
    return name


@pytest.fixture(scope="session")
def _pg_template() -> str:
    return _schema_template()


@pytest.fixture
def pg(_pg_template) -> str:
    """A fresh PostgreSQL database at the code's schema (a copy of the migrated template)."""
    with _database(_pg_template) as url:
        yield url


@pytest.fixture
def queue_db(tmp_path):
    """A private SQLite-backed broker queue for this process's Celery app; yields its file
    (`services.queued` reads what was queued)."""
    from tests.support.services import use_broker

    from worker.celery_app import app as celery_app

    before = celery_app.conf.broker_url
    path = tmp_path / "queue.db"
    use_broker(f"sqla+sqlite:///{path}")
    yield path
    use_broker(before)
