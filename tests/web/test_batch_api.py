"""Batches through the JSON API (and the HTML pages' own routes), with Flask's test client on the
real PostgreSQL and a private SQLite-backed broker queue per test (conftest's `queue_db`).

Every dataset here is made in the test: real PNGs (Pillow), zip and tar archives with or without
a manifest inside, and manifests uploaded alone naming files under MILS_DATASET_ROOT. What the API
answers is checked against the rows the submission stored (batches, batch_items, jobs) and the
messages it put on the queue. Some jobs are run in this process with the tiny fakes
(`run_in_process`) so that the results exports have real captions to export.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import zipfile

import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.support.fakes import HiddenCaptionScorer, ScriptedGenerator
from tests.support.media import make_tar, make_zip
from tests.support.services import queued, use_broker
from web import create_app
from worker.runner import JobModels, run_in_process
from worker.store.db import open_store
from worker.store.schema import Batch, BatchItem, Job

FAKE_LLM, FAKE_SCORER = "py:tests.support.fakes:worker_generator", "py:tests.support.fakes:worker_scorer"
TARGET = "a small orange square on a grey background"
SETTINGS = {"llm": FAKE_LLM, "scorer": FAKE_SCORER, "steps": "2", "candidates": "6", "top_k": "5"}
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200)]


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def app(pg, queue_db):
    return create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def Session(app, pg):
    return open_store(pg)


def png(i: int = 0, size: tuple[int, int] = (32, 24)) -> bytes:
    """A small real PNG, a different colour for each i (so each item has its own bytes)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, COLOURS[i % len(COLOURS)]).save(buffer, "PNG")
    return buffer.getvalue()


def manifest_csv(rows: list[list[str]], header: str = "id,path,reference,reference_2") -> bytes:
    buffer = io.StringIO()
    buffer.write(header + "\n")
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


THREE_ROWS = [["a", "images/a.png", "a red square", "red, on its own"],
              ["b", "images/b.png", "a green square", ""],
              ["c", "images/c.png", "a blue square", "blue   and\tsquare"]]


def three_images_archive(rows: list[list[str]] = THREE_ROWS) -> bytes:
    return make_zip({"manifest.csv": manifest_csv(rows),
                     **{f"images/{key}.png": png(i) for i, key in enumerate("abc")}})


def post_batch(client, name: str, *, archive: tuple[bytes, str] | None = None,
               manifest: tuple[bytes, str] | None = None, **fields):
    data = {"name": name, **SETTINGS, **{k: str(v) for k, v in fields.items()}}
    if archive is not None:
        data["archive"] = (io.BytesIO(archive[0]), archive[1])
    if manifest is not None:
        data["manifest"] = (io.BytesIO(manifest[0]), manifest[1])
    return client.post("/api/batches", data=data)


def created(response, status: int = 201) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:1000])
    return response.get_json()


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:1000])
    body = response.get_json()
    assert body["error"]["status"] == status
    return body["error"]["message"]


def stored_items(Session, name: str) -> list[dict]:
    """The batch's items as stored, in submission order."""
    with Session() as s:
        rows = s.execute(select(BatchItem.item_key, BatchItem.source, BatchItem.references, BatchItem.job_id,
                                BatchItem.queued, BatchItem.error, BatchItem.position)
                         .join(Batch, Batch.id == BatchItem.batch_id).where(Batch.name == name)
                         .order_by(BatchItem.position)).all()
    return [dict(row._mapping) for row in rows]


def table_counts(Session) -> dict[str, int]:
    with Session() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in (Batch, BatchItem, Job)}


def job_statuses(Session, job_ids) -> dict[int, str]:
    with Session() as s:
        return {i: st.value for i, st in s.execute(select(Job.id, Job.status).where(Job.id.in_(list(job_ids))))}


def run_jobs(Session, job_ids) -> None:
    """Run each job to the end in this process with the tiny fakes."""
    def models(_generator: str, _scorer: str) -> JobModels:
        return JobModels(ScriptedGenerator(extra_words=["orange", "square", "grey", "small"]),
                         HiddenCaptionScorer(TARGET))

    for job_id in job_ids:
        for _ in run_in_process(Session, job_id, models):
            pass


def all_items(client, name: str, **params) -> list[dict]:
    """Every item through the API, page by page."""
    found, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/api/batches/{name}/items", query_string=query).get_json()
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


# --------------------------------------------------------------------------- submitting an archive


def test_an_archive_with_a_manifest_makes_a_batch_of_queued_jobs(client, Session, queue_db):
    response = post_batch(client, "coco-mini", archive=(three_images_archive(), "my data/set.zip"))
    body = created(response)
    assert response.headers["Location"].endswith("/api/batches/coco-mini")
    report = body["submission"]
    assert report["name"] == "coco-mini" and report["created"] is True
    assert (report["added"], report["already"], report["requeued"], report["rejected"]) == (3, 0, 0, [])
    # The uploaded name is a label made safe, never a path.
    assert report["dataset"] == {"kind": "zip:csv", "name": "my_data_set.zip", "items": 3, "skipped": 0}

    items = stored_items(Session, "coco-mini")
    assert [(i["item_key"], i["source"], i["position"]) for i in items] == \
        [("a", "images/a.png", 0), ("b", "images/b.png", 1), ("c", "images/c.png", 2)]
    # Every non-empty reference cell is a reference, its whitespace collapsed.
    assert [i["references"] for i in items] == [["a red square", "red, on its own"], ["a green square"],
                                                ["a blue square", "blue and square"]]
    assert all(i["queued"] and i["error"] is None and i["job_id"] for i in items)
    job_ids = [i["job_id"] for i in items]
    assert queued(queue_db) == [(job_id, 0) for job_id in job_ids]
    assert job_statuses(Session, job_ids) == {job_id: "queued" for job_id in job_ids}
    with Session() as s:
        jobs = s.scalars(select(Job).where(Job.id.in_(job_ids)).order_by(Job.id)).all()
        assert [j.input_name for j in jobs] == ["a.png", "b.png", "c.png"]
        assert {(j.task, j.generator, j.scorer, j.settings["steps"], j.settings["candidates"]) for j in jobs} == \
            {("image-caption", FAKE_LLM, FAKE_SCORER, 2, 6)}

    # The batch as the response, its detail and the list give it.
    for detail in (body, client.get("/api/batches/coco-mini").get_json()):
        assert detail["name"] == "coco-mini" and detail["task"] == "image-caption"
        assert (detail["items"], detail["jobs"], detail["rejected"], detail["done"]) == (3, 3, 0, 0)
        assert detail["by_status"] == {"queued": 3} and detail["finished"] is False
        assert (detail["steps_done"], detail["steps_total"]) == (0, 3 * (2 + 1))
        assert detail["settings"]["steps"] == 2 and detail["settings"]["top_k"] == 5
        assert (detail["generator"], detail["scorer"]) == (FAKE_LLM, FAKE_SCORER)
        assert detail["sources"] == [report["dataset"]]
        assert detail["score_per_step"] == [] and detail["evaluation"] is None
        assert detail["links"]["items"] == "/api/batches/coco-mini/items"
        assert detail["links"]["results_csv"] == "/api/batches/coco-mini/results?format=csv"
    listed = client.get("/api/batches").get_json()
    assert [b["name"] for b in listed["batches"]] == ["coco-mini"] and listed["next_cursor"] is None
    assert listed["batches"][0]["by_status"] == {"queued": 3} and listed["batches"][0]["jobs"] == 3

    # The items, two at a time.
    first = client.get("/api/batches/coco-mini/items?limit=2").get_json()
    assert [i["key"] for i in first["items"]] == ["a", "b"] and first["next_cursor"]
    second = client.get("/api/batches/coco-mini/items",
                        query_string={"limit": 2, "cursor": first["next_cursor"]}).get_json()
    assert [i["key"] for i in second["items"]] == ["c"] and second["next_cursor"] is None
    for item, job_id, position in zip(first["items"] + second["items"], job_ids, range(3)):
        assert item == {"position": position, "key": "abc"[position], "source": f"images/{'abc'[position]}.png",
                        "job_id": job_id, "status": "queued", "error": None, "best_score": None,
                        "best_text": None}
    assert client.get("/api/batches/coco-mini/items?status=queued").get_json()["items"] == \
        first["items"] + second["items"]
    assert client.get("/api/batches/coco-mini/items?status=rejected").get_json() == \
        {"items": [], "next_cursor": None}
    assert "unknown status 'done'" in error_of(client.get("/api/batches/coco-mini/items?status=done"), 400)


def test_a_batch_job_names_its_batch_and_item(client, Session):
    created(post_batch(client, "named", archive=(three_images_archive(), "set.zip")))
    job_ids = [i["job_id"] for i in stored_items(Session, "named")]
    for job_id, key in zip(job_ids, "abc"):
        assert client.get(f"/api/jobs/{job_id}").get_json()["batch"] == {"name": "named", "key": key}
    lone = client.post("/api/jobs", data={"sample": "chelsea", "llm": FAKE_LLM, "scorer": FAKE_SCORER})
    assert lone.status_code == 201 and lone.get_json()["batch"] is None
    # The job page links back to the batch.
    page = client.get(f"/jobs/{job_ids[1]}").get_data(as_text=True)
    line = re.search(r'<p id="job-batch">(.*?)</p>', page, re.S).group(1)
    assert re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", line)).strip() == "Item b of batch named"
    assert 'href="/batches/named"' in line


def test_the_same_archive_again_adds_nothing_and_other_settings_are_refused(client, Session, queue_db):
    created(post_batch(client, "again", archive=(three_images_archive(), "set.zip")))
    before, messages = stored_items(Session, "again"), queued(queue_db)

    # The same items with a changed reference: nothing new, the reference is updated.
    rows = [list(r) for r in THREE_ROWS]
    rows[1][3] = "green, second reference"
    body = created(post_batch(client, "again", archive=(three_images_archive(rows), "set.zip")), 200)
    report = body["submission"]
    assert (report["created"], report["added"], report["already"], report["rejected"]) == (False, 0, 3, [])
    after = stored_items(Session, "again")
    assert [i["job_id"] for i in after] == [i["job_id"] for i in before]
    assert after[1]["references"] == ["a green square", "green, second reference"]
    assert queued(queue_db) == messages  # nothing queued twice
    assert body["jobs"] == 3 and len(body["sources"]) == 2  # both submissions are recorded
    # Without any settings, the batch's own apply.
    bare = client.post("/api/batches", data={"name": "again", "archive": (io.BytesIO(three_images_archive()), "s.zip")})
    assert created(bare, 200)["submission"]["already"] == 3

    counts = table_counts(Session)
    message = error_of(post_batch(client, "again", archive=(three_images_archive(), "set.zip"), steps=3), 400)
    assert "steps=2, not 3" in message and "again" in message
    message = error_of(post_batch(client, "again", archive=(three_images_archive(), "set.zip"),
                                  llm="embedded"), 400)
    assert f"generator {FAKE_LLM!r}, not 'embedded'" in message
    assert table_counts(Session) == counts and queued(queue_db) == messages


def test_unreadable_items_are_rejected_one_by_one_and_the_others_run(client, Session, queue_db):
    rows = [["good-1", "good1.png", "first"], ["bad", "bad.png", "broken"], ["missing", "missing.png", "gone"],
            ["good-2", "sub/good2.png", "second"]]
    archive = make_zip({"manifest.csv": manifest_csv(rows, "id,path,reference"), "good1.png": png(0),
                        "bad.png": b"these bytes are not an image", "sub/good2.png": png(1),
                        "notes.txt": b"not listed in the manifest"})
    body = created(post_batch(client, "partly", archive=(archive, "partly.zip")))
    report = body["submission"]
    assert (report["added"], report["already"]) == (2, 0)
    assert report["rejected"] == [
        {"key": "bad", "source": "bad.png", "line": 3, "error": "bad.png: not an image in a format we can read"},
        {"key": "missing", "source": "missing.png", "line": 4, "error": "missing.png: not in the archive"},
    ]
    assert (body["items"], body["jobs"], body["rejected"], body["by_status"]) == (4, 2, 2, {"queued": 2})

    rejected = client.get("/api/batches/partly/items?status=rejected").get_json()["items"]
    assert [(i["key"], i["status"], i["job_id"], i["error"]) for i in rejected] == \
        [(r["key"], "rejected", None, r["error"]) for r in report["rejected"]]
    every = all_items(client, "partly", limit=1)
    assert [(i["key"], i["status"]) for i in every] == \
        [("good-1", "queued"), ("bad", "rejected"), ("missing", "rejected"), ("good-2", "queued")]
    stored = stored_items(Session, "partly")
    assert [i["references"] for i in stored] == [["first"], ["broken"], ["gone"], ["second"]]
    assert queued(queue_db) == [(stored[0]["job_id"], 0), (stored[3]["job_id"], 0)]

    # Submitting again tries the rejected ones again (still bad), and keeps the good ones.
    again = created(post_batch(client, "partly", archive=(archive, "partly.zip")), 200)["submission"]
    assert (again["added"], again["already"], [r["key"] for r in again["rejected"]]) == (0, 2, ["bad", "missing"])
    assert len(stored_items(Session, "partly")) == 4

    # A fixed archive: the two are added in their old places.
    fixed = make_zip({"manifest.csv": manifest_csv(rows, "id,path,reference"), "good1.png": png(0),
                      "bad.png": png(2), "missing.png": png(3), "sub/good2.png": png(1)})
    report = created(post_batch(client, "partly", archive=(fixed, "fixed.zip")), 200)["submission"]
    assert (report["added"], report["already"], report["rejected"]) == (2, 2, [])
    stored = stored_items(Session, "partly")
    assert [(i["item_key"], i["position"], i["error"], bool(i["job_id"])) for i in stored] == \
        [("good-1", 0, None, True), ("bad", 1, None, True), ("missing", 2, None, True), ("good-2", 3, None, True)]
    assert client.get("/api/batches/partly").get_json()["by_status"] == {"queued": 4}


def test_an_archive_without_a_manifest_makes_an_item_of_every_image(client, Session):
    archive = make_tar({"b/two.png": png(1), "one.png": png(0), "README.txt": b"hello", ".hidden.png": png(2)},
                       mode="w:gz")
    report = created(post_batch(client, "plain-tar", archive=(archive, "plain.tar.gz")))["submission"]
    assert report["dataset"] == {"kind": "tar", "name": "plain.tar.gz", "items": 2, "skipped": 2}
    assert [(i["item_key"], i["source"], i["references"]) for i in stored_items(Session, "plain-tar")] == \
        [("b/two.png", "b/two.png", None), ("one.png", "one.png", None)]


# --------------------------------------------------------------------------- refused as a whole


def jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


MALFORMED = [
    ("csv without path", "manifest.csv", b"id,file,reference\na,a.png,x\n",
     "manifest.csv line 1: no 'path' column (the columns are: id, file, reference)"),
    ("csv repeated id", "manifest.csv", b"id,path\na,a.png\nb,b.png\na,c.png\n",
     "manifest.csv line 4: id 'a' repeats line 2"),
    ("csv too many fields", "manifest.csv", b"id,path\na,a.png\nb,b.png,extra\n",
     "manifest.csv line 3: 3 fields, the header has 2"),
    ("csv empty path", "manifest.csv", b"id,path\na,a.png\nb,\n", "manifest.csv line 3: the path is empty"),
    ("jsonl not json on line 3", "manifest.jsonl",
     jsonl('{"path": "a.png"}', '{"path": "b.png"}', '{"path": "c.png", oops}'), "manifest.jsonl line 3: not JSON"),
    ("jsonl without path", "manifest.jsonl", jsonl('{"path": "a.png"}', '{"id": 2}'),
     'manifest.jsonl line 2: no "path"'),
    ("coco unknown image", "captions.json",
     json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                 "annotations": [{"image_id": 1, "caption": "x"}, {"image_id": 7, "caption": "y"}]}).encode(),
     "captions.json annotations[1]: image_id 7 is not in \"images\""),
    ("not utf-8", "manifest.csv", "id,path\né,a.png\n".encode("latin-1"), "manifest.csv: not UTF-8 text"),
]


@pytest.mark.parametrize("name, data, message", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_manifest_is_refused_naming_the_line_and_nothing_is_stored(client, Session, queue_db,
                                                                              name, data, message):
    archive = make_zip({name: data, "a.png": png(0), "b.png": png(1), "c.png": png(2)})
    assert message in error_of(post_batch(client, "broken", archive=(archive, "broken.zip")), 400)
    assert table_counts(Session) == {"batches": 0, "batch_items": 0, "jobs": 0}
    assert queued(queue_db) == []
    assert error_of(client.get("/api/batches/broken"), 404) == "no batch 'broken'"


UNSAFE = [
    ("dot-dot in a zip", lambda: make_zip({"../evil.png": png(0), "good.png": png(1)}),
     "member '../evil.png' points outside the archive; refused"),
    ("absolute path in a zip", lambda: make_zip({"/etc/evil.png": png(0)}),
     "member '/etc/evil.png' points outside the archive; refused"),
    ("zip bomb", lambda: make_zip({"zeros.png": bytes(50 * 1024 * 1024), "good.png": png(1)}),
     "refused as a possible zip bomb"),
    ("symlink in a tar", lambda: make_tar({"good.png": png(0)}, links={"passwd.png": "/etc/passwd"}),
     "member 'passwd.png' is a link or a special file; refused"),
    ("dot-dot in a tar", lambda: make_tar({"a/../../evil.png": png(0)}),
     "member 'a/../../evil.png' points outside the archive; refused"),
    ("not an archive", lambda: b"plain text, neither zip nor tar" * 20, "broken.zip: not a zip or tar archive"),
    ("two manifests", lambda: make_zip({"a.csv": b"path\na.png\n", "b.jsonl": b'{"path": "a.png"}\n',
                                        "a.png": png(0)}),
     "more than one manifest at its root (a.csv, b.jsonl); keep one"),
    ("no images", lambda: make_zip({"notes.txt": b"hello"}), "no image files"),
]


@pytest.mark.parametrize("make, message", [u[1:] for u in UNSAFE], ids=[u[0] for u in UNSAFE])
def test_unsafe_or_unusable_archives_are_refused_whole(client, Session, queue_db, make, message):
    archive = make()
    if message.endswith("zip bomb"):
        assert len(archive) * 1000 < 50 * 1024 * 1024  # it compresses more than 1000x
    assert message in error_of(post_batch(client, "unsafe", archive=(archive, "broken.zip")), 400)
    assert table_counts(Session) == {"batches": 0, "batch_items": 0, "jobs": 0}
    assert queued(queue_db) == []


BAD_REQUESTS = [
    ("no name", {"name": ""}, "a batch needs a name"),
    ("bad name", {"name": "../etc"}, "a batch name is 1 to 100 letters"),
    ("no dataset", {"archive": None}, "send an archive of the media"),
    ("archive and manifest", {"manifest": (b"path\na.png\n", "m.csv")}, "(one of them)"),
    ("not a batch task", {"task": "text-to-image"}, "a batch needs a task whose input is a media file, not text"),
    ("unknown task", {"task": "dance"}, "unknown task 'dance'"),
    ("steps out of range", {"steps": "0"}, "steps must be between 1 and 1000"),
    ("unknown scorer", {"scorer": "clippy"}, "unknown scorer 'clippy'"),
    ("another kind's option", {"frames": "4"}, "image-caption has no option frames"),
]


@pytest.mark.parametrize("fields, message", [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS])
def test_bad_batch_requests_are_refused_and_store_nothing(client, Session, queue_db, fields, message):
    data = {"name": "fine", **SETTINGS, "archive": (io.BytesIO(three_images_archive()), "set.zip")}
    for key, value in fields.items():
        if value is None:
            data.pop(key)
        elif isinstance(value, tuple):
            data[key] = (io.BytesIO(value[0]), value[1])
        else:
            data[key] = value
    assert message in error_of(client.post("/api/batches", data=data), 400)
    assert table_counts(Session) == {"batches": 0, "batch_items": 0, "jobs": 0}
    assert queued(queue_db) == []


# --------------------------------------------------------------------------- a manifest alone


def test_a_manifest_alone_needs_the_servers_dataset_folder(client, Session, monkeypatch, tmp_path):
    monkeypatch.delenv("MILS_DATASET_ROOT", raising=False)
    manifest = manifest_csv([["x", "x.png", "", ""]])
    message = error_of(post_batch(client, "alone", manifest=(manifest, "manifest.csv")), 400)
    assert "MILS_DATASET_ROOT" in message and "upload an archive" in message
    assert table_counts(Session) == {"batches": 0, "batch_items": 0, "jobs": 0}


def test_a_manifest_alone_names_files_under_the_dataset_folder_and_never_outside(client, Session, queue_db,
                                                                               monkeypatch, tmp_path):
    root = tmp_path / "datasets"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "one.png").write_bytes(png(0))
    (root / "photos" / "two.png").write_bytes(png(1))
    (tmp_path / "outside.png").write_bytes(png(2))  # exists, but is not under the dataset folder
    (root / "photos" / "link.png").symlink_to(tmp_path / "outside.png")
    monkeypatch.setenv("MILS_DATASET_ROOT", str(root))
    rows = [{"id": 1, "path": "photos/one.png", "references": ["one", "uno"]},
            {"id": 2, "path": "photos/two.png", "reference": "two"},
            {"id": 3, "path": "../outside.png"},
            {"id": 4, "path": str(tmp_path / "outside.png")},
            {"id": 5, "path": "photos/link.png"},
            {"id": 6, "path": "photos/three.png"},
            {"id": 7, "path": "photos"}]
    manifest = "\n".join(json.dumps(r) for r in rows).encode()
    body = created(post_batch(client, "on-server", manifest=(manifest, "list.jsonl")))
    report = body["submission"]
    assert report["dataset"] == {"kind": "jsonl", "name": "list.jsonl", "items": 7, "skipped": 0}
    assert report["added"] == 2
    assert [(r["key"], r["line"], r["error"]) for r in report["rejected"]] == [
        ("3", 3, "../outside.png: outside the dataset folder"),
        ("4", 4, f"{tmp_path / 'outside.png'}: outside the dataset folder"),
        ("5", 5, "photos/link.png: outside the dataset folder"),
        ("6", 6, "photos/three.png: no such file"),
        ("7", 7, "photos: a folder, not a file"),
    ]
    stored = stored_items(Session, "on-server")
    assert [(i["item_key"], i["references"], bool(i["job_id"])) for i in stored[:2]] == \
        [("1", ["one", "uno"], True), ("2", ["two"], True)]
    assert queued(queue_db) == [(stored[0]["job_id"], 0), (stored[1]["job_id"], 0)]
    with Session() as s:
        data = s.scalar(select(Job).where(Job.id == stored[0]["job_id"])).input_name
    assert data == "one.png"

    # A CSV manifest alone, and an empty upload.
    csv_body = created(post_batch(client, "on-server-csv",
                                  manifest=(manifest_csv([["p", "photos/two.png", "two", ""]]), "m.csv")))
    assert csv_body["submission"]["added"] == 1 and csv_body["submission"]["dataset"]["kind"] == "csv"
    assert "m.csv: the file is empty" in error_of(post_batch(client, "empty", manifest=(b"", "m.csv")), 400)
    assert "a manifest is .csv, .jsonl or a COCO captions .json" in \
        error_of(post_batch(client, "txt", manifest=(b"path\nx.png\n", "m.txt")), 400)


# --------------------------------------------------------------------------- results


def test_results_export_as_coco_csv_and_jsonl(client, Session):
    rows = [["1", "one.png", "red", ""], ["02", "two.png", "green", ""], ["img-3", "three.png", "blue", ""],
            ["4", "bad.png", "", ""]]
    archive = make_zip({"manifest.csv": manifest_csv(rows), "one.png": png(0), "two.png": png(1),
                        "three.png": png(2), "bad.png": b"GIF89a broken"})
    created(post_batch(client, "export", archive=(archive, "export.zip")))
    stored = stored_items(Session, "export")
    run_jobs(Session, [stored[0]["job_id"], stored[2]["job_id"]])  # the second one stays queued
    with Session() as s:
        texts = dict(s.execute(select(Job.id, Job.result_text).where(Job.result_text.is_not(None))).all())
        scores = dict(s.execute(select(Job.id, Job.result_score).where(Job.result_score.is_not(None))).all())
    assert set(texts) == {stored[0]["job_id"], stored[2]["job_id"]} and all(texts.values())

    coco = client.get("/api/batches/export/results?format=coco")
    assert coco.status_code == 200 and coco.mimetype == "application/json"
    assert coco.headers["Content-Disposition"] == 'attachment; filename="mils-batch-export-results.json"'
    # Only the succeeded items; a whole-number id is an int ("02" is not one), any other a string.
    assert json.loads(coco.get_data(as_text=True)) == [
        {"image_id": 1, "caption": texts[stored[0]["job_id"]]},
        {"image_id": "img-3", "caption": texts[stored[2]["job_id"]]},
    ]
    assert client.get("/api/batches/export/results").get_data() == coco.get_data()  # coco is the default

    as_csv = client.get("/api/batches/export/results?format=csv")
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    assert as_csv.headers["Content-Disposition"] == 'attachment; filename="mils-batch-export-results.csv"'
    text = as_csv.get_data(as_text=True)
    assert text.splitlines()[0] == ("key,source,job_id,status,output,score,error,prompt_sha256,pool_sha256,"
                                    "llm_requests,prompt_tokens,completion_tokens,llm_seconds,scoring_seconds")
    got = list(csv.DictReader(io.StringIO(text)))
    assert [(r["key"], r["source"], r["status"]) for r in got] == \
        [("1", "one.png", "succeeded"), ("02", "two.png", "queued"), ("img-3", "three.png", "succeeded"),
         ("4", "bad.png", "rejected")]
    for row, item in zip(got, stored):
        assert row["job_id"] == (str(item["job_id"]) if item["job_id"] else "")
        assert row["output"] == (texts.get(item["job_id"]) or "")
        assert row["score"] == (repr(scores[item["job_id"]]) if item["job_id"] in scores else "")
    assert got[3]["error"] == "bad.png: not an image in a format we can read" and got[1]["error"] == ""

    as_jsonl = client.get("/api/batches/export/results?format=jsonl")
    assert as_jsonl.status_code == 200 and as_jsonl.mimetype == "application/x-ndjson"
    assert as_jsonl.headers["Content-Disposition"] == 'attachment; filename="mils-batch-export-results.jsonl"'
    lines = [json.loads(line) for line in as_jsonl.get_data(as_text=True).splitlines()]
    assert [(r["key"], r["status"], r["output"], r["score"]) for r in lines] == \
        [(r["key"], r["status"], r["output"] or None, float(r["score"]) if r["score"] else None) for r in got]

    # The batch page's download links are the same files.
    assert client.get("/batches/export/results.coco").get_data() == coco.get_data()
    assert client.get("/batches/export/results.csv").get_data(as_text=True) == text

    message = error_of(client.get("/api/batches/export/results?format=xlsx"), 400)
    assert message == "format must be one of coco, csv, jsonl, not 'xlsx'"
    # The progress counts what ran.
    detail = client.get("/api/batches/export").get_json()
    assert detail["by_status"] == {"succeeded": 2, "queued": 1} and detail["done"] == 2
    assert [s["step"] for s in detail["score_per_step"]] == [0, 1, 2]
    assert all(s["jobs"] == 2 for s in detail["score_per_step"])


def test_an_unknown_batch_is_a_404_everywhere(client, Session):
    created(post_batch(client, "known", archive=(three_images_archive(), "set.zip")))
    for method, url in [("get", "/api/batches/nope"), ("get", "/api/batches/nope/items"),
                        ("get", "/api/batches/nope/results"), ("get", "/api/batches/nope/results?format=csv"),
                        ("post", "/api/batches/nope/cancel"), ("post", "/api/batches/nope/resume")]:
        assert error_of(getattr(client, method)(url), 404) == "no batch 'nope'", url
    for method, url in [("get", "/batches/nope"), ("get", "/batches/nope/live"), ("get", "/batches/nope/items"),
                        ("get", "/batches/nope/results.csv"), ("post", "/batches/nope/cancel"),
                        ("post", "/batches/nope/resume")]:
        response = getattr(client, method)(url)
        assert response.status_code == 404 and "no batch &#39;nope&#39;" in response.get_data(as_text=True), url
    assert client.get("/api/batches/known").status_code == 200


# --------------------------------------------------------------------------- lifecycle


def test_cancel_and_resume_a_batch(client, Session, queue_db):
    created(post_batch(client, "life", archive=(three_images_archive(), "set.zip")))
    job_ids = [i["job_id"] for i in stored_items(Session, "life")]
    run_jobs(Session, job_ids[:1])  # one finishes before the cancel: it stays succeeded
    before = queued(queue_db)

    cancelled = client.post("/api/batches/life/cancel")
    assert cancelled.status_code == 200
    body = cancelled.get_json()
    assert body["cancelled"] == 2 and body["by_status"] == {"succeeded": 1, "cancelled": 2}
    assert body["finished"] is True and body["done"] == 3
    assert job_statuses(Session, job_ids) == {job_ids[0]: "succeeded", job_ids[1]: "cancelled",
                                              job_ids[2]: "cancelled"}
    assert client.post("/api/batches/life/cancel").get_json()["cancelled"] == 0  # nothing left to cancel

    resumed = client.post("/api/batches/life/resume")
    assert resumed.status_code == 202
    body = resumed.get_json()
    assert body["resumed"] == 2 and body["by_status"] == {"succeeded": 1, "queued": 2}
    assert job_statuses(Session, job_ids) == {job_ids[0]: "succeeded", job_ids[1]: "queued", job_ids[2]: "queued"}
    assert queued(queue_db)[len(before):] == [(job_ids[1], 0), (job_ids[2], 0)]  # from their first step again
    assert client.post("/api/batches/life/resume").get_json()["resumed"] == 0

    run_jobs(Session, job_ids[1:])
    assert client.get("/api/batches/life").get_json()["by_status"] == {"succeeded": 3}


def test_cancel_of_a_batch_with_every_job_queued_cancels_them_all(client, Session):
    created(post_batch(client, "all-queued", archive=(three_images_archive(), "set.zip")))
    body = client.post("/api/batches/all-queued/cancel").get_json()
    assert body["cancelled"] == 3 and body["by_status"] == {"cancelled": 3}
    body = client.post("/api/batches/all-queued/resume").get_json()
    assert body["resumed"] == 3 and body["by_status"] == {"queued": 3}


def test_a_batch_keeps_at_most_its_limit_of_jobs_in_flight_and_lets_the_next_in_as_one_ends(client, Session, queue_db):
    from worker.batches import release_all

    body = created(post_batch(client, "limited", archive=(three_images_archive(), "set.zip"), max_in_flight=2))
    assert body["submission"]["added"] == 3
    items = stored_items(Session, "limited")
    assert [i["queued"] for i in items] == [True, True, False]  # the third is held
    assert queued(queue_db) == [(items[0]["job_id"], 0), (items[1]["job_id"], 0)]
    jobs = [client.get(f"/api/jobs/{i['job_id']}").get_json() for i in items]
    assert [j["priority"] for j in jobs] == ["low"] * 3  # a batch's default: single jobs go first
    assert jobs[0]["queued_at"] and jobs[2]["queued_at"] is None  # held: not on the queue yet
    assert release_all(Session) == 0  # no room: nothing more goes in

    assert client.post(f"/api/jobs/{items[0]['job_id']}/cancel").status_code in (200, 202)
    assert release_all(Session) == 1  # the reaper pass lets the next one in
    assert [i["queued"] for i in stored_items(Session, "limited")] == [True, True, True]
    assert queued(queue_db)[-1] == (items[2]["job_id"], 0)
    # A limit and a priority of an existing batch can be changed; a bad one is refused.
    assert "max_in_flight must be a whole number" in error_of(
        post_batch(client, "limited", archive=(three_images_archive(), "set.zip"), max_in_flight="many"), 400)
    assert "priority must be one of low, normal, high" in error_of(
        post_batch(client, "limited", archive=(three_images_archive(), "set.zip"), priority="asap"), 400)


def test_items_the_broker_did_not_take_are_queued_by_the_next_submission_or_a_resume(client, Session, queue_db,
                                                                                      monkeypatch):
    import worker.batches

    # One item per chunk: the broker's refusal of the first must not stop the others being stored.
    monkeypatch.setattr(worker.batches, "CHUNK_ITEMS", 1)
    use_broker("redis://127.0.0.1:1/0")  # nothing listens there
    for name in ("cut-a", "cut-b"):
        response = post_batch(client, name, archive=(three_images_archive(), "set.zip"))
        message = error_of(response, 503)
        assert f"batch {name!r}: 3 job(s) are stored but the broker did not take them" in message
        assert "mils batch resume" in message
        stored = stored_items(Session, name)
        assert response.get_json()["error"]["job_id"] == stored[-1]["job_id"]
        assert [(i["item_key"], i["queued"], bool(i["job_id"])) for i in stored] == \
            [("a", False, True), ("b", False, True), ("c", False, True)]
    assert queued(queue_db) == []
    use_broker(f"sqla+sqlite:///{queue_db}")  # the broker is back

    report = created(post_batch(client, "cut-a", archive=(three_images_archive(), "set.zip")), 200)["submission"]
    assert (report["added"], report["already"], report["requeued"]) == (0, 3, 3)
    a_jobs = [i["job_id"] for i in stored_items(Session, "cut-a")]
    assert all(i["queued"] for i in stored_items(Session, "cut-a"))
    resumed = client.post("/api/batches/cut-b/resume")
    assert resumed.status_code == 202 and resumed.get_json()["resumed"] == 3
    b_jobs = [i["job_id"] for i in stored_items(Session, "cut-b")]
    assert all(i["queued"] for i in stored_items(Session, "cut-b"))
    assert queued(queue_db) == [(job_id, 0) for job_id in a_jobs + b_jobs]
    # Nothing is queued twice afterwards.
    assert client.post("/api/batches/cut-b/resume").get_json()["resumed"] == 0
    assert created(post_batch(client, "cut-a", archive=(three_images_archive(), "set.zip")), 200)["submission"][
        "requeued"] == 0
    assert len(queued(queue_db)) == 6


# --------------------------------------------------------------------------- upload limits


def noise_png(side: int = 300) -> bytes:
    """A PNG of random pixels: it does not compress (about side*side*3 bytes)."""
    import random

    rng = random.Random(7)
    image = Image.frombytes("RGB", (side, side), bytes(rng.getrandbits(8) for _ in range(side * side * 3)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_batch_uploads_have_their_own_size_limit_in_the_api_and_the_form(pg, queue_db, monkeypatch):
    """A batch's archive may be larger than one job's upload (MILS_BATCH_UPLOAD_BYTES, not the
    app's MAX_CONTENT_LENGTH), through the API and through the form, CSRF token and all."""
    archive = make_zip({"noise.png": noise_png()}, zipfile.ZIP_STORED)
    assert len(archive) > 250_000
    app = create_app({"DATABASE_URL": pg, "MAX_CONTENT_LENGTH": 100_000})
    client = app.test_client()
    page = client.get("/batches/new").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)

    def via_form(name: str):
        return client.post("/batches/new", data={"csrf_token": token, "name": name, "task": "image-caption",
                                                  "archive": (io.BytesIO(archive), "big.zip"), **SETTINGS})

    monkeypatch.setenv("MILS_BATCH_UPLOAD_BYTES", "1000000")
    api = post_batch(client, "big-api", archive=(archive, "big.zip"))
    assert created(api)["submission"]["added"] == 1
    form = via_form("big-form")
    assert form.status_code == 302 and form.headers["Location"] == "/batches/big-form"
    # A single job keeps the app's own limit.
    job = client.post("/api/jobs", data={"file": (io.BytesIO(noise_png()), "big.png")})
    assert "over the 100,000-byte limit" in error_of(job, 413)

    monkeypatch.setenv("MILS_BATCH_UPLOAD_BYTES", "200000")
    assert "over the 200,000-byte limit" in error_of(post_batch(client, "too-big", archive=(archive, "big.zip")), 413)
    assert via_form("too-big").status_code == 413
    assert [b["name"] for b in client.get("/api/batches").get_json()["batches"]] == ["big-form", "big-api"]


def test_with_token_auth_batches_need_a_token_and_strangers_get_no_larger_upload(pg, queue_db, monkeypatch):
    from worker.store.tokens import create_token

    with open_store(pg).begin() as session:
        token = create_token(session, "ci")
    app = create_app({"DATABASE_URL": pg, "MAX_CONTENT_LENGTH": 100_000, "AUTH": "token"})
    client = app.test_client()
    monkeypatch.setenv("MILS_BATCH_UPLOAD_BYTES", "1000000")
    archive = make_zip({"noise.png": noise_png()}, zipfile.ZIP_STORED)
    assert client.get("/batches").status_code == 302 and client.get("/batches/x").status_code == 302
    assert "needs a token" in error_of(client.get("/api/batches"), 401)
    # A stranger's large upload is cut off at the app's limit, before anything reads it in full.
    assert client.post("/batches/new", data={"name": "s", "archive": (io.BytesIO(archive), "a.zip")}).status_code == 413
    # The API refuses a stranger before it reads the body at all.
    assert "needs a token" in error_of(post_batch(client, "s", archive=(archive, "a.zip")), 401)
    good = {"Authorization": f"Bearer {token}"}
    response = client.post("/api/batches", headers=good, data={"name": "mine", **SETTINGS, "llm": "embedded",
                                                                "scorer": "embedded",
                                                                "archive": (io.BytesIO(archive), "a.zip")})
    assert created(response)["submission"]["added"] == 1
    with open_store(pg)() as session:
        assert session.scalars(select(Batch.name)).all() == ["mine"]


# --------------------------------------------------------------------------- the HTML pages


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def _by_id(page: str, element_id: str, tag: str = "[a-z0-9]+") -> str:
    match = re.search(rf'<({tag})[^>]*id="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no #{element_id} in the page"
    return _text(match.group(2))


def test_the_form_starts_a_batch_and_the_pages_show_what_the_api_does(client, Session):
    rows = [["a", "a.png", "ref a"], ["b", "b.png", "ref b"], ["c", "bad.png", "ref c"], ["d", "d.png", ""],
            ["e", "e.png", ""]]
    archive = make_zip({"manifest.csv": manifest_csv(rows, "id,path,reference"), "a.png": png(0),
                        "b.png": png(1), "bad.png": b"nope", "d.png": png(3), "e.png": png(4)})
    form = client.post("/batches/new", data={"name": "paged", "task": "image-caption",
                                             "archive": (io.BytesIO(archive), "form.zip"), **SETTINGS})
    assert form.status_code == 302 and form.headers["Location"] == "/batches/paged"
    page = client.get("/batches/paged").get_data(as_text=True)
    flashes = [_text(f) for f in re.findall(r'<p class="flash[^"]*"[^>]*>(.*?)</p>', page, re.S)]
    assert "batch paged: 4 item(s) queued, 0 already in it, 1 rejected" in flashes
    assert "rejected c: bad.png: not an image in a format we can read" in flashes

    api = client.get("/api/batches/paged").get_json()
    heading = _text(re.search(r"<h1>(.*?)</h1>", page, re.S).group(1))
    assert heading == f"Batch paged {api['task']}, {api['items']} items" == "Batch paged image-caption, 5 items"
    assert _by_id(page, "batch-done") == str(api["done"]) == "0"
    assert _by_id(page, "batch-jobs") == str(api["jobs"]) == "4"
    assert _by_id(page, "batch-counts", "ul") == "queued 4"
    assert "1 rejected" in _by_id(page, "batch-summary")
    rows_shown = re.findall(r'<tr data-key="([^"]+)">(.*?)</tr>', page, re.S)
    items = client.get("/api/batches/paged/items").get_json()["items"]
    assert [key for key, _ in rows_shown] == [i["key"] for i in items] == ["a", "b", "c", "d", "e"]
    for (_, row), item in zip(rows_shown, items):
        cells = [_text(td) for td in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        assert cells[0] == str(item["position"] + 1) and cells[2] == item["status"]
        assert cells[3] == (f"#{item['job_id']}" if item["job_id"] else "")
    assert "bad.png: not an image" in rows_shown[2][1]

    # The live fragment, and the items fragment filtered and paged.
    live = client.get("/batches/paged/live").get_data(as_text=True)
    assert _by_id(live, "batch-done") == "0" and 'hx-trigger="every 2s"' in live
    rejected = client.get("/batches/paged/items?status=rejected").get_data(as_text=True)
    assert re.findall(r'<tr data-key="([^"]+)">', rejected) == ["c"]
    first = client.get("/batches/paged/items?limit=2").get_data(as_text=True)
    assert re.findall(r'<tr data-key="([^"]+)">', first) == ["a", "b"]
    # The next page link keeps the page size it says ("Next 2").
    assert re.search(r'id="items-next">Next 2 ', first)
    next_url = html.unescape(re.search(r'hx-get="([^"]+)"[^>]*id="items-next"', first).group(1))
    second = client.get(next_url).get_data(as_text=True)
    assert re.findall(r'<tr data-key="([^"]+)">', second) == ["c", "d"]
    third = html.unescape(re.search(r'hx-get="([^"]+)"[^>]*id="items-next"', second).group(1))
    assert re.findall(r'<tr data-key="([^"]+)">', client.get(third).get_data(as_text=True)) == ["e"]
    # The list of batches.
    listing = client.get("/batches").get_data(as_text=True)
    row = re.search(r'<tr data-batch="paged">(.*?)</tr>', listing, re.S).group(1)
    assert [_text(td) for td in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)][:6] == \
        ["paged", "image-caption", "5", "0 / 4", "", "1"]

    # A bad archive shows the reason next to the form, and keeps nothing.
    bad = client.post("/batches/new", data={"name": "worse", "task": "image-caption",
                                            "archive": (io.BytesIO(make_zip({"../x.png": png(0)})), "x.zip")})
    assert bad.status_code == 400
    assert "member &#39;../x.png&#39; points outside the archive; refused" in bad.get_data(as_text=True)
    assert client.get("/api/batches/worse").status_code == 404
