"""Where things live. Everything is overridable by environment variables."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def data_dir() -> Path:
    """The embedded default's folder: SQLite database, model caches. `MILS_HOME` moves it."""
    path = Path(os.environ.get("MILS_HOME", Path.home() / ".mils")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    path = data_dir().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """`MILS_DATABASE_URL` (e.g. postgresql+psycopg://...) or a SQLite file in the data folder."""
    return os.environ.get("MILS_DATABASE_URL") or f"sqlite:///{data_dir() / 'mils.db'}"


def write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file of our own in the same folder, then rename: a concurrent
    worker writing the same cache file, or reading it, never sees half of it."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
