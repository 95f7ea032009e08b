"""The JSON API: everything the pages can do, for programs. Described by /api/openapi.json
(web/openapi.yaml); errors are {"error": {"status", "message"}} (web.errors)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request, url_for
from sqlalchemy import text

from web import auth
from web.db import get_session, session_factory
from web.downloads import add_download_routes
from web.openapi import openapi_description
from web.params import candidate_args, job_list_args
from web.submission import submit_from
from worker.lifecycle import cancel, resume_job
from worker.store.jobs import get_job
from worker.store.queries import candidates_page, count_candidates, job_detail, list_jobs, summarize

bp = Blueprint("api", __name__, url_prefix="/api")
bp.before_request(auth.check_api_request)


def _links(job_id: int) -> dict:
    return {
        "self": url_for("api.job", job_id=job_id),
        "page": url_for("pages.job", job_id=job_id),
        "candidates": url_for("api.candidates", job_id=job_id),
        "history_csv": url_for("api.history", job_id=job_id, format="csv"),
        "history_json": url_for("api.history", job_id=job_id, format="json"),
        "input": url_for("api.job_input", job_id=job_id),
    }


@bp.post("/jobs")
def create_job():
    # A BrokerError (stored, not queued) is a 503 naming the job to resume (web.errors).
    return _created(submit_from(request.form, request.files, file_field="file", others="refuse"))


def _created(job_id: int):
    body = job_detail(get_session(), job_id) | {"links": _links(job_id)}
    return jsonify(body), 201, {"Location": url_for("api.job", job_id=job_id)}


@bp.get("/jobs")
def jobs():
    page = list_jobs(get_session(), **job_list_args(request.args))
    return jsonify({"jobs": [s.to_dict() | {"links": _links(s.id)} for s in page.items],
                    "next_cursor": page.next_cursor})


@bp.get("/jobs/<int:job_id>")
def job(job_id: int):
    return jsonify(job_detail(get_session(), job_id) | {"links": _links(job_id)})


@bp.get("/jobs/<int:job_id>/candidates")
def candidates(job_id: int):
    args = candidate_args(request.args)
    session = get_session()
    get_job(session, job_id)
    page = candidates_page(session, job_id, **args)
    total = count_candidates(session, job_id, step=args["step"], top_only=args["top_only"], q=args["q"])
    return jsonify({"candidates": page.items, "next_cursor": page.next_cursor, "total": total})


add_download_routes(bp, "/jobs/<int:job_id>/history")


@bp.post("/jobs/<int:job_id>/cancel")
def cancel_job(job_id: int):
    session = get_session()
    summary = cancel(session, job_id)
    session.commit()
    return jsonify(summary.to_dict() | {"links": _links(job_id)})


@bp.post("/jobs/<int:job_id>/resume")
def resume(job_id: int):
    step = resume_job(session_factory(), job_id)
    session = get_session()
    summary = summarize(session, get_job(session, job_id))
    return jsonify(summary.to_dict() | {"resumed_at_step": step, "links": _links(job_id)}), 202


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_description())


health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    """Can this app reach its database and its broker? 200 when both, 503 otherwise."""
    checks = {"database": _check(lambda: get_session().execute(text("SELECT 1"))),
              "broker": _check(_ping_broker)}
    ok = all(check["ok"] for check in checks.values())
    return jsonify({"status": "ok" if ok else "unavailable", **checks}), 200 if ok else 503


def _check(probe) -> dict:
    try:
        probe()
        return {"ok": True}
    except Exception as exc:  # any failure is "unreachable"; say which
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}


def _ping_broker() -> None:
    from worker.celery_app import app as celery_app  # the broker the workers use

    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=3)
