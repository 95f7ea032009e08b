"""Access by API token, when the app runs with MILS_WEB_AUTH=token.

One kind of credential, two ways to present it:
- programs send `Authorization: Bearer <token>` to the JSON API;
- people paste a token once on /login; the signed session cookie then opens the pages (and
  lets the pages' own scripts read the API with GET; writes through the API always need the
  bearer token, so a cookie alone can never be abused by another site to cancel a job).

Tokens are created with `mils token create NAME --role ROLE` and stored as SHA-256 hashes only.

What a token may do is its role (worker.store.schema.TOKEN_ROLES): an admin anything to any job
or batch; a user reads everything (the shared dashboard stays whole), submits, and cancels or
resumes its own jobs and batches (those it submitted); a reader only reads. Anything else is a 403
with a message. Jobs and batches record the token that made them, and events the token that acted
(`acting_token_id()`, passed down as `token_id`). Without MILS_WEB_AUTH=token everyone may do
everything and nothing is recorded.
"""

from __future__ import annotations

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import InputRequired

from web.db import get_session
from web.params import refuse_nul
from worker.store.batches import get_batch
from worker.store.jobs import JobError
from worker.store.schema import ApiToken, utcnow
from worker.store.tokens import find_token

bp = Blueprint("auth", __name__)


def auth_enabled() -> bool:
    return current_app.config["AUTH"] == "token"


def is_admin() -> bool:
    """Whether the request acts as an admin's token (`current_token()`)."""
    token = current_token()
    return token is not None and token.role == "admin"


def raw_specs_allowed() -> bool:
    """Whether this request may name a model by a raw spec instead of a registry name
    (worker.models.registry.resolve): always without auth (one user on 127.0.0.1, who could run
    any code there anyway); with token auth only an admin's request, and only when the operator
    allows it (MILS_WEB_RAW_SPECS=admin). A shared server still refuses such a spec when it
    names a file, a py: factory or an engine URL the registry does not name."""
    if not auth_enabled():
        return True
    return current_app.config["RAW_SPECS"] == "admin" and is_admin()


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _logged_in_token() -> ApiToken | None:
    token_id = session.get("token_id")
    if token_id is None:
        return None
    token = get_session().get(ApiToken, token_id)
    return token if token is not None and token.revoked_at is None else None


def check_api_request() -> None:
    """before_request of the API blueprint."""
    if not auth_enabled():
        return
    raw = _bearer_token()
    if raw is not None:
        token = find_token(get_session(), raw)
        if token is None:
            abort(401, "the API token is unknown or revoked")
        token.last_used_at = utcnow()
        get_session().commit()
        g.mils_token = token
        return
    if request.method in ("GET", "HEAD") and _logged_in_token() is not None:
        return
    abort(401, "this API needs a token: send 'Authorization: Bearer <token>' (`mils token create NAME`)")


def signed_in() -> bool:
    """Is this request allowed in at all: no auth configured, a signed-in page session, or a
    valid bearer token (not recorded as a use: the request's own check does that)."""
    if not auth_enabled() or _logged_in_token() is not None:
        return True
    raw = _bearer_token()
    return raw is not None and find_token(get_session(), raw) is not None


def require_login():
    """before_request of the pages: without a valid login, go to /login and come back after."""
    if not auth_enabled():
        return None
    g.mils_token = _logged_in_token()  # current_token() for the rest of the request
    if g.mils_token is None:
        # The path as the browser sees it: behind a proxy, with the prefix it serves the app under.
        return redirect(url_for("auth.login", next=request.script_root + request.full_path))
    return None


def current_token() -> ApiToken | None:
    """The API token this request acts as: the bearer token sent, else the signed-in page
    session's; None without MILS_WEB_AUTH=token, or when there is no valid one (the API's and the
    pages' own checks have turned such a request away already). Looked up once per request."""
    if not auth_enabled():
        return None
    if "mils_token" not in g:
        raw = _bearer_token()
        g.mils_token = find_token(get_session(), raw) if raw is not None else _logged_in_token()
    return g.mils_token


def acting_token_id() -> int | None:
    """The id of `current_token()`: what jobs, batches and events record as their owner or actor."""
    token = current_token()
    return token.id if token is not None else None


def may_submit() -> bool:
    """May this request submit jobs and batches (every role but reader)?"""
    return _submits(current_token())


def _submits(token: ApiToken | None) -> bool:
    return not auth_enabled() or (token is not None and token.role != "reader")


def may_act_on(owner_token_id: int | None) -> bool:
    """May this request cancel or resume (or add to) what the token `owner_token_id` made (None:
    the CLI)? An admin may on anything, a user on its own, a reader on nothing."""
    if not auth_enabled():
        return True
    token = current_token()
    return token is not None and (token.role == "admin" or (token.role == "user" and owner_token_id == token.id))


def check_may_submit(batch_name: str | None = None) -> None:
    """403 unless this request may submit; adding to the existing batch `batch_name`, unless it
    may act on that batch too."""
    if not may_submit():
        _refuse_without_token()
        abort(403, f"token {current_token().name!r} is a reader: it may read jobs and batches, not submit them")
    if batch_name:
        refuse_nul([("name", batch_name)], "form field")  # before the name reaches the database
        try:
            check_may_act_on(get_batch(get_session(), batch_name).token_id, f"batch {batch_name!r}")
        except JobError:  # no such batch: a new one
            pass


def check_may_act_on(owner_token_id: int | None, what: str) -> None:
    """403 unless this request may act on `what` (e.g. "job 7"), made by `owner_token_id`."""
    if may_act_on(owner_token_id):
        return
    _refuse_without_token()
    token = current_token()
    if token.role == "reader":
        abort(403, f"token {token.name!r} is a reader: it may read {what}, not change it")
    abort(403, f"token {token.name!r} is a user: it may cancel, resume or add to only its own jobs and batches, "
               f"and {what} is not its own")


def _refuse_without_token() -> None:
    if current_token() is None:  # the API's and the pages' own checks turn such a request away first
        abort(401, "this needs a token (`mils token create NAME`)")


@bp.app_context_processor
def _roles() -> dict:
    # The pages show the submit links only to those who may submit: as the login check found the
    # token (an error page rendered before it, e.g. with the database down, looks nothing up).
    return {"may_submit": _submits(g.get("mils_token"))}


class LoginForm(FlaskForm):
    token = PasswordField("API token", validators=[InputRequired()],
                          description="A token from `mils token create NAME`.")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        token = find_token(get_session(), form.token.data.strip())
        if token is None:
            form.token.errors.append("unknown or revoked token")
        else:
            session.clear()
            session["token_id"] = token.id
            flash(f"signed in with token {token.name!r}")
            target = request.args.get("next", "")
            # Only a path on this site: never redirect to another host.
            return redirect(target if target.startswith("/") and not target.startswith("//") else url_for("index"))
    return render_template("login.html", form=form), 200 if request.method == "GET" else 401


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("auth.login"))
