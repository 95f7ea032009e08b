"""The web app as a shared service sees it (web.headers, web.params, worker.config): security
headers on every kind of answer, ids and cursors the database could not take, the app behind a
reverse proxy under a path prefix, and the session cookie over https.

Through Flask's test client on the real PostgreSQL with a real SQLite-backed queue per test; jobs
run in this process with the tiny fakes of tests/support/fakes.py. The same app behind a real
nginx, in a real browser: tests/web/test_proxy_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import request
from PIL import Image
from sqlalchemy import func, select

from tests.support.fakes import HiddenCaptionScorer, ScriptedGenerator
from tests.support.media import make_zip
from web import create_app
from web.params import MAX_ID
from worker.runner import JobModels, run_in_process
from worker.store.db import open_store
from worker.store.schema import Job
from worker.store.tokens import create_token

ROOT = Path(__file__).resolve().parents[2]
FAKE_LLM, FAKE_SCORER = "py:tests.support.fakes:worker_generator", "py:tests.support.fakes:worker_scorer"
TARGET = "a tabby cat sitting on a wooden table in the sun"
TOO_LARGE = "99999999999999999999999"  # beyond 64 bits
PROXY = {"X-Forwarded-Prefix": "/mils", "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


# --------------------------------------------------------------------------- fixtures and helpers


def make_app(pg: str, **config):
    app = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True, **config})

    # What the app took the request for, to see ProxyFix at work; and an unexpected error.
    @app.get("/_seen")
    def seen():
        return {"remote_addr": request.remote_addr, "scheme": request.scheme, "script_root": request.script_root}

    @app.get("/_boom")
    def boom():
        raise RuntimeError("a bug")

    return app


@pytest.fixture
def app(pg, queue_db):
    return make_app(pg)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def Session(pg):
    return open_store(pg)


def submit(client, headers=None) -> dict:
    data = {"sample": "chelsea", "llm": FAKE_LLM, "scorer": FAKE_SCORER, "steps": "2", "candidates": "6",
            "top_k": "5"}
    response = client.post("/api/jobs", data=data, headers=headers or {})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def run_job(Session, job_id: int) -> None:
    models = JobModels(ScriptedGenerator(extra_words=["tabby", "wooden", "sun"]), HiddenCaptionScorer(TARGET))
    for _ in run_in_process(Session, job_id, lambda _g, _s: models):
        pass


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_batch(client, name: str = "squares") -> str:
    archive = make_zip({"manifest.csv": b"id,path\na,a.png\nb,b.png\n", "a.png": png((200, 40, 40)),
                        "b.png": png((40, 200, 40))})
    response = client.post("/api/batches", data={"name": name, "llm": FAKE_LLM, "scorer": FAKE_SCORER,
                                                 "steps": "1", "candidates": "4", "top_k": "3",
                                                 "archive": (io.BytesIO(archive), "squares.zip")})
    assert response.status_code == 201, response.get_data(as_text=True)
    return name


@pytest.fixture
def finished_job(client, Session) -> int:
    job_id = submit(client)["id"]
    run_job(Session, job_id)
    return job_id


def cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# --------------------------------------------------------------------------- security headers


def check_security_headers(response, what: str, stored_media: bool = False) -> None:
    """The headers every answer carries (web.headers); stored media keep their stricter policy."""
    headers = response.headers
    policy = headers.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ") if d}
    assert directives.get("frame-ancestors") == ["'none'"], (what, policy)
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, (what, policy)
    if stored_media:
        assert directives["default-src"] == ["'none'"], (what, policy)
    else:
        assert directives["default-src"] == ["'self'"], (what, policy)
        assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"], (what, policy)
        assert directives["object-src"] == ["'none'"], (what, policy)
    assert headers.get("Referrer-Policy") == "same-origin", what
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("X-Frame-Options") == "DENY", what


def test_every_kind_of_answer_carries_the_security_headers(client, finished_job, Session):
    batch = make_batch(client)
    queued_job = submit(client)["id"]
    # Stored media are kept by their sha256: the input's bytes are an artifact too.
    artifact = hashlib.sha256(client.get(f"/api/jobs/{finished_job}/input").data).hexdigest()
    answers = [
        # (what, method, url, status, stored media)
        ("page", "get", "/jobs", 200, False),
        ("job page", "get", f"/jobs/{queued_job}", 200, False),
        ("live fragment", "get", f"/jobs/{queued_job}/live", 200, False),
        ("history fragment", "get", f"/jobs/{finished_job}/candidates", 200, False),
        ("submit form", "get", "/jobs/new", 200, False),
        ("batch page", "get", f"/batches/{batch}", 200, False),
        ("operator page", "get", "/ops", 200, False),
        ("redirect", "get", "/", 302, False),
        ("API JSON", "get", f"/api/jobs/{finished_job}", 200, False),
        ("API list", "get", "/api/batches", 200, False),
        ("API error 404", "get", "/api/jobs/999", 404, False),
        ("API error 400", "get", "/api/jobs?cursor=%25%25", 400, False),
        ("API error 409", "post", f"/api/jobs/{finished_job}/cancel", 409, False),
        ("API error 405", "delete", "/api/jobs", 405, False),
        ("page 404", "get", "/no-such-page", 404, False),
        ("page 400", "get", "/jobs?limit=0", 400, False),
        ("500", "get", "/_boom", 500, False),
        ("static CSS", "get", "/static/app.css", 200, False),
        ("static script", "get", "/static/job.js", 200, False),
        ("history download", "get", f"/jobs/{finished_job}/history.csv", 200, False),
        ("API history download", "get", f"/api/jobs/{finished_job}/history?format=json", 200, False),
        ("batch results download", "get", f"/batches/{batch}/results.csv", 200, False),
        ("stored input", "get", f"/jobs/{finished_job}/input", 200, True),
        ("API stored input", "get", f"/api/jobs/{finished_job}/input", 200, True),
        ("artifact", "get", f"/artifacts/{artifact}", 200, True),
        ("API artifact", "get", f"/api/artifacts/{artifact}", 200, True),
        ("metrics", "get", "/metrics", 200, False),
        ("health", "get", "/healthz", 200, False),
        ("OpenAPI", "get", "/api/openapi.json", 200, False),
    ]
    for what, method, url, status, stored_media in answers:
        response = getattr(client, method)(url)
        assert response.status_code == status, (what, url, response.status_code, response.get_data(as_text=True)[:300])
        check_security_headers(response, f"{what} ({url})", stored_media)
        response.close()


INLINE = [
    (r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", "an inline <script>"),
    (r"<style\b", "a <style> element"),
    (r"\sstyle=", "a style= attribute"),
    (r"\son[a-z]+=", "an on* event handler"),
    (r"\shx-on[:-]", "an hx-on handler (evaluated code)"),
    (r"javascript:", "a javascript: URL"),
]


@pytest.mark.parametrize("template", sorted(p.name for p in (ROOT / "web" / "templates").glob("*.html")))
def test_templates_have_no_inline_script_or_style(template):
    """The policy allows no inline code or style: everything is in web/static. JSON data blocks
    (<script type="application/json">) are data, never run, and allowed."""
    text = re.sub(r"\{#.*?#\}", "", (ROOT / "web" / "templates" / template).read_text(), flags=re.S)  # comments
    for pattern, what in INLINE:
        found = re.search(pattern, text)
        assert found is None, f"{template} has {what}: {found.group(0)!r}"


def test_the_pages_scripts_have_no_hard_coded_paths():
    """Every URL the scripts use comes from the page (url_for), so they work under a prefix."""
    for script in (ROOT / "web" / "static").glob("*.js"):
        found = re.search(r"[\"'`]/(?:api|jobs|batches|ops|metrics|static|login|artifacts)\b", script.read_text())
        assert found is None, f"{script.name} has a hard-coded path: {found.group(0)!r}"


# --------------------------------------------------------------------------- ids and cursors


def id_routes(app) -> list[tuple[str, str, str]]:
    """(method, rule, endpoint) of every route with an integer in its path."""
    routes = []
    for rule in app.url_map.iter_rules():
        ints = [name for name, conv in rule._converters.items() if type(conv).__name__ == "IdConverter"]
        if ints:
            method = "post" if "POST" in rule.methods else "get"
            routes.append((method, rule.rule, rule.endpoint))
    return routes


def test_every_route_with_an_id_is_covered_by_the_id_converter(app):
    """Every `<int:...>` is the app's IdConverter (web.params), and these are all of them."""
    rules = {rule for _, rule, _ in id_routes(app)}
    assert {"/api/jobs/<int:job_id>", "/api/jobs/<int:job_id>/candidates", "/api/jobs/<int:job_id>/history",
            "/api/jobs/<int:job_id>/input", "/api/jobs/<int:job_id>/cancel", "/api/jobs/<int:job_id>/resume",
            "/jobs/<int:job_id>", "/jobs/<int:job_id>/live", "/jobs/<int:job_id>/candidates",
            "/jobs/<int:job_id>/cancel", "/jobs/<int:job_id>/resume", "/jobs/<int:job_id>/input",
            "/jobs/<int:job_id>/history.<fmt>"} <= rules
    for rule in app.url_map.iter_rules():
        assert "int" not in {type(c).__name__ for c in rule._converters.values()} - {"IdConverter"}


def test_ids_beyond_the_database_range_are_404s_on_every_route(app, client):
    routes = id_routes(app)
    assert len(routes) >= 13
    for method, rule, endpoint in routes:
        url = rule.replace("<int:job_id>", TOO_LARGE).replace("<fmt>", "csv")
        response = getattr(client, method)(url)
        assert response.status_code == 404, (method, url, response.status_code, response.get_data(as_text=True)[:300])
        if url.startswith("/api/"):
            message = response.get_json()["error"]["message"]
            assert message == f"no such id: {TOO_LARGE} is larger than any id can be ({MAX_ID})", url
        else:
            assert response.mimetype == "text/html" and "larger than any id" in response.get_data(as_text=True), url


def test_ids_just_beyond_an_integer_column_are_404s(client):
    """jobs.id is an INTEGER: 32 bits on PostgreSQL, which refuses a larger number in a query."""
    for method, url in [("get", f"/api/jobs/{MAX_ID + 1}"), ("post", f"/api/jobs/{MAX_ID + 1}/cancel"),
                        ("get", f"/jobs/{MAX_ID + 1}"), ("get", f"/api/jobs/{2**63}/history")]:
        response = getattr(client, method)(url)
        assert response.status_code == 404 and "larger than any id" in response.get_data(as_text=True), url


def test_the_largest_id_reaches_the_database_and_is_unknown(client):
    """At the edge of the range the id is looked up like any other and is simply not there."""
    job_id = MAX_ID
    for method, url in [("get", f"/api/jobs/{job_id}"), ("get", f"/api/jobs/{job_id}/history"),
                        ("post", f"/api/jobs/{job_id}/cancel"), ("get", f"/api/jobs/{job_id}/input")]:
        response = getattr(client, method)(url)
        assert response.status_code == 404 and response.get_json()["error"]["message"] == f"no job {job_id}", url
    assert client.get(f"/jobs/{job_id}").status_code == 404


BAD_CURSORS = {
    "not base64": "%25%25",
    "not JSON": cursor("x")[:-1] + "!",
    "an object": cursor({"id": 1}),
    "empty": cursor([]),
    "text": cursor(["x"]),
    "text among numbers": cursor([1, "x", 3]),
    "a flag": cursor([True]),
    "null": cursor([None]),
    "beyond 64 bits": cursor([int(TOO_LARGE)]),
    "beyond 32 bits": cursor([2**31]),  # every list but the candidates' pages by INTEGER columns
    "a fraction": cursor([1.5]),
    "infinite": base64.urlsafe_b64encode(b"[1e999]").decode(),
    "nested": cursor([[1]]),
}


@pytest.mark.parametrize("bad", list(BAD_CURSORS), ids=list(BAD_CURSORS))
def test_malformed_cursors_are_400s_on_every_paged_list(client, Session, bad):
    job_id = submit(client)["id"]
    batch = make_batch(client)
    value = BAD_CURSORS[bad]
    for url in ["/api/jobs", "/jobs", f"/api/jobs/{job_id}/candidates", f"/jobs/{job_id}/candidates",
                f"/jobs/{job_id}", "/api/batches", "/batches", f"/api/batches/{batch}/items",
                f"/batches/{batch}/items", f"/batches/{batch}"]:
        response = client.get(f"{url}?cursor={value}")
        assert response.status_code == 400, (url, response.status_code, response.get_data(as_text=True)[:300])
        if url.startswith("/api/"):
            assert response.get_json()["error"]["message"].startswith("bad cursor"), url
        else:
            assert "bad cursor" in response.get_data(as_text=True), url


def test_numbers_in_queries_beyond_the_database_range_are_400s(client):
    job_id = submit(client)["id"]
    for url in [f"/api/jobs/{job_id}/candidates?step={TOO_LARGE}", f"/jobs/{job_id}/candidates?step={TOO_LARGE}",
                f"/api/jobs?limit={TOO_LARGE}", f"/api/batches?limit=-{TOO_LARGE}"]:
        response = client.get(url)
        assert response.status_code == 400, (url, response.status_code, response.get_data(as_text=True)[:300])


def test_a_parameter_sent_twice_is_a_400_naming_it(client):
    job_id = submit(client)["id"]
    batch = make_batch(client)
    for url, name in [("/api/jobs?limit=&limit=x", "limit"), ("/api/jobs?status=queued&status=nope", "status"),
                      (f"/api/jobs/{job_id}/candidates?sort=step&sort=-score", "sort"),
                      (f"/api/jobs/{job_id}/history?format=csv&format=json", "format"),
                      (f"/api/batches/{batch}/items?cursor=&cursor=x", "cursor"),
                      (f"/api/batches/{batch}/results?format=coco&format=csv", "format"), ("/jobs?q=a&q=b", "q")]:
        response = client.get(url)
        assert response.status_code == 400, (url, response.status_code)
        assert f"{name} is sent 2 times; send it once" in response.get_data(as_text=True), url


def jobs_stored(Session) -> int:
    with Session() as session:
        return session.scalar(select(func.count()).select_from(Job))


def test_a_nul_character_in_a_path_query_or_form_is_a_400_naming_it(client, Session):
    batch = make_batch(client)
    before = jobs_stored(Session)
    for method, url, data, where in [
            ("get", f"/api/batches/{batch}%00", None, "path parameter 'name'"),
            ("get", f"/batches/{batch}%00x", None, "path parameter 'name'"),
            ("get", "/api/compare?name=a%00&name=b", None, "query parameter 'name'"),
            ("get", "/api/jobs?q=%00", None, "query parameter 'q'"),
            ("post", "/api/jobs", {"task": "text-to-image", "prompt": "a cat\x00"}, "form field 'prompt'"),
            ("post", "/api/batches", {"name": "x\x00"}, "form field 'name'")]:
        response = getattr(client, method)(url, data=data)
        assert response.status_code == 400, (url, response.status_code)
        assert f"the {where} holds a NUL character" in html.unescape(response.get_data(as_text=True)), url
    assert jobs_stored(Session) == before


def test_an_upload_field_sent_as_text_is_a_400_naming_it(client, Session):
    for url, data, name in [("/api/jobs", {"sample": "chelsea", "file": "photo.png"}, "file"),
                            ("/api/jobs", {"task": "arithmetic", "parts": "a.png", "text": "a\nb"}, "parts"),
                            ("/api/jobs", {"sample": "chelsea", "pool_file": "pool.txt"}, "pool_file"),
                            ("/api/batches", {"name": "b", "archive": "photos.zip"}, "archive")]:
        response = client.post(url, data=data)
        assert response.status_code == 400, (url, response.status_code)
        assert response.get_json()["error"]["message"] == \
            f"{name} must be a file upload (curl -F '{name}=@PATH'), not a text field"
    assert jobs_stored(Session) == 0


def test_a_form_part_without_a_name_is_passed_over(client, Session):
    body = (b'--b\r\nContent-Disposition: form-data\r\n\r\nx\x00\r\n'
            b'--b\r\nContent-Disposition: form-data; name="sample"\r\n\r\nchelsea\r\n--b--\r\n')
    response = client.post("/api/jobs", data=body, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 201, response.get_data(as_text=True)
    assert jobs_stored(Session) == 1


def test_a_prompt_or_parts_job_sent_a_file_or_a_sample_is_a_400(client, Session):
    for data, message in [
            ({"task": "text-to-image", "prompt": "a red boat", "sample": "chelsea"}, "text-to-image takes a prompt"),
            ({"task": "text-to-image", "prompt": "a red boat", "file": (io.BytesIO(png((9, 9, 9))), "a.png")},
             "text-to-image takes a prompt"),
            ({"task": "arithmetic", "text": "a cat\na hat", "sample": "coffee"}, "arithmetic takes parts and text lines")]:
        response = client.post("/api/jobs", data=data)
        assert response.status_code == 400 and response.get_json()["error"]["message"] == \
            f"{message}, not a file or a sample", data
    assert jobs_stored(Session) == 0


def test_a_cursor_the_app_gave_still_pages(client, finished_job):
    first = client.get(f"/api/jobs/{finished_job}/candidates?limit=5&sort=-score").get_json()
    second = client.get(f"/api/jobs/{finished_job}/candidates?limit=5&sort=-score&cursor={first['next_cursor']}")
    assert second.status_code == 200 and len(second.get_json()["candidates"]) == 5
    # Candidates' ids are BIGINTs: a cursor past 32 bits is a real place in their order.
    far = client.get(f"/api/jobs/{finished_job}/candidates?sort=-score&cursor={cursor([-1.0, 2**40])}")
    assert far.status_code == 200 and far.get_json()["candidates"] == []


# --------------------------------------------------------------------------- behind a reverse proxy


URL_ATTRIBUTES = re.compile(r"\s(href|src|action|hx-get|hx-post)=\"([^\"]*)\"")


def page_urls(page: str) -> list[tuple[str, str]]:
    """(attribute, URL) of every link, source, form action and htmx request in an HTML page."""
    return [(attr, url) for attr, url in URL_ATTRIBUTES.findall(page) if url not in ("#", "data:,")]


def location_path(response) -> str:
    return urlsplit(response.headers["Location"]).path


@pytest.fixture
def proxied(pg, queue_db):
    """The app as behind one proxy that serves it under /mils."""
    return make_app(pg, PROXY_COUNT=1).test_client()


def test_the_proxy_headers_are_believed_only_from_as_many_proxies_as_configured(pg, queue_db, monkeypatch):
    assert make_app(pg).test_client().get("/_seen", headers=PROXY).get_json() == {
        "remote_addr": "127.0.0.1", "scheme": "http", "script_root": ""}
    monkeypatch.setenv("MILS_PROXY_COUNT", "1")  # read by worker.config when the app is made
    behind = make_app(pg).test_client()
    assert behind.get("/_seen", headers=PROXY).get_json() == {
        "remote_addr": "203.0.113.7", "scheme": "https", "script_root": "/mils"}
    # A client's own X-Forwarded-For before the proxy's is not the client's address.
    spoofed = behind.get("/_seen", headers={**PROXY, "X-Forwarded-For": "10.6.6.6, 203.0.113.7"}).get_json()
    assert spoofed["remote_addr"] == "203.0.113.7"


def test_every_page_link_form_and_live_update_carries_the_prefix(proxied, Session):
    queued_job = submit(proxied, PROXY)["id"]
    finished = submit(proxied, PROXY)["id"]
    run_job(Session, finished)
    batch = make_batch(proxied)
    pages = ["/jobs", "/jobs/new", f"/jobs/{queued_job}", f"/jobs/{finished}", f"/jobs/{queued_job}/live",
             f"/jobs/{finished}/candidates?limit=5", "/batches", "/batches/new", f"/batches/{batch}",
             f"/batches/{batch}/live", f"/batches/{batch}/items?limit=1", "/ops", "/ops/live", "/no-such-page"]
    seen = set()
    for path in pages:
        response = proxied.get(path, headers=PROXY)
        assert response.status_code in (200, 404), (path, response.status_code)
        urls = page_urls(response.get_data(as_text=True))
        assert urls, path
        for attr, url in urls:
            assert url.startswith("/mils/"), f"{path}: {attr}={url!r} lacks the prefix"
            seen.add(attr)
    assert seen == {"href", "src", "action", "hx-get"}
    # The live updates the page's scripts poll and swap in, and the forms that act on the job.
    job_page = proxied.get(f"/jobs/{queued_job}", headers=PROXY).get_data(as_text=True)
    assert f'hx-get="/mils/jobs/{queued_job}/live"' in job_page
    assert f'hx-get="/mils/jobs/{queued_job}/candidates"' in job_page
    assert f'action="/mils/jobs/{queued_job}/cancel"' in job_page
    batch_page = proxied.get(f"/batches/{batch}", headers=PROXY).get_data(as_text=True)
    assert f'hx-get="/mils/batches/{batch}/live"' in batch_page
    assert f'hx-get="/mils/batches/{batch}/items"' in batch_page
    finished_page = proxied.get(f"/jobs/{finished}?limit=5", headers=PROXY).get_data(as_text=True)
    assert f'href="/mils/jobs/{finished}/history.csv"' in finished_page
    assert 'hx-get="/mils/jobs/' in proxied.get(f"/jobs/{finished}/candidates?limit=5",
                                               headers=PROXY).get_data(as_text=True)  # next page


def test_redirects_and_api_links_carry_the_prefix(proxied, Session):
    assert location_path(proxied.get("/", headers=PROXY)) == "/mils/jobs"
    created = proxied.post("/api/jobs", headers=PROXY, data={"sample": "chelsea", "llm": FAKE_LLM,
                                                             "scorer": FAKE_SCORER, "steps": "2"})
    job = created.get_json()
    assert location_path(created) == f"/mils/api/jobs/{job['id']}"
    assert job["links"] and all(link.startswith("/mils/") for link in job["links"].values())
    listed = proxied.get("/api/jobs", headers=PROXY).get_json()["jobs"]
    assert all(link.startswith("/mils/") for j in listed for link in j["links"].values())
    assert proxied.get("/api/openapi.json", headers=PROXY).get_json()["servers"] == [{"url": "/mils"}]
    assert proxied.get("/api/openapi.json").get_json()["servers"] == [{"url": "/"}]
    batch = make_batch(proxied)
    assert all(link.startswith("/mils/") for link in
               proxied.get(f"/api/batches/{batch}", headers=PROXY).get_json()["links"].values())
    # The pages' forms answer with redirects under the prefix.
    submitted = proxied.post("/jobs/new", headers=PROXY, data={"task": "image-caption", "sample": "chelsea",
                                                               "llm": FAKE_LLM, "scorer": FAKE_SCORER})
    assert submitted.status_code == 302, submitted.get_data(as_text=True)[:2000]
    assert re.fullmatch(r"/mils/jobs/\d+", location_path(submitted))
    cancelled = proxied.post(f"/jobs/{job['id']}/cancel", headers=PROXY)
    assert location_path(cancelled) == f"/mils/jobs/{job['id']}"
    assert location_path(proxied.post(f"/batches/{batch}/cancel", headers=PROXY)) == f"/mils/batches/{batch}"


def test_the_login_round_trip_stays_under_the_prefix(pg, queue_db, Session):
    client = make_app(pg, PROXY_COUNT=1, AUTH="token").test_client()
    with Session.begin() as session:
        raw = create_token(session, "alice")
    to_login = client.get("/jobs?status=queued", headers=PROXY)
    assert to_login.status_code == 302
    login_url = urlsplit(to_login.headers["Location"])
    assert login_url.path == "/mils/login" and parse_qs(login_url.query)["next"] == ["/mils/jobs?status=queued"]
    signed_in = client.post(f"/login?{login_url.query}", headers=PROXY, data={"token": raw})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/mils/jobs?status=queued"
    assert location_path(client.post("/logout", headers=PROXY)) == "/mils/login"


# --------------------------------------------------------------------------- the session cookie over https


def session_cookie(client) -> str:
    """The Set-Cookie of the session, which a page with a form (its CSRF token) starts."""
    response = client.get("/jobs/new")
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert len(cookies) == 1, response.headers
    return cookies[0]


@pytest.mark.parametrize("value, secure", [(None, False), ("0", False), ("1", True), ("true", True)])
def test_the_session_cookie_is_secure_when_the_site_is_https(pg, queue_db, monkeypatch, value, secure):
    if value is None:
        monkeypatch.delenv("MILS_HTTPS", raising=False)
    else:
        monkeypatch.setenv("MILS_HTTPS", value)
    attributes = [a.strip().lower() for a in session_cookie(make_app(pg).test_client()).split(";")]
    assert ("secure" in attributes) is secure, attributes
    assert "httponly" in attributes and "samesite=lax" in attributes
