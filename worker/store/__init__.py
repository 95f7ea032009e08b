"""The record of every job, on SQLite or PostgreSQL.

    schema    the tables (ORM classes): jobs, steps, candidates, top-K entries, artifacts, events,
              links between jobs, API tokens; created and changed only by Alembic (migrations/)
    db        engines, session factories, the schema version check and upgrade
    jobs      the write side: create, fetch and lock a job, status, events, artifacts, a step, the state
    queries   the read side: summaries, keyset-paged lists, the history export
    tokens    API tokens (only their SHA-256 is kept)

The store imports the optimizer core and media, never a task kind, a model, Celery or the web.
"""
