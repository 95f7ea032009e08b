"""What every answer of the app says to the browser about itself, set in one place: the security
headers (on pages, API answers, errors, downloads, /metrics and static files alike), and how the
app reads the address it is served at when it sits behind reverse proxies.

    init_app(app)   the after_request hook; ProxyFix when the operator trusts proxies
"""

from __future__ import annotations

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

# Only the app's own scripts, styles, pictures and fonts; no inline script or style (the pages
# keep theirs in web/static), no plug-ins, and no other site may frame the pages (clickjacking).
# blob: for the submit form's preview of the chosen file (URL.createObjectURL); data: for the
# empty favicon. Forms post only here; <base> can't move the relative URLs elsewhere.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Links to other sites don't carry a job's address (ids, filters) in the Referer.
    "Referrer-Policy": "same-origin",
    # A response is what its Content-Type says, never sniffed into HTML or a script.
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors for browsers that predate it.
    "X-Frame-Options": "DENY",
}


def add_security_headers(response: Response) -> Response:
    """after_request hook: takes a response, returns it with SECURITY_HEADERS. A response that
    set its own Content-Security-Policy (stored media: web.downloads, stricter) keeps it, with
    frame-ancestors added when it lacks it (default-src does not cover framing)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    policy = response.headers["Content-Security-Policy"]
    if "frame-ancestors" not in policy:
        response.headers["Content-Security-Policy"] = f"{policy}; frame-ancestors 'none'"
    return response


def trust_proxies(app: Flask, count: int) -> None:
    """Read the client's address, scheme, host, port and the path prefix (X-Forwarded-For,
    -Proto, -Host, -Port, -Prefix) from the `count` reverse proxies in front of the app
    (werkzeug's ProxyFix). 0: no proxy is trusted and those headers are ignored, since anyone
    could send them. Takes the app and the count; changes app.wsgi_app."""
    if count < 0:
        raise ValueError(f"MILS_PROXY_COUNT must be 0 or more, not {count}")
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count,
                                x_prefix=count)


def init_app(app: Flask) -> None:
    """Takes the app; registers the headers hook and applies app.config["PROXY_COUNT"]."""
    app.after_request(add_security_headers)
    trust_proxies(app, app.config["PROXY_COUNT"])
