"""Responses that send stored data out: a job's input, renders, its history as CSV or JSON, a
batch's results.
The history is streamed row by row from a server-side cursor: any size, constant memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import Blueprint, Response, abort, request
from sqlalchemy.orm import Session

from web.db import get_session, session_factory
from web.params import str_arg
from worker.batches import export_results
from worker.store.jobs import get_job
from worker.store.queries import QueryError, history, history_csv, history_json
from worker.store.schema import Artifact


def add_download_routes(bp: Blueprint, history_rule: str) -> None:
    """The download routes of a blueprint: the pages' and the API's are the same views.
    `history_rule` may carry the format (`.../history.<fmt>`), else it is `?format=` (csv)."""
    bp.add_url_rule("/jobs/<int:job_id>/input", "job_input", input_response)
    bp.add_url_rule("/artifacts/<sha256>", "artifact", artifact_response)
    bp.add_url_rule(history_rule, "history", _history)


def _history(job_id: int, fmt: str | None = None) -> Response:
    return history_response(job_id, fmt or str_arg(request.args, "format", "csv"))


def input_response(job_id: int) -> Response:
    job = get_job(get_session(), job_id)
    if job.input is None:
        return Response(status=404)
    return media_response(job.input, job.input_media_type)


def artifact_response(sha256: str) -> Response:
    """Stored media by content hash: job inputs and what candidates made (renders)."""
    artifact = get_session().get(Artifact, sha256)
    if artifact is None:
        abort(404, f"no artifact {sha256}")
    return media_response(artifact)


def media_response(artifact: Artifact, media_type: str | None = None) -> Response:
    """The stored bytes, served as `media_type` (a job's use of them) or the artifact's own type."""
    response = Response(artifact.data, mimetype=media_type or artifact.media_type)
    # Served as the type we decoded it as, never sniffed into something else (e.g. HTML).
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"  # content-addressed
    return response


def streamed(chunks_of: Callable[[Session], Iterator[str]]) -> Iterator[str]:
    """The chunks `chunks_of(session)` writes, from a session of their own that is closed when the
    body ends or the client goes away (the server closes the body). The request's own session is
    not used: with `stream_with_context` its connection stayed checked out until the garbage
    collector ran, and a few downloads in a row emptied the connection pool (measured)."""
    factory = session_factory()

    def body() -> Iterator[str]:
        session = factory()
        try:
            yield from chunks_of(session)
        finally:
            session.close()
    return body()


def history_response(job_id: int, fmt: str) -> Response:
    if fmt not in ("csv", "json"):
        raise QueryError(f"unknown format {fmt!r}; use csv or json")
    get_job(get_session(), job_id)  # an unknown job is a 404 before any byte is sent
    write = history_csv if fmt == "csv" else history_json
    mimetype = "text/csv" if fmt == "csv" else "application/json"
    response = Response(streamed(lambda session: write(history(session, job_id))), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="mils-job-{job_id}-history.{fmt}"'
    return response


def results_response(name: str, fmt: str) -> Response:
    """A batch's results (coco, csv, jsonl), streamed; an unknown batch or format fails first."""
    export_results(get_session(), name, fmt)  # an unknown batch or format fails before any byte is sent
    mimetype = {"coco": "application/json", "csv": "text/csv", "jsonl": "application/x-ndjson"}[fmt]
    extension = {"coco": "json", "csv": "csv", "jsonl": "jsonl"}[fmt]
    response = Response(streamed(lambda session: export_results(session, name, fmt)), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="mils-batch-{name}-results.{extension}"'
    return response
