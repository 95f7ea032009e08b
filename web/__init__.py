"""The web front end and JSON API (Flask). It reads and writes the store the workers use and
queues steps for them; it never loads a model.

    create_app()   the application factory (`mils web` serves it with waitress)
    pages          HTML pages: submit form, jobs list, live job page, downloads
    batch_pages    HTML pages of batches: list, new batch form, live batch page, exports
    api            the JSON API under /api, described by /api/openapi.json
    ops            the operator page (/ops) and Prometheus metrics (/metrics)
    headers        security headers on every answer; the app behind reverse proxies
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, redirect, url_for
from flask_wtf.csrf import CSRFProtect

from worker.config import https, models_path, proxy_count, secret_key, web_auth, web_raw_specs
from worker.media import MAX_FILE_BYTES
from worker.models.registry import load_registry
from worker.store.batches import format_duration

csrf = CSRFProtect()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=secret_key(),
        # "token": the API needs a token (`mils token create`), the pages a login with one.
        AUTH=web_auth(),
        DATABASE_URL=None,  # None: worker.config.database_url()
        # The upload limit of the media module plus room for the form's other fields.
        MAX_CONTENT_LENGTH=MAX_FILE_BYTES + 64 * 1024,
        # Tokens live as long as the session: a job page left open for hours can still cancel.
        WTF_CSRF_TIME_LIMIT=None,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        # MILS_HTTPS: the browser sends the session cookie over https only.
        SESSION_COOKIE_SECURE=https(),
        # MILS_PROXY_COUNT: reverse proxies whose X-Forwarded-* headers are believed (web.headers).
        PROXY_COUNT=proxy_count(),
        # MILS_MODELS: the registry of the models offered by name (worker.models.registry).
        MODELS_FILE=models_path(),
        # MILS_WEB_RAW_SPECS: with token auth, "admin" lets admin tokens send raw specs too.
        RAW_SPECS=web_raw_specs(),
    )
    if config:
        app.config.update(config)
    if app.config["AUTH"] not in ("none", "token"):
        raise ValueError(f"MILS_WEB_AUTH must be 'none' or 'token', not {app.config['AUTH']!r}")
    if app.config["RAW_SPECS"] not in ("none", "admin"):
        raise ValueError(f"MILS_WEB_RAW_SPECS must be 'none' or 'admin', not {app.config['RAW_SPECS']!r}")
    # A malformed registry stops the app here, its message naming the file and the line.
    app.config["MODELS"] = load_registry(app.config["MODELS_FILE"] and Path(app.config["MODELS_FILE"]))

    from web import api, auth, batch_pages, db, errors, headers, ops, pages
    from web.params import IdConverter, refuse_nul_bytes

    # Before the blueprints: their rules take their converters when they are added.
    app.url_map.converters["int"] = IdConverter
    db.init_app(app)
    headers.init_app(app)
    app.before_request(batch_pages.larger_uploads)  # before CSRFProtect's hook reads the body
    csrf.init_app(app)
    app.before_request(refuse_nul_bytes)
    errors.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(batch_pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.health)
    app.register_blueprint(ops.bp)
    app.register_blueprint(ops.metrics)
    app.add_template_filter(format_duration, "duration")
    csrf.exempt(api.bp)  # the API authenticates by bearer token, not by cookie (see web.auth)
    app.add_url_rule("/", "index", lambda: redirect(url_for("pages.jobs")))
    return app
