"""HTML pages: the submit form, the jobs list, the live job page, downloads.

The job page is rendered once in full; htmx then swaps in two fragments rendered by the same
templates: the live panel (polled every second until the job finishes) and the history table
(on each sort, filter or page change, and after each new step).
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from web import auth
from web.db import get_session, session_factory
from web.downloads import add_download_routes
from web.errors import quota_headers
from web.forms import SubmitForm, offer_models
from web.params import candidate_args, int_arg, job_list_args
from web.submission import submit_from
from worker.core import SettingsError
from worker.core.settings import MAX_STEPS
from worker.kinds import TASK_KINDS
from worker.lifecycle import cancel as cancel_job
from worker.lifecycle import resume_job
from worker.media import MediaError
from worker.models import ModelLoadError
from worker.queue import BrokerError
from worker.store.jobs import JobError, get_job
from worker.store.purge import purge_record
from worker.store.queries import QueryError, candidates_page, count_candidates, job_detail, list_jobs
from worker.store.schema import JobStatus
from worker.store.tokens import QuotaExceeded

bp = Blueprint("pages", __name__)
bp.before_request(auth.require_login)

HISTORY_PAGE = 50


@bp.get("/jobs")
def jobs():
    args = job_list_args(request.args)
    page = list_jobs(get_session(), **args)
    return render_template("jobs.html", page=page, args=args, statuses=[s.value for s in JobStatus],
                           tasks=list(TASK_KINDS))


@bp.route("/jobs/new", methods=["GET", "POST"])
def submit():
    form = SubmitForm()
    offer_models(form, current_app.config["MODELS"])
    if request.method == "POST":
        auth.check_may_submit()
    status, headers = (400 if request.method == "POST" else 200), {}
    if form.validate_on_submit():
        try:
            job_id = submit_from(request.form, request.files, file_field=form.image.name, others="ignore",
                                 token_id=auth.acting_token_id())
        except BrokerError as exc:  # stored, not queued: its page says so
            flash(str(exc), "error")
            return redirect(url_for("pages.job", job_id=exc.job_id))
        except QuotaExceeded as exc:  # the form again, with what was typed; 429 as the API answers
            form.form_errors.append(str(exc))
            status, headers = 429, quota_headers(exc)
        except (MediaError, SettingsError, ModelLoadError, QueryError) as exc:
            form.form_errors.append(str(exc))
        else:
            parts = " with its parts' jobs" if form.task.data == "arithmetic" else ""
            flash(f"job {job_id} submitted{parts}")
            return redirect(url_for("pages.job", job_id=job_id))
    return render_template("submit.html", form=form, raw_specs=auth.raw_specs_allowed()), status, headers


def _history_context(job_id: int, steps_total: int) -> dict:
    args = candidate_args(request.args, default_limit=HISTORY_PAGE)
    session = get_session()
    page = candidates_page(session, job_id, **args)
    total = count_candidates(session, job_id, step=args["step"], top_only=args["top_only"], q=args["q"])
    return {"history": page, "history_args": args, "history_total": total, "steps_total": steps_total}


@bp.get("/jobs/<int:job_id>")
def job(job_id: int):
    detail = job_detail(get_session(), job_id)
    return render_template("job.html", job=detail, archived=purge_record(get_session(), job_id),
                           can_act=_can_act(job_id), **_history_context(job_id, detail["steps_total"]))


def _can_act(job_id: int) -> bool:
    """Does the page show cancel and resume (web.auth: the token may act on this job)?"""
    return auth.may_act_on(get_job(get_session(), job_id).token_id)


@bp.get("/jobs/<int:job_id>/live")
def job_live(job_id: int):
    return render_template("_job_live.html", job=job_detail(get_session(), job_id), can_act=_can_act(job_id))


@bp.get("/jobs/<int:job_id>/candidates")
def job_candidates(job_id: int):
    job = get_job(get_session(), job_id)
    return render_template("_history.html", job={"id": job_id},
                           **_history_context(job_id, job.settings["steps"] + 1))


@bp.post("/jobs/<int:job_id>/cancel")
def cancel(job_id: int):
    session = get_session()
    # An unknown job is a 404 page, not a message; another's job a 403 (web.auth).
    auth.check_may_act_on(get_job(session, job_id).token_id, f"job {job_id}")
    try:
        summary = cancel_job(session, job_id, token_id=auth.acting_token_id())
        session.commit()
        flash(f"job {job_id} cancelled" if summary.status == "cancelled"
              else f"job {job_id} stops after the step in flight")
    except JobError as exc:  # e.g. it finished meanwhile: say so on its page
        flash(str(exc), "error")
    return redirect(url_for("pages.job", job_id=job_id))


@bp.post("/jobs/<int:job_id>/resume")
def resume(job_id: int):
    auth.check_may_act_on(get_job(get_session(), job_id).token_id, f"job {job_id}")
    try:
        steps = int_arg(request.form, "steps", low=1, high=MAX_STEPS)  # continue it to that many
        step = resume_job(session_factory(), job_id, steps, token_id=auth.acting_token_id())
        flash(f"job {job_id} resumed at step {step}" + (f", to {steps} steps" if steps else ""))
    except (JobError, BrokerError, QueryError, SettingsError) as exc:
        flash(str(exc), "error")
    return redirect(url_for("pages.job", job_id=job_id))


add_download_routes(bp, "/jobs/<int:job_id>/history.<fmt>")
