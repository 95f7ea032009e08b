"""Batches in a real browser: headless Chromium (Playwright) against `mils web` and a `mils worker`,
both real subprocesses, on the real PostgreSQL and a private Redis (the services, browser and
page fixtures are tests/web/test_web_browser.py's; only the stack differs: its web server has a
dataset folder, MILS_DATASET_ROOT, and its fake models take STEP_SECONDS a step).

Everything a user does happens in the page: filling the new-batch form with a manifest naming
files in the server's dataset folder or with an archive of images, watching the live panel (htmx
swaps it every 2 s) count the jobs done and the score chart grow, opening an item's job, filtering
the items, downloading the COCO results, cancelling and resuming the batch. What the page shows is
checked against the database the worker wrote. A full-page screenshot of a finished (and
evaluated) batch is written to docs/screenshots/batch-page.png.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.support.services import RedisServer, Worker, mils_env, query, run_mils, scalar
from tests.web.test_web_browser import (  # noqa: F401 - fixtures used by name
    GENERATOR,
    SCORER,
    SCREENSHOTS,
    VIEWPORT,
    Stack,
    WebServer,
    browser,
    database,
    page,
)

STEP_SECONDS = 0.2  # every optimization step of the fake generator (MILS_FAKE_STEP_SECONDS)
BATCH_TIMEOUT_MS = 90_000  # generous: the machine may be busy with other work
COLOURS = [(220, 60, 40), (40, 160, 60), (40, 80, 200), (230, 200, 40), (120, 40, 160)]


# --------------------------------------------------------------------------- services


def png(i: int, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, COLOURS[i % len(COLOURS)])
    image.paste((255, 255, 255), (8 * i, 8, 8 * i + 16, 24))  # and a white mark: no two alike
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> Path:
    """The server's dataset folder: four photos and a manifest naming them, with a reference each."""
    root = tmp_path_factory.mktemp("datasets")
    (root / "photos").mkdir()
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "path", "reference"])
        for i in range(4):
            (root / "photos" / f"p{i + 1}.png").write_bytes(png(i))
            writer.writerow([str(i + 1), f"photos/p{i + 1}.png", f"a small coloured square number {i + 1}"])
    return root


@pytest.fixture(scope="module")
def stack(database, dataset_root, tmp_path_factory):
    """The module's database, Redis, web server (with MILS_DATASET_ROOT) and worker."""
    folder = tmp_path_factory.mktemp("batch-browser")
    home = folder / "mils-home"
    home.mkdir()
    redis = RedisServer(folder / "redis")
    web = worker = None
    try:
        redis.start()
        env = mils_env(home=home, database_url=database, broker_url=redis.url,
                       MILS_FAKE_STEP_SECONDS=str(STEP_SECONDS), MILS_WEB_AUTH="none",
                       MILS_DATASET_ROOT=str(dataset_root))
        out = run_mils("db", "upgrade", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        worker = Worker("batch-browser", env, folder)
        web = WebServer(env, folder)
        web.wait_ready()
        worker.wait_ready()
        stack = Stack(database, redis, web, worker)
        stack.env = env
        yield stack
    finally:
        for process in (web, worker):
            if process is not None:
                process.close()
        redis.close()


# --------------------------------------------------------------------------- helpers


def describe(stack, name: str) -> str:
    """The batch's jobs as stored, and the logs: for a failure's message."""
    try:
        rows = query(stack.url, "SELECT i.item_key, j.id, j.status, j.error FROM batch_items i JOIN batches b "
                                "ON b.id = i.batch_id LEFT JOIN jobs j ON j.id = i.job_id WHERE b.name = %s "
                                "ORDER BY i.position", (name,))
        state = f"batch {name} items (key, job, status, error): {rows}\n"
    except Exception as exc:  # noqa: BLE001 - only for the failure message
        state = f"(database unreadable: {exc!r})\n"
    return (state + f"===== worker log\n{stack.worker.text()[-6000:]}\n"
            f"===== web log\n{stack.web.text()[-3000:]}")


def batch_items(stack, name: str) -> list[tuple]:
    """(key, job id, job status, job result text) of every item, in submission order."""
    return query(stack.url, "SELECT i.item_key, j.id, j.status, j.result_text FROM batch_items i "
                            "JOIN batches b ON b.id = i.batch_id LEFT JOIN jobs j ON j.id = i.job_id "
                            "WHERE b.name = %s ORDER BY i.position", (name,))


def fill_batch_form(page, name: str, *, steps: int, manifest: Path | None = None, archive: Path | None = None,
                    seed: int | None = None) -> None:
    from playwright.sync_api import expect

    page.goto("/batches/new")
    expect(page.locator("h1")).to_have_text("New batch")
    page.fill("#name", name)
    if manifest is not None:
        page.set_input_files("#manifest", str(manifest))
    if archive is not None:
        page.set_input_files("#archive", str(archive))
    page.fill("#steps", str(steps))
    page.fill("#candidates", "6")
    page.fill("#top_k", "5")
    if seed is not None:
        page.fill("#seed", str(seed))
    expect(page.locator("#llm")).to_be_hidden()  # inside the closed "Models" details
    page.click("#batch-models > summary")
    page.fill("#llm", GENERATOR)
    page.fill("#scorer", SCORER)
    page.click("#submit-batch")
    page.wait_for_url(f"**/batches/{name}")


def wait_done(page, stack, name: str, n: int) -> None:
    from playwright.sync_api import expect

    try:
        expect(page.locator("#batch-done")).to_have_text(str(n), timeout=BATCH_TIMEOUT_MS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(stack, name)}") from None


def watch_live_panel(page) -> None:
    """Record '#batch-done of #batch-jobs' after every swap of the live panel, in the page itself."""
    page.evaluate("""() => {
        const now = () => document.getElementById('batch-done').textContent.trim();
        window.__done = [now()];
        document.addEventListener('htmx:afterSettle', (e) => {
            if (document.getElementById('batch-done')) window.__done.push(now());
        });
    }""")


def item_rows(page) -> list[dict]:
    cells = page.locator("#items-table tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.key, ...Array.from(r.querySelectorAll('td'), td => td.textContent.trim())])")
    return [{"key": c[0], "status": c[3], "job": c[4], "score": c[5], "text": c[6]} for c in cells]


# --------------------------------------------------------------------------- tests


def test_start_a_batch_from_a_manifest_and_watch_it_finish(page, stack, dataset_root):
    from playwright.sync_api import expect

    name = "manifest-batch"
    steps = 2
    fill_batch_form(page, name, steps=steps, manifest=dataset_root / "manifest.csv", seed=3)
    expect(page.locator("p.flash")).to_contain_text(f"batch {name}: 4 item(s) queued, 0 already in it, 0 rejected")
    expect(page.locator("h1")).to_have_text(f"Batch {name} image-caption, 4 items")
    expect(page.locator("#batch-jobs")).to_have_text("4")
    page.evaluate("window.__marker = 1")
    watch_live_panel(page)

    wait_done(page, stack, name, 4)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    seen = page.evaluate("window.__done")
    assert seen[-1] == "4" and len(set(seen)) >= 2, f"the live panel never changed without a reload: {seen}"
    expect(page.locator("#batch-counts li")).to_have_text(["succeeded 4"])
    expect(page.locator("#batch-live")).to_have_attribute("data-finished", "true")
    expect(page.locator("#batch-rate")).to_contain_text(f"steps {4 * (steps + 1)} / {4 * (steps + 1)}")
    expect(page.locator("#cancel-batch")).to_have_count(0)  # a finished batch has nothing to cancel
    # The chart followed the live panel: a point per step (0 is the bootstrap).
    expect(page.locator("#batch-score-chart")).to_have_attribute("data-points", str(steps + 1))
    assert int(page.locator("#batch-score-chart").get_attribute("data-points")) >= 1

    items = batch_items(stack, name)
    assert [(key, status) for key, _, status, _ in items] == [(str(i), "succeeded") for i in range(1, 5)], \
        describe(stack, name)
    references = query(stack.url, "SELECT i.item_key, i.references FROM batch_items i JOIN batches b "
                                  "ON b.id = i.batch_id WHERE b.name = %s ORDER BY i.position", (name,))
    assert references == [(str(i), [f"a small coloured square number {i}"]) for i in range(1, 5)]

    # The items, filtered to the succeeded ones (htmx swaps the table): each caption is the job's result.
    page.select_option("#items-status", "succeeded")
    expect(page.locator("#items-table tbody tr .status")).to_have_text(["succeeded"] * 4)
    shown = item_rows(page)
    assert [(r["key"], r["job"], r["text"]) for r in shown] == \
        [(key, f"#{job_id}", text) for key, job_id, _, text in items]
    scores = dict(query(stack.url, "SELECT id, result_score FROM jobs WHERE id = ANY(%s)",
                        ([job_id for _, job_id, _, _ in items],)))
    assert [r["score"] for r in shown] == [f"{scores[job_id]:.4f}" for _, job_id, _, _ in items]
    page.select_option("#items-status", "rejected")
    expect(page.locator("#items-table td.empty")).to_have_text("No items with this status.")
    page.select_option("#items-status", "succeeded")
    expect(page.locator("#items-table tbody tr")).to_have_count(4)

    # The first item's job page names its batch and links back to it.
    first_job = items[0][1]
    page.locator("a.item-job").first.click()
    page.wait_for_url(f"**/jobs/{first_job}")
    expect(page.locator("#job-batch")).to_have_text(f"Item 1 of batch {name}")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    page.go_back()
    page.wait_for_url(f"**/batches/{name}")

    # The COCO results, downloaded: one entry per item, its id a number, its caption the job's.
    with page.expect_download() as download_info:
        page.click("#download-coco")
    download = download_info.value
    assert download.suggested_filename == f"mils-batch-{name}-results.json"
    results = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert len(results) == 4 and all(set(r) == {"image_id", "caption"} for r in results)
    assert results == [{"image_id": int(key), "caption": text} for key, _, _, text in items]

    # After a reload the items table shows the finished jobs as they are in the database.
    page.reload()
    assert [(r["key"], r["status"], r["text"]) for r in item_rows(page)] == \
        [(key, "succeeded", text) for key, _, _, text in items]


def test_start_a_batch_from_an_archive_and_submit_it_again(page, stack, tmp_path):
    from playwright.sync_api import expect

    name = "archive-batch"
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, member in enumerate(["cats/one.png", "cats/two.png", "dogs/three.png"]):
            zf.writestr(member, png(i + 1))
        zf.writestr("notes.txt", "not an image: passed over")
    fill_batch_form(page, name, steps=1, archive=archive)
    expect(page.locator("p.flash")).to_contain_text(f"batch {name}: 3 item(s) queued, 0 already in it, 0 rejected")
    expect(page.locator("#batch-jobs")).to_have_text("3")
    wait_done(page, stack, name, 3)
    expect(page.locator("#batch-counts li")).to_have_text(["succeeded 3"])
    expect(page.locator("#batch-score-chart")).to_have_attribute("data-points", "2")
    items = batch_items(stack, name)
    assert [(key, status) for key, _, status, _ in items] == \
        [("cats/one.png", "succeeded"), ("cats/two.png", "succeeded"), ("dogs/three.png", "succeeded")]
    expect(page.locator("h3:has-text('Submissions') + ol > li")).to_have_text(
        ["zip photos.zip: 3 item(s), 1 other file(s) passed over"])

    # The same archive again: nothing new; the batch page says so.
    fill_batch_form(page, name, steps=1, archive=archive)
    expect(page.locator("p.flash")).to_contain_text(f"batch {name}: 0 item(s) queued, 3 already in it, 0 rejected")
    assert len(batch_items(stack, name)) == 3
    # Other settings for the same batch are refused next to the form, and nothing is added.
    page.goto("/batches/new")
    page.fill("#name", name)
    page.set_input_files("#archive", str(archive))
    page.fill("#steps", "4")
    with page.expect_response(lambda r: r.url.endswith("/batches/new") and r.request.method == "POST") as answer:
        page.click("#submit-batch")
    assert answer.value.status == 400
    expect(page.locator("p.flash.error")).to_contain_text("steps=1, not 4")
    forget_expected_400(page)
    assert len(batch_items(stack, name)) == 3

    # It is listed with the other batches.
    page.goto("/batches")
    row = page.locator(f"#batches-table tr[data-batch='{name}']")
    expect(row.locator("td")).to_have_text([name, "image-caption", "3", "3 / 3", "", "0", "finished", re.compile(".+")])
    row.locator("a").click()
    page.wait_for_url(f"**/batches/{name}")
    forget_expected_400(page)


def forget_expected_400(page) -> None:
    """Drop the refused form's 400 (the answer the test expects) from the page's recorded errors,
    both as the response and as the console's "Failed to load resource", whenever they arrived."""
    page.js_errors[:] = [e for e in page.js_errors if not ("400" in e and "/batches/new" in e)]


def test_cancel_and_resume_a_batch_from_its_page(page, stack, tmp_path):
    from playwright.sync_api import expect

    name = "cancelled-batch"
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(4):
            zf.writestr(f"img{i}.png", png(i, size=(40 + i, 30)))
    fill_batch_form(page, name, steps=12, archive=archive)
    # Cancel once the first job has committed a step (the worker runs one step at a time).
    page.wait_for_function("() => Number(document.getElementById('batch-live').dataset.stepsDone) >= 2",
                           timeout=BATCH_TIMEOUT_MS)
    page.click("#cancel-batch")
    page.wait_for_url(f"**/batches/{name}")
    expect(page.locator("p.flash")).to_contain_text(f"batch {name}:")
    expect(page.locator("p.flash")).to_contain_text("job(s) cancelled or stopping")
    expect(page.locator("#batch-live")).to_have_attribute("data-finished", "true", timeout=30_000)
    statuses = [status for _, _, status, _ in batch_items(stack, name)]
    assert "cancelled" in statuses and set(statuses) <= {"cancelled", "succeeded"}, describe(stack, name)
    cancelled = statuses.count("cancelled")
    expect(page.locator("#batch-counts")).to_contain_text(f"cancelled {cancelled}")

    page.click("#resume-batch")
    page.wait_for_url(f"**/batches/{name}")
    expect(page.locator("p.flash")).to_contain_text(f"batch {name}: {cancelled} job(s) queued again")
    wait_done(page, stack, name, 4)
    expect(page.locator("#batch-counts li")).to_have_text(["succeeded 4"])
    expect(page.locator("#resume-batch")).to_have_count(0)
    assert [status for _, _, status, _ in batch_items(stack, name)] == ["succeeded"] * 4
    # Each job ran each of its steps exactly once, the cancelled ones included.
    for _, job_id, _, _ in batch_items(stack, name):
        steps = [r[0] for r in query(stack.url, "SELECT step FROM steps WHERE job_id = %s ORDER BY step", (job_id,))]
        assert steps == list(range(13)), (job_id, steps)


def test_screenshot_of_an_evaluated_batch(page, stack, dataset_root):
    """docs/screenshots/batch-page.png: a finished batch, evaluated against its references
    (`mils batch eval`), with its score and metric charts drawn."""
    from playwright.sync_api import expect

    name = "coco-demo"
    out = run_mils("batch", "submit", name, str(dataset_root / "manifest.csv"), "--llm", GENERATOR,
                   "--scorer", SCORER, "--steps", "3", "--candidates", "6", "--top-k", "5", env=stack.env)
    assert out.returncode == 0, out.stdout + out.stderr
    page.goto(f"/batches/{name}")
    wait_done(page, stack, name, 4)
    out = run_mils("batch", "eval", name, env=stack.env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    page.reload()
    expect(page.locator("#batch-score-chart")).to_have_attribute("data-points", "4")
    expect(page.locator("#batch-metric-chart")).to_have_attribute("data-points", "4")
    expect(page.locator("#metrics-table tbody tr")).to_have_count(4 + 1)  # steps 0..3 and the final row
    expect(page.locator("#metrics-table thead th")).to_have_text(
        ["", "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "tokens / item", "LLM s / item"])
    evaluated = scalar(stack.url, "SELECT e.items FROM batch_evaluations e JOIN batches b ON b.id = e.batch_id "
                                  "WHERE b.name = %s", (name,))
    assert evaluated == 4
    expect(page.locator("#batch-evaluation p").first).to_contain_text("4 item(s) against the batch's own references")
    for chart in ("#batch-score-chart", "#batch-metric-chart"):
        coloured = page.locator(chart).evaluate("""c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && Math.abs(d[i] - d[i + 2]) > 60) n++;
            return n; }""")
        assert coloured > 100, f"{chart} has {coloured} coloured pixels"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "batch-page.png"
    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as image:
        assert image.width == VIEWPORT["width"] and image.height >= VIEWPORT["height"], image.size


def test_run_a_variant_and_continue_it_from_the_batch_page(page, stack, tmp_path):
    from playwright.sync_api import expect

    name = "varied"
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(2):
            zf.writestr(f"img{i}.png", png(i, size=(40 + i, 30)))
    fill_batch_form(page, name, steps=1, archive=archive)
    wait_done(page, stack, name, 2)

    expect(page.locator("#variant-form #top_k")).to_be_hidden()  # inside the closed "Run a variant"
    page.click("#batch-variant > summary")
    expect(page.locator("#variant-form #top_k")).to_have_value("5")  # the batch's own values
    page.fill("#variant-form #name", f"{name}-k3")
    page.fill("#variant-form #top_k", "3")
    page.click("#submit-variant")
    page.wait_for_url(f"**/batches/{name}-k3")
    expect(page.locator("p.flash")).to_contain_text(f"batch {name}-k3, a variant of {name}: 2 item(s); "
                                                    "settings.top_k 5 -> 3")
    expect(page.locator("#batch-like")).to_have_text(name)
    wait_done(page, stack, f"{name}-k3", 2)

    page.fill("#continue-batch input[name=steps]", "2")
    page.click("#continue-batch button")
    page.wait_for_url(f"**/batches/{name}-k3")
    expect(page.locator("p.flash")).to_contain_text(f"batch {name}-k3: 2 job(s) queued again, to 2 steps")
    expect(page.locator("#batch-live")).to_have_attribute("data-finished", "true", timeout=BATCH_TIMEOUT_MS)
    for _, job_id, status, _ in batch_items(stack, f"{name}-k3"):
        steps = [r[0] for r in query(stack.url, "SELECT step FROM steps WHERE job_id = %s ORDER BY step", (job_id,))]
        assert status == "succeeded" and steps == [0, 1, 2], (job_id, status, steps)
    kept = {k: s for k, _, s, _ in batch_items(stack, name)}
    assert kept == {k: "succeeded" for k in kept}
