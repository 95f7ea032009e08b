"""The JSON API: everything the pages can do, for programs. Described by /api/openapi.json
(web/openapi.yaml); errors are {"error": {"status", "message"}} (web.errors)."""

from __future__ import annotations

import functools
from importlib.resources import files

import yaml
from flask import Blueprint, jsonify, request, url_for
from sqlalchemy import text

from web import auth
from web.db import get_session, session_factory
from web.downloads import artifact_response, history_response, input_response
from web.params import candidate_args, job_list_args
from web.submission import (attachments_from, media_from_request, options_from, settings_from, submit_arithmetic,
                            submit_job, task_kind)
from worker.lifecycle import cancel
from worker.queries import candidates_page, count_candidates, get_job, job_detail, list_jobs, summarize
from worker.tasks import BrokerError, resume_job

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
    form = request.form
    llm = form.get("llm") or "embedded"
    kind = task_kind(form.get("task") or "image-caption")
    if kind.name == "arithmetic":
        try:
            return _created(submit_arithmetic(form, request.files.getlist("parts"), llm))
        except BrokerError as exc:
            return jsonify({"error": {"status": 503, "message": str(exc), "job_id": exc.job_id}}), 503
    media, input_info = media_from_request(kind, request.files.get("file"), form.get("sample"), form.get("prompt"))
    try:
        job_id = submit_job(kind=kind, media=media, input_info=input_info, llm=llm,
                            scorer=form.get("scorer") or "embedded", overrides=settings_from(form, llm),
                            options=options_from(form),
                            attachments=attachments_from(kind, request.files.get("style_file"), form.get("style_sample")))
    except BrokerError as exc:  # stored, not queued: say so, with the id to resume it by
        return jsonify({"error": {"status": 503, "message": str(exc), "job_id": exc.job_id}}), 503
    return _created(job_id)


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


@bp.get("/jobs/<int:job_id>/history")
def history(job_id: int):
    return history_response(job_id, request.args.get("format", "csv"))


@bp.get("/jobs/<int:job_id>/input")
def job_input(job_id: int):
    return input_response(job_id)


@bp.get("/artifacts/<sha256>")
def artifact(sha256: str):
    """Stored media by content hash: job inputs and what candidates made (renders)."""
    return artifact_response(sha256)


@bp.post("/jobs/<int:job_id>/cancel")
def cancel_job(job_id: int):
    session = get_session()
    summary = cancel(session, job_id)
    session.commit()
    return jsonify(summary.to_dict() | {"links": _links(job_id)})


@bp.post("/jobs/<int:job_id>/resume")
def resume(job_id: int):
    try:
        step = resume_job(session_factory(), job_id)
    except BrokerError as exc:
        return jsonify({"error": {"status": 503, "message": str(exc), "job_id": exc.job_id}}), 503
    session = get_session()
    summary = summarize(session, get_job(session, job_id))
    return jsonify(summary.to_dict() | {"resumed_at_step": step, "links": _links(job_id)}), 202


@functools.cache
def _openapi() -> dict:
    return yaml.safe_load((files("web") / "openapi.yaml").read_text("utf-8"))


@bp.get("/openapi.json")
def openapi():
    return jsonify(_openapi())


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
    from worker.celery_app import app as celery_app

    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=3)
