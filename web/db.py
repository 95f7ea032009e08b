"""One database session per request, closed when the request ends (Flask's tutorial pattern)."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session, sessionmaker

from worker.store.db import open_store


def session_factory() -> sessionmaker[Session]:
    """Opened (and the schema checked) once per app, on first use: a database that is down
    when the app starts fails requests, not the start; /healthz says so."""
    factory = current_app.extensions.get("mils_sessions")
    if factory is None:
        factory = current_app.extensions["mils_sessions"] = open_store(current_app.config["DATABASE_URL"])
    return factory


def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = session_factory()()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()  # rolls back whatever the request did not commit


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close_session)
