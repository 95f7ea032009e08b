"""The paper's evaluation sets as batches, from the files those datasets ship as (built here in
their shapes over the bundled photos, with our own captions; nothing is downloaded): Karpathy's
dataset_coco.json, MSR-VTT's test_videodatainfo.json and Clotho's captions CSV, through `mils
batch ...`, `mils worker` processes on the tiny fakes (tests/support/fakes.py), the machine's
PostgreSQL and a private Redis; and uploaded to the JSON API and the form.

What is checked: items per split and per subset (the same subset twice, recorded with the batch),
references stored, the COCO results' integer image_ids equal to the cocoids, `mils batch eval`
(its own references, the Karpathy file, and a folder batch against a COCO captions file matched
by file name) equal to pycocoevalcap's COCOEvalCap on the same captions, a video batch and an
audio batch run by a worker, malformed files refused whole naming the entry, missing media
rejected item by item, and a web request kept inside MILS_DATASET_ROOT.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.service.test_batches import batch_status, wait_finished
from tests.service.test_distributed import redis, redis_server, stack  # noqa: F401 (fixtures)
from tests.support.media import recording
from tests.support.services import assert_one_error_line, query, scalar, without_spice
from worker.datasets import Selection, open_dataset
from worker.media.samples import SKIMAGE_PHOTOS, sample_path

GENERATOR = "py:tests.support.fakes:worker_generator"
SCORER = "py:tests.support.fakes:worker_scorer"
STEPS = 2
RUN = ["--llm", GENERATOR, "--scorer", SCORER, "--steps", str(STEPS), "--candidates", "4", "--top-k", "3",
       "--seed", "5"]
FAST = {"MILS_FAKE_STEP_SECONDS": "0.05"}
METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
WORDS = ["cat", "tabby", "wooden", "table", "sun", "kitten", "chair", "sitting"]


SPLITS = ["train", "test", "val", "test", "restval", "test", "train", "test", "val", "test", "restval", "test",
          "train", "test"]


def karpathy(folder: Path) -> tuple[Path, Path, list[dict]]:
    """dataset_coco.json of 14 images: 7 test ones, whose photos (bundled ones) are under
    coco/val2014/ but for the last one's, and 3 train, 2 val and 2 restval ones without any file."""
    media = folder / "coco"
    (media / "val2014").mkdir(parents=True)
    images = []
    for i, split in enumerate(SPLITS):
        cocoid = 391895 + 7 * i
        subfolder = "train2014" if split == "train" else "val2014"
        filename = f"COCO_{subfolder}_{cocoid:012d}.jpg"
        photo = SKIMAGE_PHOTOS[i % len(SKIMAGE_PHOTOS)]
        if split == "test" and i < len(SPLITS) - 1:
            shutil.copy(sample_path(photo), media / subfolder / filename)
        a, b = WORDS[i % len(WORDS)], WORDS[(3 * i + 1) % len(WORDS)]
        raws = [f"A {a} {b} next to the {photo}.", f"the {photo} with a {b} in the sun", f"A {a} photo."]
        images.append({"filepath": subfolder, "sentids": [3 * i + j for j in range(3)], "filename": filename,
                       "imgid": i, "split": split, "cocoid": cocoid,
                       "sentences": [{"tokens": r.lower().strip(".").split(), "raw": r, "imgid": i, "sentid": 3 * i + j}
                                     for j, r in enumerate(raws)]})
    path = folder / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path, media, images


def batch_items(stack, name: str) -> list[tuple]:
    return query(stack.url, "SELECT i.item_key, i.source, i.references, i.error FROM batch_items i "
                            "JOIN batches b ON b.id = i.batch_id WHERE b.name = %s ORDER BY i.position", (name,))


def finals(stack, name: str) -> dict[str, str]:
    return dict(query(stack.url, "SELECT i.item_key, j.result_text FROM batch_items i JOIN jobs j ON j.id = i.job_id "
                                 "JOIN batches b ON b.id = i.batch_id WHERE b.name = %s", (name,)))


def direct_metrics(monkeypatch, references: dict[int, list[str]], captions: dict[int, str], tmp: Path) -> dict:
    """pycocoevalcap's own COCOEvalCap on a COCO annotation file and results file of these."""
    import pycocoevalcap.eval as cocoeval
    from pycocotools.coco import COCO

    without_spice(monkeypatch)
    annotations = [{"id": n, "image_id": image_id, "caption": caption}
                   for n, (image_id, caption) in enumerate(((i, c) for i, cs in references.items() for c in cs), 1)]
    tmp.mkdir(exist_ok=True)
    gt = tmp / f"gt{len(list(tmp.iterdir()))}.json"
    gt.write_text(json.dumps({"images": [{"id": i} for i in references], "annotations": annotations}))
    res = tmp / f"res{len(list(tmp.iterdir()))}.json"
    res.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in captions.items()]))
    coco = COCO(str(gt))
    direct = cocoeval.COCOEvalCap(coco, coco.loadRes(str(res)))
    direct.evaluate()
    return direct.eval


def evaluated(stack, *args: str) -> dict:
    out = stack.cli("batch", "eval", *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def assert_equal_metrics(ours: dict, direct: dict) -> None:
    for metric in METRICS:
        assert ours["final"][metric] == pytest.approx(direct[metric], abs=1e-9), metric


def test_a_karpathy_split_and_its_subsets_run_and_evaluate_like_pycocoevalcap(stack, tmp_path, monkeypatch):
    path, media, images = karpathy(tmp_path)
    tests = [image for image in images if image["split"] == "test"]
    assert len(images) == 14 and len(tests) == 7
    missing = tests[-1]

    out = stack.cli("batch", "submit", "kt", str(path), "--media", str(media), "--split", "test", *RUN)
    assert out.returncode == 0, out.stderr
    assert "6 item(s) queued, 0 already in it, 1 rejected; split test of 14 entries" in out.stdout
    assert out.stderr.count("rejected") == 1
    assert (f"rejected {missing['cocoid']} (line {missing['imgid']}): val2014/{missing['filename']}: no such file"
            in out.stderr)
    stored = batch_items(stack, "kt")
    assert [key for key, *_ in stored] == [str(image["cocoid"]) for image in tests]
    assert stored[0][1] == f"val2014/{tests[0]['filename']}"
    assert [refs for _, _, refs, _ in stored] == [[s["raw"] for s in image["sentences"]] for image in tests]

    # A subset of the split, twice under other names: the same items; again to the same batch: nothing new.
    subsets = {}
    for name in ("k3", "k3-again"):
        out = stack.cli("batch", "submit", name, str(path), "--images", str(media), "--split", "test",
                        "--subset", "3", "--json", *RUN)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["dataset"] == {"kind": "karpathy", "name": str(path), "items": 3, "skipped": 0,
                                     "split": "test", "subset": 3, "subset_seed": 0, "entries": 14}
        subsets[name] = [key for key, *_ in batch_items(stack, name)]
    expected = {seed: [i.key for i in open_dataset(path, "image", selection=Selection("test", 3, seed)).items]
                for seed in (0, 7)}
    assert subsets["k3"] == subsets["k3-again"] == expected[0]
    assert set(subsets["k3"]) <= {str(image["cocoid"]) for image in tests}
    runnable = {seed: len(set(keys) - {str(missing["cocoid"])}) for seed, keys in expected.items()}
    again = stack.cli("batch", "submit", "k3", str(path), "--media", str(media), "--split", "test", "--subset", "3")
    assert again.returncode == 0, again.stderr
    assert f"0 item(s) queued, {runnable[0]} already in it, {3 - runnable[0]} rejected" in again.stdout
    other = stack.cli("batch", "submit", "k3-seed7", str(path), "--media", str(media), "--split", "test",
                      "--subset", "3", "--subset-seed", "7", "--json", *RUN)
    assert other.returncode == 0 and json.loads(other.stdout)["dataset"]["subset_seed"] == 7
    assert [key for key, *_ in batch_items(stack, "k3-seed7")] == expected[7]
    assert batch_status(stack, "k3")["items"] == 3

    # The same photos as a folder batch: its keys are the file names.
    out = stack.cli("batch", "submit", "kf", str(media / "val2014"), *RUN)
    assert out.returncode == 0 and "6 item(s) queued" in out.stdout, out.stderr

    # Refused whole, nothing stored: an unknown split, a split of a folder, a malformed entry.
    assert_one_error_line(stack.cli("batch", "submit", "bad", str(path), "--split", "tst"),
                          r"no split 'tst'; its splits are: restval \(2\), test \(7\), train \(3\), val \(2\)")
    assert_one_error_line(stack.cli("batch", "submit", "bad", str(media), "--split", "test"),
                          "a folder dataset has no splits")
    broken = json.loads(path.read_text())
    del broken["images"][5]["sentences"][2]["raw"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    assert_one_error_line(stack.cli("batch", "submit", "bad", str(tmp_path / "broken.json"), "--split", "test"),
                          r"broken.json images\[5\] sentences\[2\]: a sentence needs a \"raw\" string")
    assert scalar(stack.url, "SELECT count(*) FROM batches WHERE name = 'bad'") == 0

    stack.start_worker("w1", **FAST)
    stack.start_worker("w2", **FAST)
    for name, jobs in (("kt", 6), ("k3", runnable[0]), ("k3-again", runnable[0]), ("k3-seed7", runnable[7]),
                       ("kf", 6)):
        assert wait_finished(stack, name, timeout=180)["by_status"] == {"succeeded": jobs}, name

    # COCO results: integer image_ids, the cocoids.
    results = json.loads(stack.cli("batch", "results", "kt", "--format", "coco").stdout)
    assert sorted(r["image_id"] for r in results) == sorted(image["cocoid"] for image in tests[:-1])
    assert all(isinstance(r["image_id"], int) for r in results)

    # `mils batch eval`, its own references and the Karpathy file's, equals COCOEvalCap.
    references = {image["cocoid"]: [s["raw"] for s in image["sentences"]] for image in tests[:-1]}
    captions = {int(key): text for key, text in finals(stack, "kt").items()}
    # Stanford's PTB tokenizer keeps the period of a last word of one letter ("on a.") at the very
    # end of its input, and only there: which caption is last differs between COCOEvalCap's calls
    # and ours, so such a caption would tell them apart. The jobs' seed keeps them out of this test.
    assert not [text for text in captions.values() if re.search(r"\b\w\.$", text)], captions
    assert captions == {r["image_id"]: r["caption"] for r in results}
    direct = direct_metrics(monkeypatch, references, captions, tmp_path / "coco-eval")
    own = evaluated(stack, "kt")
    assert own["final"]["items"] == 6 and own["references"] == "the batch's own"
    assert_equal_metrics(own, direct)
    from_file = evaluated(stack, "kt", "--references", str(path))
    assert from_file["matched_by"] == {"key": 7} and from_file["final"]["items"] == 6
    assert_equal_metrics(from_file, direct)

    # The folder batch against a COCO captions file of the same photos: matched by file name.
    captions_file = tmp_path / "captions_val2014.json"
    captions_file.write_text(json.dumps({
        "images": [{"id": image["cocoid"], "file_name": image["filename"]} for image in tests],
        "annotations": [{"id": n, "image_id": image["cocoid"], "caption": s["raw"]}
                        for n, (image, s) in enumerate(((i, s) for i in tests for s in i["sentences"]), 1)]}))
    by_name = {image["filename"]: image["cocoid"] for image in tests}
    folder_captions = {by_name[key]: text for key, text in finals(stack, "kf").items()}
    folder = evaluated(stack, "kf", "--references", str(captions_file))
    assert folder["matched_by"] == {"path": 6} and folder["final"]["items"] == 6
    assert_equal_metrics(folder, direct_metrics(monkeypatch, references, folder_captions, tmp_path / "coco-eval"))
    text = stack.cli("batch", "eval", "kf", "--references", str(path))
    assert text.returncode == 0 and "matched by file name 6" in text.stdout, text.stderr
    unrelated = tmp_path / "other.csv"
    unrelated.write_text("path,reference\nelsewhere/x.png,a cat\n")
    assert_one_error_line(stack.cli("batch", "eval", "kf", "--references", str(unrelated)),
                          "other.csv: none of its entries with reference captions matches an item of batch 'kf'")


def test_an_msrvtt_video_batch_and_a_clotho_audio_batch_run_on_a_worker(stack, tmp_path):
    from PIL import Image

    from worker.media.video import pan_video

    # MSR-VTT: test_videodatainfo.json with 3 test videos (one as .mov, one missing), 2 others.
    videos = {"video7010": "test", "video7011": "test", "video7012": "test", "video1": "train", "video6600": "validate"}
    info = {"info": {"year": 2016, "version": "1.0"},
            "videos": [{"category": n, "url": f"https://www.youtube.com/watch?v=x{n}", "video_id": vid,
                        "start time": 0.0, "end time": 3.0, "split": split, "id": n}
                       for n, (vid, split) in enumerate(videos.items())],
            "sentences": [{"caption": f"a {word} pans past in {vid}", "video_id": vid, "sen_id": 3 * n + j}
                          for n, vid in enumerate(videos) for j, word in enumerate(("cat", "camera", "photo"))]}
    (tmp_path / "test_videodatainfo.json").write_text(json.dumps(info))
    clips = tmp_path / "TestVideo"
    clips.mkdir()
    for vid, photo, suffix in (("video7010", "chelsea", ".mp4"), ("video7011", "coffee", ".mov")):
        with Image.open(sample_path(photo)) as image:
            (clips / f"{vid}{suffix}").write_bytes(pan_video(image.convert("RGB"), seconds=1.0, fps=4, size=64))
    out = stack.cli("batch", "submit", "vtt", str(tmp_path / "test_videodatainfo.json"), "--media", str(clips),
                    "--task", "video-caption", "--split", "test", "--frames", "2", *RUN)
    assert out.returncode == 0, out.stderr
    assert "2 item(s) queued, 0 already in it, 1 rejected; split test of 5 entries" in out.stdout
    assert re.search(r"rejected video7012 \(line 2\): video7012: no such file \(\.mp4, \.m4v, \.mov", out.stderr)
    assert [(k, s) for k, s, _, _ in batch_items(stack, "vtt")] == [
        ("video7010", "video7010.mp4"), ("video7011", "video7011.mov"), ("video7012", "video7012.mp4")]

    # Clotho: its captions CSV as shipped (file names with spaces and commas), one recording missing.
    audio = tmp_path / "evaluation"
    audio.mkdir()
    names = ["Santa Motor.wav", "rain, on a tin roof.wav", "gone.wav"]
    for n, name in enumerate(names[:2]):
        (audio / name).write_bytes(recording(seconds=1.0 + n))
    with open(tmp_path / "clotho_captions_evaluation.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", *(f"caption_{i}" for i in range(1, 6))])
        for name in names:
            writer.writerow([name, *(f"a tabby cat {w} by a {name.split('.')[0].lower()}"
                                     for w in ("sitting", "waiting", "listening", "purring", "sleeping"))])
    out = stack.cli("batch", "submit", "clotho", str(tmp_path / "clotho_captions_evaluation.csv"),
                    "--media", str(audio), "--task", "audio-caption", *RUN)
    assert out.returncode == 0, out.stderr
    assert "2 item(s) queued, 0 already in it, 1 rejected" in out.stdout
    assert "rejected gone.wav (line 4): gone.wav: no such file" in out.stderr
    stored = batch_items(stack, "clotho")
    assert [k for k, *_ in stored] == names and all(len(refs) == 5 for _, _, refs, _ in stored)
    assert json.loads(stack.cli("batch", "status", "clotho", "--json").stdout)["items"] == 3

    # A Clotho CSV with a split, and one with a column that is not there: refused whole.
    assert_one_error_line(stack.cli("batch", "submit", "bad", str(tmp_path / "clotho_captions_evaluation.csv"),
                                    "--task", "audio-caption", "--split", "evaluation"), "a csv dataset has no splits")
    assert_one_error_line(stack.cli("batch", "submit", "bad", str(tmp_path / "clotho_captions_evaluation.csv"),
                                    "--task", "audio-caption", "--path-column", "audio"),
                          r"line 1: no 'audio' column \(the columns are: file_name, caption_1")

    stack.start_worker("w", **FAST)
    for name in ("vtt", "clotho"):
        done = wait_finished(stack, name, timeout=180)
        assert done["by_status"] == {"succeeded": 2} and done["rejected"] == 1, name
    inputs = query(stack.url, "SELECT j.task, j.input_name FROM jobs j ORDER BY j.id")
    assert inputs == [("video-caption", "video7010.mp4"), ("video-caption", "video7011.mov"),
                      ("audio-caption", "Santa Motor.wav"), ("audio-caption", "rain, on a tin roof.wav")]
    for name, references in (("vtt", tmp_path / "test_videodatainfo.json"),
                             ("clotho", tmp_path / "clotho_captions_evaluation.csv")):
        own = evaluated(stack, name)
        from_file = evaluated(stack, name, "--references", str(references))
        assert own["final"]["items"] == from_file["final"]["items"] == 2 and from_file["matched_by"] == {"key": 3}
        assert {m: own["final"][m] for m in METRICS} == {m: from_file["final"][m] for m in METRICS}
    exported = stack.cli("batch", "results", "clotho", "--format", "jsonl").stdout
    results = [json.loads(line) for line in exported.splitlines() if line]
    assert [(r["key"], r["status"]) for r in results] == [(names[0], "succeeded"), (names[1], "succeeded"),
                                                          (names[2], "rejected")]


# --------------------------------------------------------------------------- the API and the form


@pytest.fixture
def client(pg, queue_db):
    from web import create_app

    return create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True}).test_client()


def post(client, name: str, upload: bytes, filename: str, url: str = "/api/batches", **fields):
    data = {"name": name, "llm": GENERATOR, "scorer": SCORER, "steps": "2", **{k: str(v) for k, v in fields.items()},
            "manifest": (io.BytesIO(upload), filename)}
    return client.post(url, data=data)


def test_an_uploaded_karpathy_file_with_a_split_and_subset_under_the_dataset_root(client, pg, tmp_path,
                                                                                 monkeypatch):
    from worker.store.db import open_store
    from worker.store.schema import Batch, BatchItem

    root = tmp_path / "datasets"
    root.mkdir()
    path, media, images = karpathy(root)
    (tmp_path / "secret").mkdir()
    monkeypatch.setenv("MILS_DATASET_ROOT", str(root))
    upload = path.read_bytes()

    response = post(client, "web-k", upload, "dataset_coco.json", media_folder="coco", split="test", subset=3,
                    subset_seed=4)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    chosen = {"split": "test", "subset": 3, "subset_seed": 4, "entries": 14}
    assert body["submission"]["dataset"] == {"kind": "karpathy", "name": "dataset_coco.json", "items": 3,
                                             "skipped": 0, **chosen}
    assert body["sources"] == [body["submission"]["dataset"]]
    assert client.get("/api/batches/web-k").get_json()["sources"] == body["sources"]
    with open_store(pg)() as session:
        keys = session.scalars(select(BatchItem.item_key).join(Batch).where(Batch.name == "web-k")
                               .order_by(BatchItem.position)).all()
    assert len(keys) == 3 and set(keys) <= {str(i["cocoid"]) for i in images if i["split"] == "test"}
    page = client.get("/batches/web-k").get_data(as_text=True)
    sources = re.sub(r"\s+", " ", re.search(r'<ol id="batch-sources">(.*?)</ol>', page, re.S).group(1))
    assert "karpathy dataset_coco.json: 3 item(s), split test, a subset of 3 (subset seed 4) of 14 entries" in sources

    # The form takes the same fields.
    form = post(client, "form-k", upload, "dataset_coco.json", url="/batches/new", task="image-caption",
                media_folder="coco", split="test", subset=3, subset_seed=4)
    assert form.status_code == 302 and form.headers["Location"] == "/batches/form-k"
    with open_store(pg)() as session:
        form_keys = session.scalars(select(BatchItem.item_key).join(Batch).where(Batch.name == "form-k")
                                    .order_by(BatchItem.position)).all()
    assert form_keys == keys
    assert 'name="split"' in client.get("/batches/new").get_data(as_text=True)

    # Refused, nothing stored: a media folder outside the root, an unknown split, a split of a CSV,
    # a subset under 1, a media folder with an archive.
    for fields, message in [
        ({"media_folder": "../secret", "split": "test"}, "media folder '../secret': outside the dataset folder"),
        ({"media_folder": str(tmp_path / "secret")}, "outside the dataset folder"),
        ({"media_folder": "coco", "split": "testing"}, "no split 'testing'; its splits are: restval (2), test (7)"),
        ({"subset": "0"}, "subset must be at least 1, not 0"),
    ]:
        response = post(client, "refused", upload, "dataset_coco.json", **fields)
        assert response.status_code == 400 and message in response.get_json()["error"]["message"], fields
    response = post(client, "refused", b"path\ncoco/val2014/x.jpg\n", "m.csv", split="test")
    assert response.status_code == 400 and "a csv dataset has no splits" in response.get_json()["error"]["message"]
    archive = client.post("/api/batches", data={"name": "refused", "media_folder": "coco",
                                                "archive": (io.BytesIO(b"PK"), "a.zip")})
    assert archive.status_code == 400 and "an archive holds its own media" in archive.get_json()["error"]["message"]
    with open_store(pg)() as session:
        assert session.scalar(select(Batch).where(Batch.name == "refused")) is None

    # Paths of the file that leave the root are rejected item by item; the others are stored.
    escaping = json.loads(upload)
    test_images = [i for i in escaping["images"] if i["split"] == "test"]
    shutil.copy(sample_path("coins"), tmp_path / "secret" / test_images[0]["filename"])
    test_images[0]["filepath"] = "../../secret"
    response = post(client, "escaping", json.dumps(escaping).encode(), "dataset_coco.json", media_folder="coco",
                    split="test")
    report = response.get_json()["submission"]
    assert response.status_code == 201 and report["added"] == 5
    assert [(r["key"], r["error"]) for r in report["rejected"]] == [
        (str(test_images[0]["cocoid"]), f"../../secret/{test_images[0]['filename']}: outside the dataset folder"),
        (str(test_images[-1]["cocoid"]), f"val2014/{test_images[-1]['filename']}: no such file")]


def test_an_uploaded_clotho_csv_and_msrvtt_file_name_media_under_the_root(client, tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    (root / "clotho" / "evaluation").mkdir(parents=True)
    (root / "clotho" / "evaluation" / "a b.wav").write_bytes(recording(seconds=1.0))
    monkeypatch.setenv("MILS_DATASET_ROOT", str(root))
    clotho = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\na b.wav,one,two,three,four,five\n"
    body = post(client, "web-clotho", clotho.encode(), "clotho_captions_evaluation.csv", task="audio-caption",
                media_folder="clotho/evaluation").get_json()
    assert body["submission"]["added"] == 1 and body["submission"]["rejected"] == []
    assert body["sources"][0]["columns"] == {"path": "file_name", "key": "file_name",
                                             "references": [f"caption_{i}" for i in range(1, 6)]}
    items = client.get("/api/batches/web-clotho/items").get_json()["items"]
    assert [(i["key"], i["status"]) for i in items] == [("a b.wav", "queued")]

    named = "clip,text_a,text_b\nclotho/evaluation/a b.wav,one,two\n"
    body = post(client, "web-named", named.encode(), "named.csv", task="audio-caption", path_column="clip",
                reference_columns="text_*").get_json()
    assert body["submission"]["added"] == 1 and body["sources"][0]["columns"]["references"] == ["text_a", "text_b"]

    info = {"videos": [{"video_id": "video9", "split": "test"}, {"video_id": "video8", "split": "train"}],
            "sentences": [{"video_id": "video9", "caption": "x", "sen_id": 0}]}
    response = post(client, "web-vtt", json.dumps(info).encode(), "test_videodatainfo.json", task="video-caption",
                    split="test")
    report = response.get_json()["submission"]
    assert response.status_code == 201 and report["added"] == 0
    assert report["rejected"][0]["key"] == "video9" and "video9: no such file (.mp4" in report["rejected"][0]["error"]
