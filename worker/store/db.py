"""Engines, sessions and the schema version check. Alembic alone creates the schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

import migrations
from worker.config import database_url


class SchemaError(RuntimeError):
    """The database schema is missing or behind the code."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None) -> None:
    command.upgrade(alembic_config(url or database_url()), "head")


def schema_revision(engine: Engine) -> tuple[str | None, str]:
    """(the database's revision, the code's head revision)."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head


_engines: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    """One engine (connection pool) per URL per process."""
    url = url or database_url()
    if url not in _engines:
        _engines[url] = _create_engine(url)
    return _engines[url]


def forget_engines(*, close: bool = True) -> None:
    """Drop this process's engines. After a fork pass close=False: the parent's pooled
    connections are then abandoned in the child without being closed under the parent."""
    for engine in _engines.values():
        engine.dispose(close=close)
    _engines.clear()


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # pool_pre_ping: after a database restart, stale connections are replaced, not used.
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (web, status) never block the writer
    cursor.close()


def open_store(url: str | None = None, *, auto_upgrade: bool | None = None) -> sessionmaker[Session]:
    """A session factory for a database at the code's schema version.

    The embedded SQLite default migrates itself; any other database must be upgraded
    on purpose (`mils db upgrade`) and is refused while it is behind.
    """
    url = url or database_url()
    engine = get_engine(url)
    if auto_upgrade is None:
        auto_upgrade = url.startswith("sqlite")
    current, head = schema_revision(engine)
    if current != head:
        if not auto_upgrade:
            raise SchemaError(
                f"database schema is at {current or 'nothing'}, the code needs {head}: "
                "run `mils db upgrade`"
            )
        upgrade(url)
    return sessionmaker(engine, expire_on_commit=False)
