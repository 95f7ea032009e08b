"""Datasets as batch items (worker.datasets): folders, CSV / JSON Lines / COCO manifests and
zip / tar archives, read from real files; malformed manifests refused with the line, bad items
reported one by one, archives that escape their root or unpack out of proportion refused."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.support.media import make_tar, make_zip
from worker.datasets import ManifestError, open_archive, open_dataset, open_manifest
from worker.media import MediaError


def png(colour=(200, 30, 30), size=(16, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.JPG").write_bytes(png((0, 0, 200)))
    (tmp_path / "notes.txt").write_text("not media")
    (tmp_path / ".hidden.png").write_bytes(png())
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "c.png").write_bytes(png())
    return tmp_path


def test_a_folder_is_every_file_of_the_kinds_formats_recursively(folder):
    dataset = open_dataset(folder, "image")
    assert [item.key for item in dataset.items] == ["a.png", "sub/b.JPG"]
    assert dataset.skipped == 1  # notes.txt; hidden files and folders are not counted
    assert dataset.items[1].read() == (folder / "sub" / "b.JPG").read_bytes()
    assert dataset.kind == "folder"
    with pytest.raises(ManifestError, match="no audio files"):
        open_dataset(folder, "audio")


def test_a_csv_manifest_with_ids_and_references(folder):
    (folder / "m.csv").write_text("id,path,reference,reference_2\n"
                                  "7,a.png,A red square.,  a  small red picture \n"
                                  "\n"
                                  "8,sub/b.JPG,A blue square.,\n"
                                  "9,missing.png,,\n", encoding="utf-8-sig")
    items = open_dataset(folder / "m.csv", "image").items
    assert [(i.key, i.source, i.references, i.line) for i in items] == [
        ("7", "a.png", ("A red square.", "a small red picture"), 2),
        ("8", "sub/b.JPG", ("A blue square.",), 4),
        ("9", "missing.png", (), 5),
    ]
    assert items[0].read() == (folder / "a.png").read_bytes()
    with pytest.raises(MediaError, match="missing.png: no such file"):
        items[2].read()


@pytest.mark.parametrize("text, message", [
    ("file,id\na.png,1\n", r"m.csv line 1: no 'path' column \(the columns are: file, id\)"),
    ("path,id\na.png,1\nsub/b.JPG,1\n", "m.csv line 3: id '1' repeats line 2"),
    ("path,id\na.png,1\n,2\n", "m.csv line 3: the path is empty"),
    ("path,id\na.png,1,extra\n", "m.csv line 2: 3 fields, the header has 2"),
    ("", "m.csv: the file is empty"),
])
def test_a_malformed_csv_is_refused_with_its_line(folder, text, message):
    (folder / "m.csv").write_text(text)
    with pytest.raises(ManifestError, match=message):
        open_dataset(folder / "m.csv", "image")


def test_a_jsonl_manifest_and_its_errors(folder):
    lines = [{"path": "a.png", "id": 1, "references": ["one", "two"]}, {"path": "sub/b.JPG", "reference": "three"}]
    (folder / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    items = open_dataset(folder / "m.jsonl", "image").items
    assert [(i.key, i.references) for i in items] == [("1", ("one", "two")), ("sub/b.JPG", ("three",))]
    for text, message in [('{"path": "a.png"}\n\n{not json\n', "m.jsonl line 3: not JSON"),
                          ('["a.png"]\n', "line 1: not a JSON object"),
                          ('{"id": 1}\n', 'line 1: no "path"'),
                          ('{"path": "a.png", "references": [1]}\n', "line 1: a reference must be a string")]:
        (folder / "m.jsonl").write_text(text)
        with pytest.raises(ManifestError, match=message):
            open_dataset(folder / "m.jsonl", "image")


def test_a_coco_captions_file_takes_its_references_and_an_image_folder(folder, tmp_path_factory):
    coco = {"images": [{"id": 42, "file_name": "a.png"}, {"id": 7, "file_name": "sub/b.JPG"}],
            "annotations": [{"image_id": 42, "caption": "A red square."}, {"image_id": 7, "caption": "Blue."},
                            {"image_id": 42, "caption": "Red."}]}
    elsewhere = tmp_path_factory.mktemp("annotations") / "captions_val.json"
    elsewhere.write_text(json.dumps(coco))
    items = open_dataset(elsewhere, "image", media_root=folder).items
    assert [(i.key, i.references) for i in items] == [("42", ("A red square.", "Red.")), ("7", ("Blue.",))]
    assert items[0].read() == (folder / "a.png").read_bytes()
    coco["annotations"].append({"image_id": 99, "caption": "x"})
    elsewhere.write_text(json.dumps(coco))
    with pytest.raises(ManifestError, match=r"annotations\[3\]: image_id 99 is not in \"images\""):
        open_dataset(elsewhere, "image", media_root=folder)
    elsewhere.write_text(json.dumps({"images": [{"id": 1}]}))
    with pytest.raises(ManifestError, match=r"images\[0\]: an image needs"):
        open_dataset(elsewhere, "image")


def test_an_uploaded_manifest_reads_only_under_the_dataset_root(folder, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret.png"
    outside.write_bytes(png())
    text = f"path\na.png\n../{outside.parent.name}/secret.png\n{outside}\n".encode()
    with pytest.raises(ManifestError, match="MILS_DATASET_ROOT"):
        open_manifest(text, "m.csv", None, "image")
    items = open_manifest(text, "m.csv", folder, "image").items
    assert items[0].read() == (folder / "a.png").read_bytes()
    for item in items[1:]:
        with pytest.raises(MediaError, match="outside the dataset folder"):
            item.read()


def test_an_archive_without_a_manifest_is_its_media_files():
    archive = io.BytesIO(make_zip({"x/a.png": png(), "b.webp": b"not really", "readme.txt": b"hi"}, zipfile.ZIP_STORED))
    dataset = open_archive(archive, "set.zip", "image")
    assert dataset.kind == "zip" and dataset.skipped == 1
    assert [i.key for i in dataset.items] == ["b.webp", "x/a.png"]
    assert dataset.items[1].read() == png()


def test_an_archive_with_a_manifest_reports_bad_items_one_by_one():
    manifest = "id,path,reference\n1,img/a.png,A red square.\n2,img/missing.png,\n3,../../etc/passwd,\n"
    archive = io.BytesIO(make_zip({"manifest.csv": manifest.encode(), "img/a.png": png()}, zipfile.ZIP_DEFLATED))
    dataset = open_archive(archive, "set.zip", "image")
    assert dataset.kind == "zip:csv"
    first, missing, escaping = dataset.items
    assert first.read() == png() and first.references == ("A red square.",)
    with pytest.raises(MediaError, match="img/missing.png: not in the archive"):
        missing.read()
    with pytest.raises(MediaError, match="points outside the archive"):
        escaping.read()


def test_archives_that_escape_their_root_are_refused():
    with pytest.raises(ManifestError, match=r"member '../evil.png' points outside the archive"):
        open_archive(io.BytesIO(make_zip({"../evil.png": png()}, zipfile.ZIP_STORED)), "evil.zip", "image")
    with pytest.raises(ManifestError, match="points outside"):
        open_archive(io.BytesIO(make_zip({"/etc/evil.png": png()}, zipfile.ZIP_STORED)), "evil.zip", "image")
    links = io.BytesIO(make_tar({}, links={"a.png": "/etc/passwd"}, mode="w:gz"))
    with pytest.raises(ManifestError, match="'a.png' is a link or a special file"):
        open_archive(links, "links.tar.gz", "image")


def test_a_zip_bomb_is_refused_before_anything_is_unpacked():
    bomb = io.BytesIO(make_zip({"zeros.png": bytes(50 * 1024 * 1024)}, zipfile.ZIP_DEFLATED))
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(ManifestError, match="possible zip bomb"):
        open_archive(bomb, "bomb.zip", "image")


def test_a_tar_with_a_jsonl_manifest_and_junk_that_is_not_an_archive(tmp_path):
    path = tmp_path / "set.tar"
    path.write_bytes(make_tar({"set.jsonl": b'{"path": "a.png", "id": "k1"}\n', "a.png": png()}))
    dataset = open_dataset(path, "image")
    assert dataset.kind == "tar:jsonl" and [i.key for i in dataset.items] == ["k1"]
    assert dataset.items[0].read() == png()
    (tmp_path / "junk.zip").write_bytes(os.urandom(300))
    with pytest.raises(ManifestError, match="junk.zip: not a zip or tar archive"):
        open_dataset(tmp_path / "junk.zip", "image")


def test_damaged_archives_and_members_are_reported_not_crashed_on():
    whole = make_tar({f"p{i}.png": png((i, 0, 0)) for i in range(5)}, mode="w:gz")
    with pytest.raises(ManifestError, match="cut.short|damaged"):
        open_archive(io.BytesIO(whole[: len(whole) // 2]), "cut.tgz", "image")
    raw = make_zip({"a.png": png(), "b.png": png((0, 200, 0), (300, 300))}, zipfile.ZIP_DEFLATED)
    start = raw.index(b"b.png") + len(b"b.png") + 40  # inside b.png's compressed data
    broken = raw[:start] + bytes(64) + raw[start + 64:]
    dataset = open_archive(io.BytesIO(broken), "broken.zip", "image")
    assert dataset.items[0].read() == png()
    with pytest.raises(MediaError, match="b.png: cannot be unpacked"):
        dataset.items[1].read()


def test_a_repeated_name_counts_once_the_last_wins_and_a_tgz_bomb_is_stopped_while_unpacking():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", b"old")
        archive.writestr("a.png", png())
    dataset = open_archive(buffer, "twice.zip", "image")
    assert [i.key for i in dataset.items] == ["a.png"] and dataset.items[0].read() == png()
    assert dataset.skipped == 1
    bomb = make_tar({"zeros.png": bytes(60 * 1024 * 1024)}, mode="w:gz")
    assert len(bomb) < 200_000
    with pytest.raises(ManifestError, match="possible zip bomb"):
        open_archive(io.BytesIO(bomb), "bomb.tar.gz", "image")


def test_a_header_only_csv_and_a_nul_in_a_path(folder):
    (folder / "empty.csv").write_text("path,reference\n")
    with pytest.raises(ManifestError, match="empty.csv: no items"):
        open_dataset(folder / "empty.csv", "image")
    item = open_manifest(b"path\na\x00b.png\n", "m.csv", folder, "image").items[0]
    with pytest.raises(MediaError, match="not a usable path"):
        item.read()
