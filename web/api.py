"""The JSON API: everything the pages can do, for programs. Described by /api/openapi.json
(web/openapi.yaml); errors are {"error": {"status", "message"}} (web.errors)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for
from sqlalchemy import text

from web import auth
from web.db import get_session, session_factory
from web.downloads import add_download_routes, results_response
from web.openapi import openapi_description
from web.params import batch_item_args, batch_list_args, candidate_args, form_fields, int_arg, job_list_args, str_arg
from web.submission import submit_batch_from, submit_from, variant_from
from worker.comparison import cached_comparison
from worker.core.settings import MAX_STEPS
from worker.batches import cancel_batch, resume_batch
from worker.lifecycle import cancel, resume_job
from worker.ops import take_snapshot
from worker.store.jobs import get_job
from worker.store.batches import batch_detail, get_batch, items_page, list_batches
from worker.store.purge import purge_record
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
    auth.check_may_submit()
    return _created(submit_from(request.form, request.files, file_field="file", others="refuse",
                                token_id=auth.acting_token_id()))


def _created(job_id: int):
    body = job_detail(get_session(), job_id) | {"links": _links(job_id)}
    return jsonify(body), 201, {"Location": url_for("api.job", job_id=job_id)}


@bp.get("/jobs")
def jobs():
    page = list_jobs(get_session(), **job_list_args(request.args))
    return jsonify({"jobs": [s.to_dict() | {"links": _links(s.id)} for s in page.items],
                    "next_cursor": page.next_cursor})


@bp.get("/models")
def models():
    """The models this server offers by name (MILS_MODELS). Their specs (which may name engine
    URLs) only to a request that may send raw specs itself (web.auth.raw_specs_allowed)."""
    show_spec = auth.raw_specs_allowed()
    return jsonify({"models": [{"name": e.name, "role": e.role, "description": e.description, "queue": e.queue}
                               | ({"spec": e.spec} if show_spec else {})
                               for e in current_app.config["MODELS"].entries],
                    "raw_specs": show_spec})


@bp.get("/jobs/<int:job_id>")
def job(job_id: int):
    session = get_session()
    return jsonify(job_detail(session, job_id) | {"archived": purge_record(session, job_id), "links": _links(job_id)})


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
    auth.check_may_act_on(get_job(session, job_id).token_id, f"job {job_id}")
    summary = cancel(session, job_id, token_id=auth.acting_token_id())
    session.commit()
    return jsonify(summary.to_dict() | {"links": _links(job_id)})


@bp.post("/jobs/<int:job_id>/resume")
def resume(job_id: int):
    auth.check_may_act_on(get_job(get_session(), job_id).token_id, f"job {job_id}")
    step = resume_job(session_factory(), job_id, int_arg(form_fields(), "steps", low=1, high=MAX_STEPS),
                      token_id=auth.acting_token_id())
    session = get_session()
    summary = summarize(session, get_job(session, job_id))
    return jsonify(summary.to_dict() | {"resumed_at_step": step, "links": _links(job_id)}), 202


# --------------------------------------------------------------------------- batches


def _batch_links(name: str) -> dict:
    return {
        "self": url_for("api.batch", name=name),
        "page": url_for("batch_pages.batch", name=name),
        "items": url_for("api.batch_items", name=name),
        **{f"results_{fmt}": url_for("api.batch_results", name=name, format=fmt) for fmt in ("coco", "csv", "jsonl")},
    }


@bp.post("/batches")
def create_batch():
    """A batch from an uploaded archive or manifest; 201 with the submission's report (items
    added, already there, rejected one by one with the reason) and the batch. With `like`: a new
    batch, a variant of that one (its items; what changed in `variant`)."""
    auth.check_may_submit((request.form.get("name") or "").strip())
    if (request.form.get("like") or "").strip():
        variant = variant_from(request.form, request.files, others="refuse", token_id=auth.acting_token_id())
        body = {"variant": variant.to_dict(), **batch_detail(get_session(), variant.name),
                "links": _batch_links(variant.name)}
        return jsonify(body), 201, {"Location": url_for("api.batch", name=variant.name)}
    report = submit_batch_from(request.form, request.files, others="refuse", token_id=auth.acting_token_id())
    body = {"submission": report.to_dict(), **batch_detail(get_session(), report.name),
            "links": _batch_links(report.name)}
    return jsonify(body), 201 if report.created else 200, {"Location": url_for("api.batch", name=report.name)}


@bp.get("/batches")
def batches():
    page = list_batches(get_session(), **batch_list_args(request.args))
    return jsonify({"batches": [p.to_dict() | {"links": _batch_links(p.name)} for p in page.items],
                    "next_cursor": page.next_cursor})


@bp.get("/batches/<name>")
def batch(name: str):
    return jsonify(batch_detail(get_session(), name) | {"links": _batch_links(name)})


@bp.get("/batches/<name>/items")
def batch_items(name: str):
    session = get_session()
    detail = get_batch(session, name)
    page = items_page(session, detail.id, **batch_item_args(request.args))
    return jsonify({"items": page.items, "next_cursor": page.next_cursor})


@bp.get("/batches/<name>/results")
def batch_results(name: str):
    return results_response(name, str_arg(request.args, "format", "coco"))


@bp.get("/compare")
def compare():
    """Batches side by side (worker.comparison): `?name=BASELINE&name=OTHER...`, against the
    baseline's own references."""
    return jsonify(cached_comparison(session_factory(), request.args.getlist("name")))


@bp.post("/batches/<name>/cancel")
def cancel_batch_(name: str):
    auth.check_may_act_on(get_batch(get_session(), name).token_id, f"batch {name!r}")
    cancelled = cancel_batch(session_factory(), name, token_id=auth.acting_token_id())
    return jsonify({"cancelled": cancelled, **batch_detail(get_session(), name), "links": _batch_links(name)})


@bp.post("/batches/<name>/resume")
def resume_batch_(name: str):
    auth.check_may_act_on(get_batch(get_session(), name).token_id, f"batch {name!r}")
    resumed = resume_batch(session_factory(), name, steps=int_arg(form_fields(), "steps", low=1, high=MAX_STEPS),
                           token_id=auth.acting_token_id())
    return jsonify({"resumed": resumed, **batch_detail(get_session(), name), "links": _batch_links(name)}), 202


@bp.get("/ops")
def ops():
    """What the operator page shows (worker.ops.Snapshot): queues, jobs by status, throughput,
    failures, the oldest waiting step, the steps running per worker."""
    return jsonify(take_snapshot(get_session()).to_dict())


@bp.get("/openapi.json")
def openapi():
    # The server is where this request came in: behind a proxy, under its path prefix.
    return jsonify(openapi_description() | {"servers": [{"url": request.script_root or "/"}]})


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
