"""Engines, sessions and the schema version check. Alembic alone creates the schema.

Creating or upgrading the schema happens once however many processes ask at the same time
(a worker, `mils submit`, `mils web` and `mils db upgrade` started together on an empty
database): each one that finds the schema behind takes a lock across processes, looks at the
revision again and upgrades only if it is still behind. A process that finds the schema at the
code's head takes no lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, func, make_url, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

import migrations
from worker.config import database_url


class SchemaError(RuntimeError):
    """The database schema is missing or behind the code."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# The key of the PostgreSQL advisory lock held while the schema is created or upgraded
# (`pg_advisory_lock` takes one bigint; any fixed value the application uses for nothing else).
# It is "MILS" in ASCII, then 1: pg_locks shows it as classid 1296649299 ("MILS"), objid 1.
SCHEMA_LOCK_KEY = 0x4D494C53_00000001


def upgrade(url: str | None = None) -> None:
    """Create or upgrade the schema of `url` (default: MILS_DATABASE_URL or the local SQLite file)
    to the code's head revision, once across processes.

    A database already at head is left alone without taking the lock. Otherwise the schema lock
    of the database is taken (waiting for another process's upgrade to finish), the revision is
    read again, and Alembic runs the migrations still missing, if any. So `mils db upgrade` run
    twice at once, or beside processes that upgrade by themselves, makes the schema once.
    Alembic's errors (a database at a revision this code does not know, a failed migration)
    and the database driver's errors propagate.
    """
    url = url or database_url()
    engine = get_engine(url)
    current, head = schema_revision(engine)
    if current != head:
        _upgrade_once(url, engine)


def _upgrade_once(url: str, engine: Engine) -> None:
    """Under the schema lock: upgrade to head unless another process did it while we waited."""
    with schema_lock(url):
        current, head = schema_revision(engine)
        if current != head:
            command.upgrade(alembic_config(url), "head")


def schema_lock(url: str) -> AbstractContextManager[None]:
    """A lock across processes around creating or upgrading the schema of the database at `url`,
    held for the duration of the `with` block (a blocking wait while another process holds it).

    SQLite: a file lock (`flock`) on DATABASE.lock beside the database file; an in-memory
    database is private to its connection and needs none. PostgreSQL: a session-level
    `pg_advisory_lock(SCHEMA_LOCK_KEY)` on a connection of its own, so the migrations commit
    before it is released. Other databases: no lock. A process that dies holding the lock
    releases it (its file descriptor or its connection closes with it). Raises OSError when the
    lock file cannot be made (the database's folder is missing or read-only) and the driver's
    error when PostgreSQL cannot be reached.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
            return nullcontext()
        from filelock import FileLock

        return FileLock(f"{database}.lock")
    if parsed.get_backend_name() == "postgresql":
        return _pg_advisory_lock(url)
    return nullcontext()


@contextmanager
def _pg_advisory_lock(url: str) -> Iterator[None]:
    # A connection outside the pool, in autocommit: it is never idle in a transaction while it
    # waits or holds the lock, and closing it releases the lock even if the unlock failed.
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(select(func.pg_advisory_lock(SCHEMA_LOCK_KEY)))
            try:
                yield
            finally:
                connection.execute(select(func.pg_advisory_unlock(SCHEMA_LOCK_KEY)))
    finally:
        engine.dispose()


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


# How long a SQLite connection waits for another one's lock before "database is locked".
SQLITE_BUSY_SECONDS = 30.0


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # pool_pre_ping: after a database restart, stale connections are replaced, not used.
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        _journal_mode_wal(cursor)  # readers (web, status) never block the writer
    finally:
        cursor.close()


def _journal_mode_wal(cursor) -> None:
    """Switch the database to WAL (once per file; a no-op after). The switch writes the file's
    header, and while another connection writes to a database still in rollback-journal mode
    (another process switching the same new file, or migrating it) SQLite answers "database is
    locked" at once instead of waiting out the busy timeout. So several processes opening a new
    database together try again here, for as long as the busy timeout would have waited."""
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY") or "locked" in str(exc)
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def open_store(url: str | None = None, *, auto_upgrade: bool | None = None) -> sessionmaker[Session]:
    """A session factory for a database at the code's schema version.

    The embedded SQLite default migrates itself; any other database must be upgraded
    on purpose (`mils db upgrade`) and is refused while it is behind (SchemaError), unless
    `auto_upgrade` is true. A database at head is opened without taking any lock; one that is
    behind is upgraded under the schema lock (see `upgrade`), so processes started together
    on an empty database make the schema once and all go on with it.
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
        _upgrade_once(url, engine)
    return sessionmaker(engine, expire_on_commit=False)
