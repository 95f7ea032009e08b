"""The JSON API and the pages, through Flask's test client, on the real PostgreSQL (and SQLite
where the store differs), with a real SQLite-backed broker queue per test.

Jobs are run in this process with the tiny fakes of tests/support/fakes.py (`run_in_process`), so
their history is real: step 0 scores the 5,000-caption pool, later steps the fakes' texts.
The browser tests (tests/web/test_web_browser.py) drive the same app through Chromium with a
real worker; here every endpoint and its error cases are covered one by one.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import re
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
import yaml
from tests.support.fakes import HiddenCaptionScorer, ScriptedGenerator
from tests.support.services import queued, use_broker
from PIL import Image
from sqlalchemy import func, insert, select

from web import create_app
from worker.store.tokens import create_token, revoke_token
from worker.runner import JobModels, run_in_process
from worker.media.samples import sample_path
from worker.store.db import open_store
from worker.store.schema import ApiToken, Candidate, Job, JobEvent, JobStatus, Step

ROOT = Path(__file__).resolve().parents[2]
FAKE_LLM, FAKE_SCORER = "py:tests.support.fakes:worker_generator", "py:tests.support.fakes:worker_scorer"
TARGET = "a tabby cat sitting on a wooden table in the sun"
TABLES = (Job, Step, Candidate, JobEvent)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def app(pg, queue_db):
    return create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def Session(app, pg):
    return open_store(pg)


def fake_models(_generator: str, _scorer: str) -> JobModels:
    return JobModels(ScriptedGenerator(extra_words=["tabby", "wooden", "sun", "sitting", "kitten"]),
                  HiddenCaptionScorer(TARGET))


def submit(client, **fields) -> dict:
    data = {"sample": "chelsea", "llm": FAKE_LLM, "scorer": FAKE_SCORER, "steps": "3", "candidates": "6",
            "top_k": "5", **fields}
    response = client.post("/api/jobs", data=data)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def run_job(Session, job_id: int) -> None:
    for _ in run_in_process(Session, job_id, fake_models):
        pass


@pytest.fixture
def finished_job(client, Session) -> int:
    job_id = submit(client)["id"]
    run_job(Session, job_id)
    return job_id


def counts(Session) -> dict[str, int]:
    with Session() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in TABLES}


def db_candidates(Session, job_id: int) -> list[tuple]:
    """(step, rank, score, text) of every candidate stored: rows, and a compactly kept step 0
    (its rows are then only the anchors of its top K; see worker.store.pools)."""
    from worker.store.pools import pool_of_job, pool_rows

    with Session() as s:
        pool = pool_of_job(s, job_id)
        query = select(Candidate.step, Candidate.rank, Candidate.score, Candidate.text).where(Candidate.job_id == job_id)
        rows = s.execute(query.where(Candidate.step > 0) if pool else query).all()
        return [(r.step, r.rank, r.score, r.text) for r in pool_rows(s, job_id, pool)] + rows if pool else rows


def png_bytes(size=(32, 24), mode="RGB", fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode != "RGB" else (200, 120, 40)).save(buffer, fmt)
    return buffer.getvalue()


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    body = response.get_json()
    assert body["error"]["status"] == status
    return body["error"]["message"]


# --------------------------------------------------------------------------- submitting


def test_submit_a_sample_and_an_upload_stores_and_queues_the_job(client, Session, queue_db):
    job = submit(client)
    assert job["status"] == "queued" and job["steps_total"] == 4 and job["input_name"] == "chelsea.png"
    assert job["settings"]["steps"] == 3 and job["settings"]["top_k"] == 5
    assert job["priority"] == "normal" and job["queued_at"] and job["worker"] is None  # waiting, since then
    photo = sample_path("coffee").read_bytes()
    response = client.post("/api/jobs", data={"file": (io.BytesIO(photo), "../../etc/My Photo.png"),
                                              "llm": FAKE_LLM, "scorer": FAKE_SCORER, "seed": "7",
                                              "priority": "high"})
    assert response.status_code == 201
    uploaded = response.get_json()
    assert response.headers["Location"].endswith(f"/api/jobs/{uploaded['id']}")
    # The client's file name is a label made safe, never a path.
    assert uploaded["input_name"] == "etc_My_Photo.png"
    assert uploaded["settings"]["seed"] == 7 and uploaded["priority"] == "high"
    assert queued(queue_db) == [(job["id"], 0), (uploaded["id"], 0)]
    stored = client.get(uploaded["links"]["input"])
    assert stored.data == photo and stored.mimetype == "image/png"
    assert stored.headers["X-Content-Type-Options"] == "nosniff"
    # A real LLM gets the paper's defaults unless told otherwise; the embedded one its own.
    assert client.post("/api/jobs", data={"sample": "chelsea"}).get_json()["settings"]["steps"] == 5


def _bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(buffer, "PNG")  # 50 megapixels in a few kB
    return buffer.getvalue()


BAD_SUBMISSIONS = [
    ("not an image", {"file": (b"hello, not an image", "x.png")}, 400, r"not an image"),
    ("truncated", {"file": (png_bytes((64, 64))[:-40], "t.png")}, 400, r"truncated or corrupt"),
    ("format not allowed", {"file": (png_bytes(fmt="PPM"), "x.ppm")}, 400, r"PPM images are not accepted"),
    ("decompression bomb", {"file": (_bomb_png(), "bomb.png")}, 400, r"over the 40,000,000-pixel limit"),
    ("empty file", {"file": (b"", "empty.png")}, 400, r"send an image file or|empty"),
    ("no input", {}, 400, r"send an image file or the name of a bundled sample"),
    ("file and sample", {"file": (png_bytes(), "a.png"), "sample": "chelsea"}, 400, r"one of them"),
    ("unknown sample", {"sample": "unicorn"}, 400, r"unknown sample 'unicorn'"),
    ("steps not a number", {"sample": "chelsea", "steps": "ten"}, 400, r"steps must be a whole number"),
    ("zero steps", {"sample": "chelsea", "steps": "0"}, 400, r"steps must be between 1 and 1000"),
    ("epsilon out of range", {"sample": "chelsea", "epsilon": "2"}, 400, r"epsilon must be between 0 and 1"),
    ("unknown task", {"sample": "chelsea", "task": "dance"}, 400, r"unknown task 'dance'"),
    ("unknown priority", {"sample": "chelsea", "priority": "urgent"}, 400,
     r"priority must be one of low, normal, high, not 'urgent'"),
    ("unknown scorer", {"sample": "chelsea", "scorer": "clippy"}, 400, r"unknown scorer 'clippy'"),
]


@pytest.mark.parametrize("fields, status, message", [b[1:] for b in BAD_SUBMISSIONS],
                         ids=[b[0] for b in BAD_SUBMISSIONS])
def test_bad_submissions_are_refused_with_a_message_and_store_nothing(client, Session, queue_db, fields,
                                                                      status, message):
    finished = submit(client)["id"]  # something already stored, that must stay as it is
    before = counts(Session)
    data = {k: (io.BytesIO(v[0]), v[1]) if k == "file" else v for k, v in fields.items()}
    assert re.search(message, error_of(client.post("/api/jobs", data=data), status))
    assert counts(Session) == before
    assert queued(queue_db) == [(finished, 0)]


def test_an_upload_over_the_size_limit_is_a_413(pg, queue_db):
    app = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "MAX_CONTENT_LENGTH": 100_000})
    photo = sample_path("chelsea").read_bytes()
    assert len(photo) > 100_000
    response = app.test_client().post("/api/jobs", data={"file": (io.BytesIO(photo), "big.png")})
    assert "over the 100,000-byte limit" in error_of(response, 413)
    assert counts(open_store(pg))["jobs"] == 0


def test_a_stored_job_the_broker_did_not_take_is_a_503_naming_it(client, Session):
    use_broker("redis://127.0.0.1:1/0")  # nothing listens there
    response = client.post("/api/jobs", data={"sample": "chelsea", "llm": FAKE_LLM, "scorer": FAKE_SCORER})
    body = response.get_json()["error"]
    assert response.status_code == 503 and "mils resume" in body["message"]
    with Session() as s:
        assert s.get(Job, body["job_id"]).status == JobStatus.QUEUED  # stored, resumable


# --------------------------------------------------------------------------- reading


def test_job_detail_lists_steps_top_k_and_events(client, finished_job, Session):
    job = client.get(f"/api/jobs/{finished_job}").get_json()
    assert job["status"] == "succeeded" and job["steps_done"] == job["steps_total"] == 4
    assert [s["step"] for s in job["steps"]] == [0, 1, 2, 3]
    assert len(job["top_k"]) == 5 and job["top_k"][0]["score"] == job["best_score"]
    assert [e["kind"] for e in job["events"]][0] == "submitted" and job["events"][-1]["kind"] == "succeeded"
    best = [s["best_score"] for s in job["steps"]]
    assert best == sorted(best)


def test_jobs_list_filters_searches_and_pages(client, Session, queue_db):
    first = submit(client)["id"]
    run_job(Session, first)
    others = [submit(client)["id"] for _ in range(4)]
    listed = client.get("/api/jobs").get_json()
    assert [j["id"] for j in listed["jobs"]] == [*reversed(others), first] and listed["next_cursor"] is None
    assert [j["id"] for j in client.get("/api/jobs?status=succeeded").get_json()["jobs"]] == [first]
    assert [j["id"] for j in client.get("/api/jobs?status=queued").get_json()["jobs"]] == others[::-1]
    word = client.get(f"/api/jobs/{first}").get_json()["best_text"].split()[-1].upper()
    assert [j["id"] for j in client.get(f"/api/jobs?q={word}").get_json()["jobs"]] == [first]
    assert client.get("/api/jobs?q=no-such-caption%25_").get_json()["jobs"] == []
    seen, cursor = [], None
    while True:
        page = client.get("/api/jobs", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})}).get_json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [*reversed(others), first]


@pytest.mark.parametrize("sort", ["step", "-step", "-score", "score"])
def test_candidate_pages_walk_the_whole_history_in_order(client, finished_job, Session, sort):
    rows, cursor = [], None
    while True:
        params = {"sort": sort, "limit": 997, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/api/jobs/{finished_job}/candidates", query_string=params).get_json()
        rows += page["candidates"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert page["total"] == len(rows) == len(db_candidates(Session, finished_job)) > 5000
    keys = {"step": lambda r: (r["step"], -r["score"]), "-step": lambda r: (-r["step"], -r["score"]),
            "-score": lambda r: -r["score"], "score": lambda r: r["score"]}[sort]
    assert [keys(r) for r in rows] == sorted(keys(r) for r in rows)
    assert sorted((r["step"], r["text"]) for r in rows) == sorted((s, t) for s, _, _, t in db_candidates(Session, finished_job))


def test_candidate_filters(client, finished_job, Session):
    everything = db_candidates(Session, finished_job)
    step2 = client.get(f"/api/jobs/{finished_job}/candidates?step=2&limit=1000").get_json()
    assert {c["step"] for c in step2["candidates"]} == {2}
    assert step2["total"] == len(step2["candidates"]) == sum(1 for s, *_ in everything if s == 2)
    top = client.get(f"/api/jobs/{finished_job}/candidates?top=true&limit=1000").get_json()
    assert top["total"] == sum(1 for _, rank, *_ in everything if rank is not None)
    assert all(c["in_top_k"] and c["rank"] >= 1 for c in top["candidates"])
    found = client.get(f"/api/jobs/{finished_job}/candidates?q=TABBY&limit=1000").get_json()
    assert found["total"] == sum(1 for *_, text in everything if "tabby" in text.lower()) > 0
    assert all("tabby" in c["text"].lower() for c in found["candidates"])


def test_history_export_csv_and_json_match_the_database(client, finished_job, Session):
    stored = Counter(tuple(row) for row in db_candidates(Session, finished_job))
    response = client.get(f"/api/jobs/{finished_job}/history?format=csv")
    assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert Counter((int(r["step"]), int(r["rank"]) if r["rank"] else None, float(r["score"]), r["text"])
                   for r in rows) == stored
    as_json = client.get(f"/api/jobs/{finished_job}/history?format=json").get_json()
    assert Counter((r["step"], r["rank"], r["score"], r["text"]) for r in as_json) == stored
    page_csv = client.get(f"/jobs/{finished_job}/history.csv")  # the page's download link
    assert page_csv.data == response.data


BAD_QUERIES = [
    ("/api/jobs/{id}/candidates?limit=0", r"limit must be between 1 and 1000"),
    ("/api/jobs/{id}/candidates?limit=5000", r"limit must be between 1 and 1000"),
    ("/api/jobs/{id}/candidates?limit=many", r"limit must be a whole number"),
    ("/api/jobs/{id}/candidates?cursor=not-a-cursor", r"bad cursor"),
    ("/api/jobs/{id}/candidates?sort=-score&cursor=" + "WzEsIDIsIDNd", r"bad cursor: it belongs to another"),
    ("/api/jobs/{id}/candidates?sort=length", r"unknown sort 'length'"),
    ("/api/jobs/{id}/candidates?step=-1", r"step must be at least 0"),
    ("/api/jobs/{id}/candidates?top=maybe", r"top must be true or false"),
    ("/api/jobs?status=sleeping", r"unknown status 'sleeping'"),
    ("/api/jobs?cursor=%25%25", r"bad cursor"),
    ("/api/jobs/{id}/history?format=xml", r"unknown format 'xml'"),
]


@pytest.mark.parametrize("url, message", BAD_QUERIES, ids=[q[0].split("/")[-1] for q in BAD_QUERIES])
def test_bad_paging_and_filters_are_400s(client, finished_job, url, message):
    assert re.search(message, error_of(client.get(url.format(id=finished_job)), 400))


@pytest.mark.parametrize("method, url", [
    ("get", "/api/jobs/999"), ("get", "/api/jobs/999/candidates"), ("get", "/api/jobs/999/history"),
    ("get", "/api/jobs/999/input"), ("post", "/api/jobs/999/cancel"), ("post", "/api/jobs/999/resume"),
])
def test_unknown_job_ids_are_404s(client, method, url):
    assert error_of(getattr(client, method)(url), 404) == "no job 999"


def test_unknown_pages_are_html_404s_and_api_routes_json_404s(client):
    page = client.get("/jobs/999")
    assert page.status_code == 404 and page.mimetype == "text/html" and "no job 999" in page.get_data(as_text=True)
    assert client.get("/api/nothing-here").get_json()["error"]["status"] == 404
    assert error_of(client.delete("/api/jobs"), 405)


# --------------------------------------------------------------------------- cancel and resume


def test_cancel_and_resume_through_the_api(client, Session, queue_db):
    job_id = submit(client)["id"]
    cancelled = client.post(f"/api/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert "already cancelled" in error_of(client.post(f"/api/jobs/{job_id}/cancel"), 409)
    resumed = client.post(f"/api/jobs/{job_id}/resume")
    assert resumed.status_code == 202 and resumed.get_json()["resumed_at_step"] == 0
    assert queued(queue_db) == [(job_id, 0), (job_id, 0)]  # the first message is dropped as stale by a worker
    run_job(Session, job_id)
    assert "already succeeded" in error_of(client.post(f"/api/jobs/{job_id}/resume"), 409)
    assert "already succeeded" in error_of(client.post(f"/api/jobs/{job_id}/cancel"), 409)
    kinds = [e["kind"] for e in client.get(f"/api/jobs/{job_id}").get_json()["events"]]
    assert kinds[:4] == ["submitted", "cancel_requested", "cancelled", "resumed"] and kinds[-1] == "succeeded"


# --------------------------------------------------------------------------- the pages show the API's data


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split()


def _by_id(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert match, f"no #{element_id} in the page"
    return " ".join(_text(match.group(1)))


def test_the_job_page_and_the_api_show_the_same_data(client, finished_job):
    api = client.get(f"/api/jobs/{finished_job}").get_json()
    page = client.get(f"/jobs/{finished_job}").get_data(as_text=True)
    assert _by_id(page, "job-status") == api["status"]
    assert _by_id(page, "best-score") == f"{api['best_score']:.4f}"
    assert _by_id(page, "best-text") == " ".join(api["best_text"].split())
    assert _by_id(page, "job-progress") == f"step {api['steps_done'] - 1} of {api['steps_total'] - 1}"
    top_k = re.search(r'id="top-k">(.*?)</ol>', page, re.S).group(1)
    items = [" ".join(_text(li)) for li in re.findall(r"<li>(.*?)</li>", top_k, re.S)]
    assert items == [f"{e['score']:.4f} {' '.join(e['text'].split())}" for e in api["top_k"]]
    chart = json.loads(html.unescape(re.search(r'id="chart-data">(.*?)</script>', page, re.S).group(1)))
    assert chart == api["steps"]
    # The history table's first page is the API's first page of the same sort.
    table = re.search(r'id="history-table">(.*?)</table>', page, re.S).group(1)
    rows = [[" ".join(_text(td)) for td in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
            for tr in re.findall(r"<tr class[^>]*>(.*?)</tr>", table, re.S)]
    first = client.get(f"/api/jobs/{finished_job}/candidates?limit=50").get_json()
    assert rows == [[str(c["step"]), str(c["rank"] or ""), f"{c['score']:.4f}", " ".join(c["text"].split())]
                    for c in first["candidates"]]
    assert _by_id(page, "history-count") == f"{first['total']:,} candidates"


class _SeenFeatures(tuple):
    """A fake scorer's features that say what it saw, as the embedded scorer's do (`.seen`)."""

    seen: dict | None = None


SEEN = {"width": 451, "height": 300, "labels": [{"label": "tabby cat", "p": 0.54}, {"label": "Egyptian cat", "p": 0.2}],
        "faces": [{"box": [10, 20, 90, 91], "score": 1.16}], "text": [{"text": "STOP", "score": 0.98}],
        "colours": [{"name": "gray", "share": 0.6}, {"name": "brown", "share": 0.4}]}


def test_what_the_scorer_saw_is_stored_with_step_0_and_shown(client, Session):
    class SeeingScorer(HiddenCaptionScorer):
        def encode_sample(self, sample):
            features = _SeenFeatures(super().encode_sample(sample))
            features.seen = SEEN
            return features

    job_id = submit(client)["id"]
    before = client.get(f"/api/jobs/{job_id}").get_json()
    assert before["scorer_sees"] is None and "What the scorer sees" not in client.get(f"/jobs/{job_id}").get_data(as_text=True)
    models = lambda _g, _s: JobModels(ScriptedGenerator(extra_words=["tabby"]), SeeingScorer(TARGET))  # noqa: E731
    for _ in run_in_process(Session, job_id, models):
        pass
    assert client.get(f"/api/jobs/{job_id}").get_json()["scorer_sees"] == SEEN
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "What the scorer sees" in page
    assert _by_id(page, "sees-labels") == "tabby cat 54%, Egyptian cat 20%"
    assert _by_id(page, "sees-faces") == "1 (90×91 px)"
    assert "STOP" in _by_id(page, "sees-text")
    assert _by_id(page, "sees-colours") == "gray 60%, brown 40%"


def test_what_the_scorer_saw_in_each_video_frame_is_shown_frame_by_frame(client, Session):
    second = {**SEEN, "labels": [{"label": "tiger cat", "p": 0.61}], "faces": [], "text": []}

    class FrameSeeingScorer(HiddenCaptionScorer):  # as FrameScorer over the embedded scorer says it
        def encode_sample(self, sample):
            features = _SeenFeatures(super().encode_sample(sample))
            features.seen = {"frames": [SEEN, second]}
            return features

    job_id = submit(client)["id"]
    for _ in run_in_process(Session, job_id, lambda _g, _s: JobModels(ScriptedGenerator(), FrameSeeingScorer(TARGET))):
        pass
    assert client.get(f"/api/jobs/{job_id}").get_json()["scorer_sees"] == {"frames": [SEEN, second]}
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Frame 1" in page and "Frame 2" in page and "Frame 3" not in page
    assert _by_id(page, "sees-labels-1") == "tabby cat 54%, Egyptian cat 20%"
    assert _by_id(page, "sees-labels-2") == "tiger cat 61%"
    assert _by_id(page, "sees-faces-2") == "none" and _by_id(page, "sees-text-2") == "none"


def test_the_job_page_shows_what_the_llm_server_said_it_runs(client, Session):
    from tests.support.fake_llm_server import FakeLLMServer
    from worker.models.chat import openai_generator

    server = FakeLLMServer("echo", delay=0.01).start()
    try:
        job_id = submit(client, llm=f"openai:fake-model@{server.url}", steps="1")["id"]
        for _ in run_in_process(Session, job_id, lambda g, _s: JobModels(openai_generator(g), HiddenCaptionScorer(TARGET))):
            pass
    finally:
        server.close()
    api = client.get(f"/api/jobs/{job_id}").get_json()
    assert api["model_versions"]["generator"]["served"] == {"model": "fake-model", "fingerprint": "fake-fp-1"}
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "the server said: model fake-model, fingerprint fake-fp-1" in page


def test_the_jobs_page_and_the_api_list_the_same_jobs(client, finished_job, Session):
    queued_job = submit(client)["id"]
    page = client.get("/jobs").get_data(as_text=True)
    listed = client.get("/api/jobs").get_json()["jobs"]
    rows = re.findall(r'<tr data-job-id="(\d+)">(.*?)</tr>', page, re.S)
    assert [int(job_id) for job_id, _ in rows] == [j["id"] for j in listed] == [queued_job, finished_job]
    for (_, row), job in zip(rows, listed):
        cells = [" ".join(_text(td)) for td in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        assert cells[1] == job["status"] and cells[2] == job["task"]
        assert cells[5] == (f"{job['best_score']:.4f}" if job["best_score"] is not None else "–")


# --------------------------------------------------------------------------- forms and CSRF


def test_forms_need_their_csrf_token(pg, queue_db):
    app = create_app({"DATABASE_URL": pg})
    client = app.test_client()
    page = client.get("/jobs/new").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    refused = client.post("/jobs/new", data={"sample": "chelsea"})
    assert refused.status_code == 400 and "not sent by this site" in html.unescape(refused.get_data(as_text=True))
    assert counts(open_store(pg))["jobs"] == 0
    accepted = client.post("/jobs/new", data={"csrf_token": token, "sample": "chelsea", "llm": FAKE_LLM,
                                              "scorer": FAKE_SCORER, "task": "image-caption"})
    assert accepted.status_code == 302 and re.search(r"/jobs/\d+$", accepted.headers["Location"])
    job_id = int(accepted.headers["Location"].rsplit("/", 1)[1])
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 400  # no token
    assert client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token}).status_code == 302
    assert client.get(f"/api/jobs/{job_id}").get_json()["status"] == "cancelled"


def test_the_form_shows_bad_input_next_to_the_form_and_keeps_nothing(client, Session):
    bad = client.post("/jobs/new", data={"image": (io.BytesIO(b"GIF89a broken"), "x.gif"), "task": "image-caption",
                                         "llm": "embedded", "scorer": "embedded", "steps": "3"})
    assert bad.status_code == 400 and "x.gif: not an image in a format we can read" in html.unescape(bad.get_data(as_text=True))
    out_of_range = client.post("/jobs/new", data={"sample": "chelsea", "task": "image-caption", "steps": "0",
                                                  "llm": "embedded", "scorer": "embedded"})
    assert out_of_range.status_code == 400 and "Number must be between 1 and 1000" in out_of_range.get_data(as_text=True)
    assert counts(Session)["jobs"] == 0


# --------------------------------------------------------------------------- tokens


@pytest.fixture
def token_app(pg, queue_db):
    return create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "AUTH": "token"})


def test_api_tokens_are_needed_checked_and_stored_hashed(token_app, pg):
    Session = open_store(pg)
    with Session.begin() as s:
        token = create_token(s, "ci")
    client = token_app.test_client()
    no_token = client.get("/api/jobs")
    assert "needs a token" in error_of(no_token, 401) and no_token.headers["WWW-Authenticate"] == "Bearer"
    assert "unknown or revoked" in error_of(client.get("/api/jobs", headers={"Authorization": "Bearer mils_nope"}), 401)
    good = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/jobs", headers=good).status_code == 200
    # With tokens, models by their names only (the built-in 'embedded' here; tests/web/test_model_registry.py).
    assert client.post("/api/jobs", data={"sample": "chelsea", "llm": "embedded", "scorer": "embedded"},
                       headers=good).status_code == 201
    with Session() as s:
        row = s.scalar(select(ApiToken))
        assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest() and row.last_used_at is not None
        assert token not in repr([row.name, row.token_sha256])
    with Session.begin() as s:
        assert revoke_token(s, row.id)
    assert error_of(client.get("/api/jobs", headers=good), 401)
    assert client.get("/healthz").status_code == 200  # load balancers need no token


def test_pages_need_a_login_with_a_token_and_the_api_accepts_its_session_for_reads_only(token_app, pg):
    with open_store(pg).begin() as s:
        token = create_token(s, "person")
    client = token_app.test_client()
    redirect = client.get("/jobs?status=queued")
    assert redirect.status_code == 302 and "/login?next=" in redirect.headers["Location"]
    assert client.post("/login", data={"token": "mils_wrong"}).status_code == 401
    logged_in = client.post("/login?next=/jobs?status%3Dqueued", data={"token": token})
    assert logged_in.status_code == 302 and logged_in.headers["Location"] == "/jobs?status=queued"
    assert client.get("/jobs").status_code == 200
    assert client.get("/api/jobs").status_code == 200  # the pages' own reads
    assert error_of(client.post("/api/jobs", data={"sample": "chelsea"}), 401)  # writes need the bearer token
    assert client.post("/login?next=//evil.example/", data={"token": token}).headers["Location"] == "/"
    client.post("/logout")
    assert client.get("/jobs").status_code == 302


# --------------------------------------------------------------------------- health, description, no models


def test_healthz_reports_database_and_broker(app, client, pg):
    assert client.get("/healthz").get_json() == {"status": "ok", "database": {"ok": True}, "broker": {"ok": True}}
    use_broker("redis://127.0.0.1:1/0")
    broken = client.get("/healthz")
    assert broken.status_code == 503 and broken.get_json()["broker"]["ok"] is False
    assert "Connection refused" in broken.get_json()["broker"]["error"] and broken.get_json()["database"]["ok"]
    no_db = create_app({"DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"}).test_client()
    down = no_db.get("/healthz").get_json()
    assert down["status"] == "unavailable" and down["database"]["ok"] is False


def test_the_openapi_description_is_valid_and_lists_every_api_route(app, client):
    from openapi_spec_validator import validate

    from worker.core.settings import shown_on
    from web.openapi import input_schemas
    from worker.kinds import TASK_KINDS, all_options
    from worker.media.samples import SAMPLES

    spec = client.get("/api/openapi.json").get_json()
    validate(spec)
    written = yaml.safe_load((ROOT / "web" / "openapi.yaml").read_text())

    def form(description: dict, path: str = "/api/jobs") -> dict:
        return description["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]

    # The file's description, plus the settings and the prompt and pool uploads (both request
    # bodies), the task enum and every kind's options and attachments.
    settings = {setting.name for setting in shown_on("api")}
    served, own = form(spec)["properties"], form(written)["properties"]
    assert served.pop("task") == {**own.pop("task"), "enum": list(TASK_KINDS)}
    assert served.pop("sample") == {**own.pop("sample"), "enum": ["", *SAMPLES]}
    assert form(spec).pop("oneOf") == input_schemas()  # the input each kind takes, one of them
    user_files = {"prompt_file", "pool_file"}
    assert set(served) - set(own) == set(all_options()) | {"style_file", "style_sample"} | settings | user_files
    assert {name: served.pop(name) for name in list(own)} == own
    assert served["frames"] == {"type": "integer", "minimum": 1, "maximum": 64, "default": 8,
                                "description": "video-caption: frames sampled evenly over the video."}
    assert served["steps"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert served["seed"] == {"type": "integer", "default": 0}
    batch_served, batch_own = form(spec, "/api/batches")["properties"], form(written, "/api/batches")["properties"]
    assert set(batch_served) - set(batch_own) == settings | user_files
    assert {name: batch_served.pop(name) for name in list(batch_own)} == batch_own
    assert batch_served["seed"] == {"type": "integer", "description": "A new batch: default 0."}
    for path in ("/api/jobs", "/api/batches"):
        form(spec, path)["properties"] = form(written, path)["properties"] = {}
    assert spec == written  # everything else is the file as written
    routes = {(re.sub(r"<(?:int:)?(\w+)>", r"{\1}", rule.rule), method.lower())
              for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/") or rule.rule == "/healthz"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert routes == documented


def test_vendored_scripts_match_their_recorded_checksums():
    vendor = ROOT / "web" / "static" / "vendor"
    readme = (vendor / "README.md").read_text()
    recorded = re.findall(r"^\| `([\w.-]+\.js)` \|.*\| `([0-9a-f]{64})` \|$", readme, re.M)
    assert sorted(name for name, _ in recorded) == sorted(p.name for p in vendor.glob("*.js"))
    for name, digest in recorded:
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name


def test_the_web_app_never_imports_a_model_library(pg, tmp_path):
    script = f"""
import io, sys
from web import create_app
client = create_app({{"DATABASE_URL": {pg!r}, "WTF_CSRF_ENABLED": False}}).test_client()
from tests.support.services import use_broker
use_broker("sqla+sqlite:///{tmp_path}/q.db")
job = client.post("/api/jobs", data={{"sample": "chelsea"}}).get_json()["id"]
for url in ["/jobs", "/jobs/new", f"/jobs/{{job}}", f"/api/jobs/{{job}}", f"/jobs/{{job}}/candidates", "/healthz"]:
    assert client.get(url).status_code == 200, url
heavy = sorted(m for m in ("torch", "transformers", "open_clip", "diffusers", "cv2", "dlib", "onnxruntime",
                           "rapidocr_onnxruntime", "sklearn") if m in sys.modules)
print("loaded:", heavy)
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "loaded: []"


# --------------------------------------------------------------------------- 100,000 candidates


def test_the_history_of_100k_candidates_pages_and_streams_without_loading_it_all(client, Session, queue_db):
    job_id = submit(client)["id"]
    rows = [{"job_id": job_id, "step": i // 10_000, "text": f"candidate caption number {i} of a long run",
             "text_key": f"candidate caption number {i}", "score": ((i * 7919) % 100_003) / 100_003,
             "rank": None} for i in range(100_000)]
    with Session.begin() as s:
        s.execute(insert(Candidate), rows)
    del rows

    tracemalloc.start()
    try:
        seen, cursor, page_peaks = 0, None, []
        last_score = float("inf")
        while True:
            tracemalloc.reset_peak()
            params = {"sort": "-score", "limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = client.get(f"/api/jobs/{job_id}/candidates", query_string=params).get_json()
            page_peaks.append(tracemalloc.get_traced_memory()[1])
            scores = [c["score"] for c in page["candidates"]]
            assert scores == sorted(scores, reverse=True) and scores[0] <= last_score
            last_score, seen, cursor = scores[-1], seen + len(scores), page["next_cursor"]
            if cursor is None:
                break
        assert seen == page["total"] == 100_000

        tracemalloc.reset_peak()
        response = client.get(f"/api/jobs/{job_id}/history?format=csv", buffered=False)
        size = lines = 0
        for chunk in response.response:
            size += len(chunk)
            lines += chunk.count(b"\n") if isinstance(chunk, bytes) else chunk.count("\n")
        response.close()
        export_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lines == 100_000 + 1  # the header
    # A page holds 1,000 rows, the streamed export a batch of 1,000 at a time: both peaks stay
    # a few MB, where the whole history as Python rows would be tens of MB (the CSV alone ~7 MB).
    assert size > 7_000_000
    assert max(page_peaks) < 4 * 1024 * 1024, max(page_peaks)
    assert export_peak < 4 * 1024 * 1024, (export_peak, size)


def test_the_same_bytes_are_served_with_the_media_type_of_each_use(client):
    """One WebM with a picture and a sound, uploaded for a video job and for an audio job: stored
    once (by hash), served to each job as what that job used it as."""
    from tests.media.test_field_cases import video_with_sound

    data = video_with_sound()
    ids = {}
    for task in ("video-caption", "audio-caption"):
        created = client.post("/api/jobs", data={"task": task, "file": (io.BytesIO(data), "both.webm"),
                                                 "llm": FAKE_LLM, "scorer": FAKE_SCORER})
        assert created.status_code == 201, created.get_data(as_text=True)
        ids[task] = created.get_json()["id"]
    for task, media_type in (("video-caption", "video/webm"), ("audio-caption", "audio/webm")):
        assert client.get(f"/api/jobs/{ids[task]}").get_json()["input_media_type"] == media_type
        served = client.get(f"/api/jobs/{ids[task]}/input")
        assert served.mimetype == media_type and served.data == data
