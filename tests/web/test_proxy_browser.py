"""The web front end behind a real reverse proxy, in a real browser: the system's nginx serves
`mils web` under /mils (X-Forwarded-Prefix, -For, -Proto; the app told MILS_PROXY_COUNT=1), and
headless Chromium submits a job, watches its live page, cancels it and downloads its history,
all under /mils. Every request the browser makes must stay under /mils, and the page must raise
no error: a Content-Security-Policy violation is a console error, so this is also where the
policy (web.headers) meets a real browser with htmx and Chart.js.

The services are tests/web/test_web_browser.py's (its database, browser and running_stack).
nginx is Debian's (`apt-get install -y nginx`; scripts/test installs it): without it these tests
are skipped, saying so.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest

from tests.support.services import Nginx
from tests.web.test_web_browser import (  # noqa: F401 - fixtures
    GENERATOR,
    JOB_TIMEOUT_MS,
    SCORER,
    VIEWPORT,
    browser,
    database,
    running_stack,
)

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
PREFIX = "/mils"

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian/Ubuntu: apt-get install -y "
                                                      "nginx; `bash scripts/test` installs it)")


@pytest.fixture(scope="module")
def proxied(database, tmp_path_factory):
    """(stack, nginx): the app told there is one proxy in front, and nginx in front of it."""
    folder = tmp_path_factory.mktemp("proxy")
    with running_stack(database, folder, MILS_PROXY_COUNT="1") as stack:
        nginx = Nginx(NGINX, stack.web.url, folder / "nginx", prefix=PREFIX)
        try:
            nginx.wait_ready()
            yield stack, nginx
        finally:
            nginx.close()


@pytest.fixture
def page(browser, proxied):
    """A fresh browser context and page that record every request; the test fails on any error
    the page raised or logged (CSP violations included) and on any answer >= 400."""
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.request.method} {r.url}")
            if r.status >= 400 else None)
    page.requests = []
    page.on("request", lambda r: page.requests.append(r.url))
    try:
        yield page
        assert not errors, f"errors in the page: {errors}"
    finally:
        context.close()


def test_submit_watch_cancel_and_download_under_a_prefix(page, proxied):
    from playwright.sync_api import expect

    from worker.media.samples import sample_path

    stack, nginx = proxied
    response = page.goto(f"{nginx.url}/jobs/new")
    assert response.ok and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.set_input_files("#image", str(sample_path("chelsea")))
    expect(page.locator("#preview")).to_be_visible()  # a blob: URL, which the policy allows
    page.fill("#steps", "40")  # a step a second: still running when it is cancelled
    page.fill("#candidates", "6")
    page.fill("#top_k", "5")
    page.click("details > summary")
    page.fill("#llm", GENERATOR)
    page.fill("#scorer", SCORER)
    page.click("#submit-job")

    page.wait_for_url(re.compile(rf"^{re.escape(nginx.url)}/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("p.flash")).to_contain_text(f"job {job_id} submitted")
    page.wait_for_function("() => document.getElementById('job-input').naturalWidth === 451")
    # The live panel is swapped in by htmx (polling /mils/jobs/ID/live) as the steps land, with no reload.
    page.evaluate("window.__marker = 1")
    expect(page.locator("#job-status")).to_have_text("running", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#job-progress")).to_contain_text(re.compile(r"step [1-9]\d* of 40"), timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#score-chart")).to_have_attribute("data-points", re.compile(r"[2-9]|\d\d"))
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    live_polls = [u for u in page.requests if u.endswith(f"/jobs/{job_id}/live")]
    assert live_polls and all(u.startswith(f"{nginx.url}/") for u in live_polls)

    page.click("#cancel-job")
    page.wait_for_url(f"{nginx.url}/jobs/{job_id}")
    expect(page.locator("p.flash")).to_contain_text(f"job {job_id}")
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=JOB_TIMEOUT_MS)
    stack.wait_status(job_id, "cancelled")

    with page.expect_download() as download_info:
        page.click("#download-csv")
    download = download_info.value
    assert download.url == f"{nginx.url}/jobs/{job_id}/history.csv"
    assert download.suggested_filename == f"mils-job-{job_id}-history.csv"
    with open(download.path(), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and {int(r["job_id"]) for r in rows} == {job_id} and "0" in {r["step"] for r in rows}

    # Everything the browser fetched (pages, scripts, styles, the input, live updates, the
    # download) went through the proxy under the prefix; the preview was a local blob.
    outside = [u for u in page.requests if not u.startswith(f"{nginx.url}/") and not u.startswith("blob:")]
    assert not outside, outside
    # nginx saw the same: every request it passed on was under the prefix.
    access = (nginx.folder / "access.log").read_text()
    assert f"GET {PREFIX}/jobs/{job_id}/live" in access and f"POST {PREFIX}/jobs/{job_id}/cancel" in access
    assert not re.search(r"\"(GET|POST) /(?!mils/)", access), access[-2000:]
