"""Access by API token, when the app runs with MILS_WEB_AUTH=token.

One kind of credential, two ways to present it:
- programs send `Authorization: Bearer <token>` to the JSON API;
- people paste a token once on /login; the signed session cookie then opens the pages (and
  lets the pages' own scripts read the API with GET; writes through the API always need the
  bearer token, so a cookie alone can never be abused by another site to cancel a job).

Tokens are created with `mils token create NAME` and stored as SHA-256 hashes only.
"""

from __future__ import annotations

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request, session,
                   url_for)
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import InputRequired

from web.db import get_session
from worker.store.schema import ApiToken, utcnow
from worker.store.tokens import find_token

bp = Blueprint("auth", __name__)


def auth_enabled() -> bool:
    return current_app.config["AUTH"] == "token"


def is_admin() -> bool:
    """Whether the request comes with an admin's token. Tokens have no roles yet: never."""
    return False


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
    if auth_enabled() and _logged_in_token() is None:
        # The path as the browser sees it: behind a proxy, with the prefix it serves the app under.
        return redirect(url_for("auth.login", next=request.script_root + request.full_path))
    return None


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
