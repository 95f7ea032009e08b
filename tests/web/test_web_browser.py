"""The web front end in a real browser: headless Chromium (Playwright) against `mils web`
and a `mils worker`, both real subprocesses, on the real PostgreSQL and a private Redis.

Everything a user does happens in the page: picking a photo (with its preview), submitting,
watching the live panel (htmx polls it every second) and the score chart fill in without a
reload, sorting and filtering the candidate history, downloading it as CSV, cancelling and
resuming, and finding the job again in the jobs list. What the page shows is checked
against the database the worker wrote.

The worker runs the tiny fakes of tests/support/fakes.py (`py:tests.support.fakes:worker_generator` /
`worker_scorer`); every optimization step takes STEP_SECONDS, so the live updates can be
seen step by step and a job can be cancelled while it runs.

The module shares one Redis, one database, one web server, one worker and one browser;
every test opens its own browser context (no cookies or state carried between tests) and
submits or reuses jobs that no other test changes, so the tests do not depend on order.

Chromium is the system's (Debian: `apt-get install -y chromium`; or MILS_CHROMIUM=PATH):
Playwright's own browser download is never used. Without it the tests FAIL.
Full-page screenshots of the submit form and of a finished job page are written to
docs/screenshots/.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest

from tests.support.services import (
    ROOT,
    RedisServer,
    Worker,
    committed_steps,
    events,
    free_port,
    job_status,
    mils_env,
    mils_executable,
    query,
    run_mils,
    scalar,
    wait_for,
)

GENERATOR = "py:tests.support.fakes:worker_generator"
SCORER = "py:tests.support.fakes:worker_scorer"
STEP_SECONDS = 1.0  # every optimization step of the fake generator (MILS_FAKE_STEP_SECONDS)
CHROMIUM = os.environ.get("MILS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}
SCREENSHOTS = ROOT / "docs" / "screenshots"
PG_SERVER = os.environ.get("MILS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
JOB_TIMEOUT_MS = 60_000


# --------------------------------------------------------------------------- services


@pytest.fixture(scope="module")
def database():
    """A fresh PostgreSQL database for the module (like conftest's `pg_url`, which is per test)."""
    name = f"mils_test_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_SERVER} is unreachable (the suite needs it): {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


class WebServer:
    """`mils web` on a free port, logging to a file."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "web.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [mils_executable(), "web", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"mils web exited ({self.proc.returncode}):\n{self.text()}")
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return response.status == 200

        wait_for("mils web to answer /healthz", ready, timeout, interval=0.2, on_timeout=self.text)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Stack:
    """The module's database, Redis, web server and worker."""

    def __init__(self, url: str, redis: RedisServer, web: WebServer, worker: Worker) -> None:
        self.url = url
        self.redis = redis
        self.web = web
        self.worker = worker

    def page_url(self, path: str) -> str:
        return self.web.url + path

    def submit_api(self, **fields) -> int:
        """A job through the JSON API (form-encoded, like `curl -F`), with the fake models."""
        data = {"sample": "chelsea", "llm": GENERATOR, "scorer": SCORER, "steps": "3", "candidates": "6",
                "top_k": "5", **{k: str(v) for k, v in fields.items()}}
        request = urllib.request.Request(f"{self.web.url}/api/jobs", data=urlencode(data).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201
            return int(json.load(response)["id"])

    def wait_status(self, job_id: int, wanted: str, timeout: float = 60) -> None:
        wait_for(f"job {job_id} to be {wanted}", lambda: job_status(self.url, job_id) == wanted, timeout,
                 interval=0.2, on_timeout=lambda: self.describe(job_id))

    def describe(self, job_id: int) -> str:
        try:
            row = query(self.url, "SELECT status, attempt_step, error FROM jobs WHERE id = %s", (job_id,))
            state = (f"job {job_id} (status, attempt_step, error): {row}\nsteps {committed_steps(self.url, job_id)}\n"
                     f"events {events(self.url, job_id)}\n")
        except Exception as exc:  # noqa: BLE001 - only for the failure message
            state = f"(database unreadable: {exc!r})\n"
        return (state + f"===== worker log\n{self.worker.text()[-8000:]}\n"
                f"===== web log\n{self.web.text()[-4000:]}")


@pytest.fixture(scope="module")
def stack(database, tmp_path_factory):
    with running_stack(database, tmp_path_factory.mktemp("browser")) as stack:
        yield stack


@contextmanager
def running_stack(database: str, folder: Path, **settings: str) -> Iterator[Stack]:
    """A private Redis, `mils web` and a `mils worker` on `database`, with MILS_* `settings`
    beside the fakes' (e.g. MILS_PROXY_COUNT); all stopped when the block ends."""
    home = folder / "mils-home"
    home.mkdir()
    redis = RedisServer(folder / "redis")
    web = worker = None
    try:
        redis.start()
        env = mils_env(home=home, database_url=database, broker_url=redis.url,
                       MILS_FAKE_STEP_SECONDS=str(STEP_SECONDS), MILS_WEB_AUTH="none", **settings)
        out = run_mils("db", "upgrade", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        # Both start at once (each takes seconds to import), then both are awaited.
        worker = Worker("browser", env, folder)
        web = WebServer(env, folder)
        web.wait_ready()
        worker.wait_ready()
        yield Stack(database, redis, web, worker)
    finally:
        for process in (web, worker):
            if process is not None:
                process.close()
        redis.close()


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (the browser tests need it): "
                    "apt-get install -y chromium  (or set MILS_CHROMIUM to its path)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser, stack):
    """A fresh browser context (own cookies and CSRF session) and page; the test fails on any
    JavaScript error the page raised."""
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True, base_url=stack.web.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text} ({msg.location})")
            if msg.type == "error" else None)
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.request.method} {r.url}")
            if r.status >= 400 else None)
    page.js_errors = errors
    try:
        yield page
        assert not errors, f"JavaScript errors in the page: {errors}"
    finally:
        context.close()


# --------------------------------------------------------------------------- jobs


@pytest.fixture(scope="module")
def finished_job(stack) -> int:
    """A job submitted through the API and run to the end: its page is only read, never changed."""
    job_id = stack.submit_api(steps=3, candidates=6, top_k=5, seed=11)
    stack.wait_status(job_id, "succeeded", timeout=60)
    return job_id


def candidate_rows(url: str, job_id: int, top_only: bool = False) -> list[tuple]:
    """(step, rank, score, text) of every candidate stored: rows, and a compactly kept step 0."""
    from tests.web.test_web_api import db_candidates
    from worker.store.db import open_store

    rows = db_candidates(open_store(url), job_id)
    return [r for r in rows if r[1] is not None] if top_only else rows


def table_rows(page) -> list[dict]:
    """The history table's rows as dicts (step, rank, score, text), as shown."""
    cells = page.locator("#history-table tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.querySelectorAll('td'), td => td.textContent.trim()))")
    if cells == [["No candidates match."]]:
        return []
    assert all(len(c) == 4 for c in cells), f"unexpected history rows: {cells}"
    return [{"step": int(c[0]), "rank": int(c[1]) if c[1] else None, "score": float(c[2]), "text": c[3]}
            for c in cells]


def change_history(page, action) -> list[dict]:
    """Do `action` (a filter or sort change) and wait until htmx has swapped in the new table."""
    from playwright.sync_api import expect

    page.locator("#history-table").evaluate("t => t.dataset.stale = '1'")
    action()
    expect(page.locator("#history-table:not([data-stale])")).to_be_attached()
    return table_rows(page)


def count_text(n: int) -> str:
    return f"{n:,} candidate{'' if n == 1 else 's'}"


def watch_live_panel(page) -> None:
    """Record the progress text after every swap of the live panel, in the page itself."""
    page.evaluate("""() => {
        window.__progress = [document.getElementById('job-progress').textContent.trim()];
        document.addEventListener('htmx:afterSettle', (e) => {
            const p = document.getElementById('job-progress');
            if (p && e.target.id === 'live') window.__progress.push(p.textContent.trim());
        });
    }""")


def job_id_of(page) -> int:
    match = re.search(r"/jobs/(\d+)$", page.url)
    assert match, f"not on a job page: {page.url}"
    return int(match.group(1))


# --------------------------------------------------------------------------- tests


def test_submit_a_photo_and_watch_it_run(page, stack):
    from playwright.sync_api import expect

    from worker.media.samples import sample_path

    steps = 4
    page.goto("/jobs/new")
    preview = page.locator("#preview")
    expect(preview).to_be_hidden()
    page.set_input_files("#image", str(sample_path("chelsea")))
    expect(preview).to_be_visible()
    page.wait_for_function("() => { const i = document.getElementById('preview'); "
                           "return i.complete && i.naturalWidth > 0; }")
    assert preview.evaluate("i => i.naturalWidth") == 451  # chelsea.png is 451 x 300
    page.fill("#steps", str(steps))
    page.fill("#candidates", "6")
    page.fill("#top_k", "5")
    page.fill("#seed", "3")
    expect(page.locator("#llm")).to_be_hidden()  # inside the closed "Models" details
    page.click("details > summary")
    page.fill("#llm", GENERATOR)
    page.fill("#scorer", SCORER)
    page.click("#submit-job")

    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_id = job_id_of(page)
    page.evaluate("window.__marker = 1")
    watch_live_panel(page)
    expect(page.locator("p.flash")).to_contain_text(f"job {job_id} submitted")
    # The uploaded photo is the job's input, served back on the page.
    expect(page.locator("#job-input")).to_be_visible()
    page.wait_for_function("() => document.getElementById('job-input').naturalWidth === 451")
    assert scalar(stack.url, "SELECT input_name FROM jobs WHERE id = %s", (job_id,)) == "chelsea.png"

    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    progress = page.evaluate("window.__progress")
    changes = sum(1 for a, b in zip(progress, progress[1:]) if a != b)
    assert changes >= 2, f"the progress text changed {changes} times without a reload: {progress}"
    expect(page.locator("#job-progress")).to_have_text(f"step {steps} of {steps}")

    assert job_status(stack.url, job_id) == "succeeded"
    assert committed_steps(stack.url, job_id) == list(range(steps + 1))
    expect(page.locator("#score-chart")).to_have_attribute("data-points", str(steps + 1))
    # The history table was refreshed as steps landed: it counts every candidate now.
    total = len(candidate_rows(stack.url, job_id))
    expect(page.locator("#history-count")).to_have_text(count_text(total))
    assert len(table_rows(page)) == min(total, 50)
    result_score = scalar(stack.url, "SELECT result_score FROM jobs WHERE id = %s", (job_id,))
    expect(page.locator("#best-score")).to_have_text(f"{result_score:.4f}")
    top = query(stack.url, "SELECT c.score, c.text FROM top_entries t JOIN candidates c ON c.id = t.candidate_id "
                           "WHERE t.job_id = %s AND t.step = %s ORDER BY t.rank", (job_id, steps))
    assert len(top) == 5
    expect(page.locator("#top-k > li")).to_have_count(len(top))
    expect(page.locator("#top-k > li")).to_have_text([f"{score:.4f} {text}" for score, text in top])
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


def test_sort_and_filter_the_history(page, stack, finished_job):
    from playwright.sync_api import expect

    job_id = finished_job
    every = candidate_rows(stack.url, job_id)
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#history-count")).to_have_text(count_text(len(every)))

    # Sorting: the first page is the best (or worst) 50 scores, in order.
    rows = change_history(page, lambda: page.select_option("#history-sort", "-score"))
    scores = [r["score"] for r in rows]
    assert len(rows) == min(len(every), 50)
    assert scores == sorted(scores, reverse=True), scores
    assert scores[0] == round(max(r[2] for r in every), 4)
    rows = change_history(page, lambda: page.select_option("#history-sort", "score"))
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores), scores
    assert scores[0] == round(min(r[2] for r in every), 4)
    # The column header toggles the sort too.
    rows = change_history(page, lambda: page.click("#history-table th button[data-sort='-score']"))
    expect(page.locator("#history-sort")).to_have_value("-score")
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)

    # One step.
    rows = change_history(page, lambda: page.select_option("#history-step", "0"))
    assert {r["step"] for r in rows} == {0}
    at_zero = sum(1 for row in candidate_rows(stack.url, job_id) if row[0] == 0)
    expect(page.locator("#history-count")).to_have_text(count_text(at_zero))
    assert len(rows) == min(at_zero, 50)
    rows = change_history(page, lambda: page.select_option("#history-step", "2"))
    assert {r["step"] for r in rows} == {2}

    # Only the top K of each step (all steps again).
    change_history(page, lambda: page.select_option("#history-step", ""))
    rows = change_history(page, lambda: page.check("#history-top"))
    in_top = candidate_rows(stack.url, job_id, top_only=True)
    assert in_top, "no candidate has a rank"
    expect(page.locator("#history-count")).to_have_text(count_text(len(in_top)))
    assert len(rows) == min(len(in_top), 50)
    assert all(r["rank"] is not None for r in rows)
    expect(page.locator("#history-table tbody tr.in-top")).to_have_count(len(rows))
    change_history(page, lambda: page.uncheck("#history-top"))
    expect(page.locator("#history-count")).to_have_text(count_text(len(every)))

    # Text search, typed key by key (the form waits for a pause in the typing).
    word = Counter(w for r in every if r[0] > 0 for w in set(r[3].lower().split()) if len(w) > 3).most_common(1)[0][0]
    matching = [r for r in every if word in r[3].lower()]
    assert 0 < len(matching) < len(every)
    change_history(page, lambda: page.locator("#history-q").press_sequentially(word, delay=30))
    expect(page.locator("#history-count")).to_have_text(count_text(len(matching)))
    rows = table_rows(page)
    assert len(rows) == min(len(matching), 50)
    assert all(word in r["text"].lower() for r in rows), [r["text"] for r in rows]
    # The search keeps the other filters: with the sort still "-score", the best match first.
    assert rows[0]["score"] == round(max(r[2] for r in matching), 4)
    change_history(page, lambda: page.fill("#history-q", "zzqxnothing"))
    expect(page.locator("#history-table td.empty")).to_have_text("No candidates match.")
    expect(page.locator("#history-count")).to_have_text(count_text(0))


def test_history_pages(page, stack, finished_job):
    from playwright.sync_api import expect

    job_id = finished_job
    every = candidate_rows(stack.url, job_id)
    assert len(every) > 100, "the bootstrap step should give more than two pages"
    page.goto(f"/jobs/{job_id}")
    first = table_rows(page)
    assert first
    expect(page.locator("#history-first")).to_have_count(0)
    second = change_history(page, lambda: page.click("#history-next"))
    expect(page.locator("#history-first")).to_be_visible()
    assert len(first) == len(second) == 50
    assert not {(r["text"], r["step"]) for r in first} & {(r["text"], r["step"]) for r in second}
    # Default order: step, then best score first.
    keys = [(r["step"], -r["score"]) for r in first + second]
    assert keys == sorted(keys)
    again = change_history(page, lambda: page.click("#history-first"))
    assert again == first


def test_download_history_csv(page, stack, finished_job):
    job_id = finished_job
    page.goto(f"/jobs/{job_id}")
    with page.expect_download() as download_info:
        page.click("#download-csv")
    download = download_info.value
    assert download.suggested_filename == f"mils-job-{job_id}-history.csv"
    with open(download.path(), newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["job_id", "step", "rank", "in_top_k", "score", "text", "details", "artifact_sha256"]
        rows = list(reader)
    assert {r["job_id"] for r in rows} == {str(job_id)}
    assert all(r["in_top_k"] == str(r["rank"] != "") for r in rows)
    got = Counter((int(r["step"]), int(r["rank"]) if r["rank"] else None, float(r["score"]), r["text"])
                  for r in rows)
    want = Counter(tuple(r) for r in candidate_rows(stack.url, job_id))
    assert len(rows) == sum(want.values())
    assert got == want, f"only in the CSV: {got - want}; only in the database: {want - got}"


def test_cancel_and_resume_from_the_page(page, stack):
    from playwright.sync_api import expect

    steps = 8
    job_id = stack.submit_api(steps=steps, candidates=6, top_k=5, seed=5)
    page.goto(f"/jobs/{job_id}")
    page.wait_for_function("() => { const l = document.getElementById('live'); "
                           "return ['running', 'queued'].includes(l.dataset.status) "
                           "&& Number(l.dataset.stepsDone) >= 2; }",  # mid-job: a step running, or the next one queued
                           timeout=JOB_TIMEOUT_MS)
    page.click("#cancel-job")
    page.wait_for_url(f"**/jobs/{job_id}")
    expect(page.locator("p.flash")).to_contain_text(f"job {job_id}")
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=30_000)
    expect(page.locator("#cancel-job")).to_have_count(0)
    assert job_status(stack.url, job_id) == "cancelled", stack.describe(job_id)
    done = committed_steps(stack.url, job_id)
    assert 2 <= len(done) < steps + 1 and done == list(range(len(done))), done
    expect(page.locator("#live")).to_have_attribute("data-steps-done", str(len(done)))

    page.click("#resume-job")
    page.wait_for_url(f"**/jobs/{job_id}")
    expect(page.locator("p.flash")).to_contain_text(f"job {job_id} resumed at step {len(done)}")
    page.evaluate("window.__marker = 1")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    expect(page.locator("#resume-job")).to_have_count(0)
    expect(page.locator("#score-chart")).to_have_attribute("data-points", str(steps + 1))

    assert job_status(stack.url, job_id) == "succeeded"
    assert committed_steps(stack.url, job_id) == list(range(steps + 1))  # each step exactly once
    kinds = [kind for kind, _ in events(stack.url, job_id)]
    for kind in ("cancel_requested", "cancelled", "resumed", "succeeded"):
        assert kind in kinds, kinds
    assert kinds.index("cancel_requested") < kinds.index("cancelled") < kinds.index("resumed") \
        < kinds.index("succeeded"), kinds


def test_screenshots(page, stack, finished_job, tmp_path):
    """The submit form's screenshot for the README, and the job page of a fakes' job checked (the
    README's job-page screenshot is of a real embedded job: the next test)."""
    from playwright.sync_api import expect

    from worker.media.samples import sample_path

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto("/jobs/new")
    page.set_input_files("#image", str(sample_path("coffee")))
    page.wait_for_function("() => { const i = document.getElementById('preview'); "
                           "return !i.hidden && i.complete && i.naturalWidth > 0; }")
    page.click("details > summary")
    expect(page.locator("#llm")).to_be_visible()
    form_png = SCREENSHOTS / "submit-form.png"
    page.screenshot(path=str(form_png), full_page=True)

    page.goto(f"/jobs/{finished_job}")
    expect(page.locator("#score-chart")).to_have_attribute("data-points", "4")
    expect(page.locator("#job-input")).to_be_visible()
    page.wait_for_function("() => document.getElementById('job-input').naturalWidth > 0")
    job_png = tmp_path / "job-page.png"
    page.screenshot(path=str(job_png), full_page=True)

    from PIL import Image

    for path in (form_png, job_png):
        with Image.open(path) as image:
            assert image.width == VIEWPORT["width"] and image.height >= VIEWPORT["height"], image.size
    # The chart is drawn: its canvas has coloured (line) pixels, not only white.
    coloured = page.locator("#score-chart").evaluate("""c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && Math.abs(d[i] - d[i + 2]) > 60) n++;
        return n; }""")
    assert coloured > 100, f"the score chart has {coloured} coloured pixels"


def test_jobs_list_and_search(page, stack, finished_job):
    from playwright.sync_api import expect

    job_id = finished_job
    best_text = scalar(stack.url, "SELECT result_text FROM jobs WHERE id = %s", (job_id,))
    page.goto("/jobs")
    row = page.locator(f"#jobs-table tr[data-job-id='{job_id}']")
    expect(row).to_be_visible()
    expect(row.locator(".status")).to_have_text("succeeded")
    expect(row.locator("td.text")).to_have_text(best_text)

    word = max(re.findall(r"[A-Za-z]+", best_text), key=len)
    page.fill("input[name=q]", word)
    page.click("#job-filters button[type=submit]")
    page.wait_for_url(re.compile(r"[?&]q=" + re.escape(word)))
    expect(row).to_be_visible()
    expect(page.locator("input[name=q]")).to_have_value(word)
    matching = scalar(stack.url, "SELECT count(*) FROM jobs WHERE result_text ILIKE %s", (f"%{word}%",))
    expect(page.locator("#jobs-table tbody tr[data-job-id]")).to_have_count(matching)

    page.fill("input[name=q]", "zzqxnothing")
    page.click("#job-filters button[type=submit]")
    page.wait_for_url(re.compile(r"q=zzqxnothing"))
    expect(page.locator("#jobs-table td.empty")).to_contain_text("No jobs match")
    expect(row).to_have_count(0)

    # The status filter: the finished job is under "succeeded", not under "running".
    page.goto("/jobs?status=running")
    expect(row).to_have_count(0)
    page.select_option("select[name=status]", "succeeded")
    page.click("#job-filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=succeeded"))
    expect(row).to_be_visible()
    # The link opens the job page.
    row.locator("a").click()
    page.wait_for_url(f"**/jobs/{job_id}")
    expect(page.locator("h1")).to_contain_text(f"Job #{job_id}")


@pytest.mark.slow
def test_screenshot_of_a_real_embedded_job(page, stack, mils_home):
    """The README's job page: a short job of the embedded default models (real weights) on the
    coffee photo, run by `mils caption` into the stack's database, then shown by its web page."""
    from playwright.sync_api import expect

    env = mils_env(home=mils_home, database_url=stack.url, broker_url=stack.redis.url)
    out = run_mils("caption", "--sample", "coffee", "--steps", "2", "--candidates", "6", "--seed", "3", "--json",
                   env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    job_id = json.loads(out.stdout)["job_id"]
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#score-chart")).to_have_attribute("data-points", "3")
    page.wait_for_function("() => document.getElementById('job-input').naturalWidth > 0")
    assert "embedded" in page.locator("body").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "job-page.png"), full_page=True)
