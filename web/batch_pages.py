"""HTML pages of batches: the list, the form that starts one from an uploaded archive or manifest,
and the batch page (progress, counts by status, ETA, score and metric charts, the items, cancel,
resume or continue to more steps, run a variant, exports). The page's live panel and items table are fragments htmx swaps in.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from web import auth
from web.db import get_session, session_factory
from web.downloads import results_response
from web.errors import quota_headers
from web.forms import BatchForm, VariantForm, offer_models
from web.params import batch_item_args, batch_list_args, int_arg
from web.submission import submit_batch_from, variant_from
from worker import config
from worker.batches import cancel_batch, resume_batch
from worker.comparison import cached_comparison
from worker.core import SettingsError
from worker.core.settings import MAX_STEPS
from worker.datasets import ManifestError
from worker.media import MediaError
from worker.models import ModelLoadError
from worker.queue import BrokerError
from worker.store.batches import ITEM_STATUSES, batch_detail, get_batch, items_page, list_batches
from worker.store.jobs import JobError
from worker.store.queries import QueryError
from worker.store.tokens import QuotaExceeded

bp = Blueprint("batch_pages", __name__)
bp.before_request(auth.require_login)

ITEMS_PAGE = 50


def larger_uploads() -> None:
    """A batch's archive is larger than one job's input: its own limit (Flask reads it per request),
    for the form and the API alike. `create_app` registers it before CSRFProtect, whose check reads
    the form, and so the body, under the limit set by then. Only for a request that may come in:
    a stranger's upload is refused at the app's limit, not spooled to disk up to 2 GiB first."""
    if (request.endpoint in ("batch_pages.new_batch", "api.create_batch") and request.method == "POST"
            and auth.signed_in()):
        request.max_content_length = config.batch_upload_bytes()


@bp.get("/batches")
def batches():
    page = list_batches(get_session(), **batch_list_args(request.args))
    return render_template("batches.html", page=page)


@bp.route("/batches/new", methods=["GET", "POST"])
def new_batch():
    form = BatchForm()
    offer_models(form, current_app.config["MODELS"])
    if request.method == "POST":
        auth.check_may_submit((request.form.get("name") or "").strip())
    status, headers = (400 if request.method == "POST" else 200), {}
    if form.validate_on_submit():
        try:
            report = submit_batch_from(request.form, request.files, others="ignore", token_id=auth.acting_token_id())
        except BrokerError as exc:
            flash(str(exc), "error")
            return redirect(url_for("batch_pages.batches"))
        except QuotaExceeded as exc:  # the form again, with what was typed; 429 as the API answers
            form.form_errors.append(str(exc))
            status, headers = 429, quota_headers(exc)
        except (ManifestError, MediaError, SettingsError, ModelLoadError, QueryError, JobError) as exc:
            form.form_errors.append(str(exc))
        else:
            flash(f"batch {report.name}: {report.added} item(s) queued, {report.already} already in it, "
                  f"{len(report.rejected)} rejected")
            for bad in report.rejected[:20]:
                flash(f"rejected {bad['key']}: {bad['error']}", "error")
            if len(report.rejected) > 20:
                flash(f"… and {len(report.rejected) - 20} more rejected: see the items marked rejected", "error")
            return redirect(url_for("batch_pages.batch", name=report.name))
    return render_template("batch_new.html", form=form, dataset_root=config.dataset_root(),
                           raw_specs=auth.raw_specs_allowed()), status, headers


def _items_context(batch_id: int) -> dict:
    args = batch_item_args(request.args, default_limit=ITEMS_PAGE)
    return {"items": items_page(get_session(), batch_id, **args), "items_args": args, "item_statuses": ITEM_STATUSES}


@bp.get("/batches/<name>")
def batch(name: str):
    detail = batch_detail(get_session(), name)
    batch = get_batch(get_session(), name)
    # The models as the batch was given them: a registry name where it has one, else its spec.
    variant_form = VariantForm(data={"llm": batch.generator_name or detail["generator"],
                                     "scorer": batch.scorer_name or detail["scorer"], **detail["settings"]})
    return render_template("batch.html", batch=detail, can_act=auth.may_act_on(batch.token_id),
                           variant_form=variant_form, **_items_context(batch.id))


@bp.get("/batches/<name>/live")
def batch_live(name: str):
    return render_template("_batch_live.html", batch=batch_detail(get_session(), name),
                           can_act=auth.may_act_on(get_batch(get_session(), name).token_id))


@bp.get("/batches/<name>/items")
def batch_items(name: str):
    batch_id = get_batch(get_session(), name).id
    return render_template("_batch_items.html", batch={"name": name}, **_items_context(batch_id))


@bp.post("/batches/<name>/cancel")
def cancel(name: str):
    auth.check_may_act_on(get_batch(get_session(), name).token_id, f"batch {name!r}")
    cancelled = cancel_batch(session_factory(), name, token_id=auth.acting_token_id())
    flash(f"batch {name}: {cancelled} job(s) cancelled or stopping")
    return redirect(url_for("batch_pages.batch", name=name))


@bp.post("/batches/<name>/resume")
def resume(name: str):
    auth.check_may_act_on(get_batch(get_session(), name).token_id, f"batch {name!r}")
    try:
        steps = int_arg(request.form, "steps", low=1, high=MAX_STEPS)  # continue it to that many
        resumed = resume_batch(session_factory(), name, steps=steps, token_id=auth.acting_token_id())
        flash(f"batch {name}: {resumed} job(s) queued again" + (f", to {steps} steps" if steps else ""))
    except (JobError, BrokerError, QueryError, SettingsError) as exc:
        flash(str(exc), "error")
    return redirect(url_for("batch_pages.batch", name=name))


@bp.post("/batches/<name>/variant")
def variant(name: str):
    """"Run a variant": a new batch over this one's items with the settings of the form
    (worker.batches.variant_of, as `mils batch submit NEW --like NAME`)."""
    get_batch(get_session(), name)
    auth.check_may_submit()
    form = VariantForm()
    if not form.validate_on_submit():
        for field_errors in form.errors.values():
            for error in field_errors:
                flash(f"variant: {error}", "error")
        return redirect(url_for("batch_pages.batch", name=name))
    fields = request.form.copy()
    fields["like"] = name
    try:
        report = variant_from(fields, request.files, others="ignore", token_id=auth.acting_token_id())
    except BrokerError as exc:
        flash(str(exc), "error")
        return redirect(url_for("batch_pages.batch", name=(request.form.get("name") or name).strip()))
    except (MediaError, SettingsError, ModelLoadError, QueryError, JobError, QuotaExceeded) as exc:
        flash(f"variant: {exc}", "error")
        return redirect(url_for("batch_pages.batch", name=name))
    changed = ", ".join(f"{f} {before!r} -> {after!r}" for f, (before, after) in report.changes.items())
    flash(f"batch {report.name}, a variant of {name}: {report.items} item(s); "
          + (changed or report.note or ""))
    return redirect(url_for("batch_pages.batch", name=report.name))


@bp.get("/batches/<name>/results.<fmt>")
def results(name: str, fmt: str):
    return results_response(name, fmt)


@bp.get("/compare")
def compare():
    """Batches side by side (worker.comparison): `?name=BASELINE&name=OTHER...`."""
    found = cached_comparison(session_factory(), request.args.getlist("name"))
    return render_template("compare.html", found=found)
