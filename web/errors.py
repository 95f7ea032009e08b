"""Every error is a clear HTML page or a JSON body, with the status code that says what went
wrong: 400 bad input, 401 no or wrong token, 403 a token whose role may not do it, 404 unknown
job or batch, 409 wrong job state, 413 too large, 429 a token's jobs in flight at its limit (with
Retry-After), 503 database or broker unavailable."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from worker.core import SettingsError
from worker.datasets import ManifestError
from worker.evaluation import EvaluationError
from worker.media import MediaError
from worker.models import ModelLoadError
from worker.queue import BrokerError
from worker.store.db import SchemaError
from worker.store.batches import UnknownBatch
from worker.store.jobs import JobError, UnknownJob
from worker.store.queries import QueryError
from worker.store.tokens import QuotaExceeded

log = logging.getLogger(__name__)

# Our own exceptions -> status codes. Their messages are written for people, so they are shown.
STATUS_OF: list[tuple[type[Exception], int]] = [
    (UnknownJob, 404),
    (UnknownBatch, 404),
    (JobError, 409),
    (MediaError, 400),
    (SettingsError, 400),
    (QueryError, 400),
    (ManifestError, 400),
    (EvaluationError, 400),
    (ModelLoadError, 400),
    (QuotaExceeded, 429),
    (SchemaError, 503),
    (BrokerError, 503),
]


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def error_response(status: int, message: str, **extra):
    if wants_json():
        return jsonify({"error": {"status": status, "message": message, **extra}}), status
    return render_template("error.html", status=status, message=message), status


def _http_error(exc: HTTPException):
    message = exc.description or exc.name
    if exc.code == 413:
        message = f"the upload is over the {request.max_content_length:,}-byte limit"
    headers = {"WWW-Authenticate": "Bearer"} if exc.code == 401 else {}
    body, status = error_response(exc.code or 500, message)
    return body, status, headers


def _csrf_error(exc: CSRFError):
    return error_response(400, f"the form expired or was not sent by this site ({exc.description}); "
                               "reload the page and try again")


def _known_error(exc: Exception):
    status = next(code for kind, code in STATUS_OF if isinstance(exc, kind))
    # Stored but not queued: the body names the job to resume.
    extra = {"job_id": exc.job_id} if isinstance(exc, BrokerError) else {}
    body, status = error_response(status, str(exc), **extra)
    headers = quota_headers(exc) if isinstance(exc, QuotaExceeded) else {}
    return body, status, headers


def quota_headers(exc: QuotaExceeded) -> dict[str, str]:
    """A 429's Retry-After (seconds until one of the token's jobs in flight may have finished), for
    an error page, a JSON error or a form shown again."""
    return {"Retry-After": str(exc.retry_after)}


def _unexpected_error(exc: Exception):
    log.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(500, "internal error; the server log has the details")


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    for kind, _ in STATUS_OF:
        app.register_error_handler(kind, _known_error)
    app.register_error_handler(Exception, _unexpected_error)
