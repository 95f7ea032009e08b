"""The evaluation sets' own files as datasets (worker.datasets): Karpathy's split files, MSR-VTT's
videodatainfo files, Clotho's captions CSVs and manifests with columns named otherwise, each built
here in the shape the dataset ships, over the bundled scikit-image photos (and videos and
recordings made from them), with our own captions; nothing is downloaded.

What is checked: each format's keys, media paths and references; items per split and per subset,
the same subset twice (and whatever the file's order); the split chosen before any media file is
opened; malformed files refused whole naming the entry and what is wrong; missing media reported
item by item; uploaded annotation files confined to the server's dataset folder."""

from __future__ import annotations

import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.media import make_zip
from worker.datasets import (
    Columns,
    ManifestError,
    Selection,
    open_archive,
    open_dataset,
    open_manifest,
    open_references,
)
from worker.media import MediaError
from worker.media.samples import SKIMAGE_PHOTOS, sample_path

SPLITS = ["train", "restval", "val", "test"]


def karpathy_coco(media: Path | None, n: int = 40, *, test_every: int = 4) -> dict:
    """A dataset_coco.json of n images: every `test_every`-th is "test" (its photo written under
    media/val2014/ when `media` is given), the others train, restval or val with no file at all."""
    images = []
    for i in range(n):
        split = "test" if i % test_every == 0 else SPLITS[i % 3]
        folder = "val2014" if split in ("test", "val", "restval") else "train2014"
        filename = f"COCO_{folder}_{100 + i:012d}.jpg"
        photo = SKIMAGE_PHOTOS[i % len(SKIMAGE_PHOTOS)]
        if media is not None and split == "test":
            (media / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(sample_path(photo), media / folder / filename)
        images.append({"filepath": folder, "sentids": [2 * i, 2 * i + 1], "filename": filename, "imgid": i,
                       "split": split, "cocoid": 100 + i,
                       "sentences": [{"tokens": ["a", photo, "photo"], "raw": f"A {photo} photo.", "imgid": i,
                                      "sentid": 2 * i},
                                     {"tokens": ["the", photo], "raw": f"  The   {photo} ", "imgid": i,
                                      "sentid": 2 * i + 1}]})
    return {"images": images, "dataset": "coco"}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def coco_split(tmp_path) -> tuple[Path, Path]:
    media = tmp_path / "coco"
    return write_json(tmp_path / "dataset_coco.json", karpathy_coco(media)), media


# --------------------------------------------------------------------------- Karpathy


def test_a_karpathy_coco_file_keys_by_cocoid_and_reads_its_split(coco_split):
    path, media = coco_split
    every = open_dataset(path, "image", media_root=media)
    assert every.kind == "karpathy" and len(every.items) == 40 and every.describe()["skipped"] == 0
    test = open_dataset(path, "image", media_root=media, selection=Selection("test"))
    assert [i.key for i in test.items] == [str(100 + i) for i in range(0, 40, 4)]
    first = test.items[0]
    assert first.source == "val2014/COCO_val2014_000000000100.jpg" and first.line == 0
    assert first.references == (f"A {SKIMAGE_PHOTOS[0]} photo.", f"The {SKIMAGE_PHOTOS[0]}")
    assert first.read() == sample_path(SKIMAGE_PHOTOS[0]).read_bytes()
    assert test.describe() == {"kind": "karpathy", "name": str(path), "items": 10, "skipped": 0, "split": "test",
                               "entries": 40}
    counts = {split: len(open_dataset(path, "image", media_root=media, selection=Selection(split)).items)
              for split in SPLITS}
    assert counts == {"train": 10, "restval": 10, "val": 10, "test": 10}
    # Another split's media is not there: reported by the item, at its read, never before.
    train = open_dataset(path, "image", media_root=media, selection=Selection("train")).items[0]
    with pytest.raises(MediaError, match="train2014/COCO_train2014_000000000103.jpg: no such file"):
        train.read()


def test_a_subset_is_seeded_the_same_twice_whatever_the_order_and_recorded(coco_split, tmp_path):
    path, media = coco_split

    def keys(selection: Selection, file: Path = path) -> list[str]:
        return [i.key for i in open_dataset(file, "image", media_root=media, selection=selection).items]

    sample = keys(Selection("test", 4))
    assert len(sample) == 4 and sample == keys(Selection("test", 4, 0))
    assert set(sample) <= set(keys(Selection("test")))
    assert sample == sorted(sample, key=int)  # in the file's order
    others = [keys(Selection("test", 4, seed)) for seed in range(1, 6)]
    assert any(set(o) != set(sample) for o in others)  # the seed draws another sample
    # Reversed in the file, the same seed and keys give the same subset.
    data = karpathy_coco(None)
    data["images"].reverse()
    assert set(keys(Selection("test", 4), write_json(tmp_path / "reversed.json", data))) == set(sample)
    # A subset of the whole file, and what the dataset records.
    whole = open_dataset(path, "image", media_root=media, selection=Selection(None, 7, 3))
    assert len(whole.items) == 7
    assert whole.describe() == {"kind": "karpathy", "name": str(path), "items": 7, "skipped": 0, "subset": 7,
                                "subset_seed": 3, "entries": 40}
    assert open_dataset(path, "image", selection=Selection("test", 4, 9)).describe() == {
        "kind": "karpathy", "name": str(path), "items": 4, "skipped": 0, "split": "test", "subset": 4,
        "subset_seed": 9, "entries": 40}


@pytest.mark.parametrize("selection, message", [
    (Selection("tst"), r"dataset_coco.json: no split 'tst'; its splits are: restval \(10\), test \(10\), "
                       r"train \(10\), val \(10\)"),
    (Selection("test", 11), "a subset of 11 is more than the 10 items of split 'test'"),
    (Selection(None, 0), "a subset is at least 1 item, not 0"),
])
def test_an_unknown_split_or_an_impossible_subset_is_refused(coco_split, selection, message):
    with pytest.raises(ManifestError, match=message):
        open_dataset(coco_split[0], "image", selection=selection)


class _Opened:
    """Every file this process opens under a folder, while recording (an audit hook cannot be removed)."""

    folder: str | None = None
    paths: list[str] = []

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if event == "open" and cls.folder is not None and isinstance(args[0], (str, Path)) \
                and str(args[0]).startswith(cls.folder):
            cls.paths.append(str(args[0]))


sys.addaudithook(_Opened.hook)


def test_the_split_is_chosen_before_any_media_file_is_opened(tmp_path):
    """Every entry's file exists here, the other splits' too: only the test items' are opened,
    and only when read."""
    media = tmp_path / "coco"
    data = karpathy_coco(None, n=24)
    for image in data["images"]:
        (media / image["filepath"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(sample_path("horse"), media / image["filepath"] / image["filename"])
    path = write_json(tmp_path / "dataset_coco.json", data)
    _Opened.folder, _Opened.paths = str(media), []
    try:
        dataset = open_dataset(path, "image", media_root=media, selection=Selection("test"))
        assert _Opened.paths == []
        for item in dataset.items:
            item.read()
    finally:
        _Opened.folder = None
    expected = [str((media / image["filepath"] / image["filename"]).resolve()) for image in data["images"]
                if image["split"] == "test"]
    assert len(expected) == 6 and sorted(_Opened.paths) == sorted(expected)


def test_flickr_files_key_by_the_file_names_stem(tmp_path):
    images = [{"filename": f"{1000092795 + i}.jpg", "imgid": i, "split": ["train", "val", "test"][i % 3],
               "sentids": [i], "sentences": [{"tokens": ["x"], "raw": f"caption {i}", "imgid": i, "sentid": i}]}
              for i in range(6)]
    images.append({"filename": "2513260012_03d33305cf.jpg", "imgid": 6, "split": "test", "sentids": [6],
                   "sentences": [{"tokens": ["a"], "raw": "a dog", "imgid": 6, "sentid": 6}]})
    path = write_json(tmp_path / "dataset_flickr30k.json", {"images": images, "dataset": "flickr30k"})
    (tmp_path / "flickr").mkdir()
    (tmp_path / "flickr" / "1000092797.jpg").write_bytes(sample_path("coffee").read_bytes())
    items = open_dataset(path, "image", media_root=tmp_path / "flickr", selection=Selection("test")).items
    assert [(i.key, i.source, i.references) for i in items] == [
        ("1000092797", "1000092797.jpg", ("caption 2",)), ("1000092800", "1000092800.jpg", ("caption 5",)),
        ("2513260012_03d33305cf", "2513260012_03d33305cf.jpg", ("a dog",))]
    assert items[0].read() == sample_path("coffee").read_bytes()


def _broken(mutate) -> dict:
    data = karpathy_coco(None, n=6)
    mutate(data["images"])
    return data


@pytest.mark.parametrize("mutate, message", [
    (lambda images: images[3].pop("split"), r"images\[3\]: no \"split\""),
    (lambda images: images[2].pop("filename"), r"images\[2\]: no \"filename\""),
    (lambda images: images[4]["sentences"][1].pop("raw"), r"images\[4\] sentences\[1\]: a sentence needs a \"raw\""),
    (lambda images: images[1].update(cocoid="one hundred"), r"images\[1\]: \"cocoid\" must be a whole number"),
    (lambda images: images[5].update(cocoid=100), r"images\[5\]: id '100' repeats images\[0\]"),
    (lambda images: images[0].update(sentences="A cat."), r"images\[0\]: no \"sentences\" list"),
    (lambda images: images.insert(2, "COCO_val2014_1.jpg"), r"images\[2\]: not a JSON object"),
])
def test_a_malformed_karpathy_file_is_refused_whole_naming_the_entry(tmp_path, mutate, message):
    path = write_json(tmp_path / "dataset_coco.json", _broken(mutate))
    with pytest.raises(ManifestError, match=f"dataset_coco.json {message}"):
        open_dataset(path, "image", selection=Selection("test"))


# --------------------------------------------------------------------------- MSR-VTT


def msrvtt(videos: dict[str, str]) -> dict:
    """A videodatainfo file: video_id -> split, two sentences each (the test file's shape)."""
    entries = [{"category": 9, "url": f"https://www.youtube.com/watch?v={vid}", "video_id": vid,
                "start time": 1.0, "end time": 11.0, "split": split, "id": int(vid.removeprefix("video"))}
               for vid, split in videos.items()]
    sentences = [{"caption": f"{text} {vid}", "video_id": vid, "sen_id": 2 * i + j}
                 for i, vid in enumerate(videos) for j, text in enumerate(("a clip of", "someone films"))]
    return {"info": {"year": 2016}, "videos": entries, "sentences": sentences}


def test_an_msrvtt_file_finds_each_videos_file_by_any_video_suffix(tmp_path):
    info = msrvtt({"video7010": "test", "video7011": "test", "video7012": "test", "video0": "train",
                   "video6513": "validate"})
    path = write_json(tmp_path / "test_videodatainfo.json", info)
    clips = tmp_path / "TestVideo"
    clips.mkdir()
    (clips / "video7010.mp4").write_bytes(b"mp4 bytes")
    (clips / "video7011.webm").write_bytes(b"webm bytes")
    dataset = open_dataset(path, "video", media_root=clips, selection=Selection("test"))
    assert dataset.kind == "msrvtt" and dataset.describe()["entries"] == 5
    first, second, missing = dataset.items
    assert (first.key, first.source, first.references) == ("video7010", "video7010.mp4",
                                                            ("a clip of video7010", "someone films video7010"))
    assert first.read() == b"mp4 bytes"
    assert (second.source, second.read()) == ("video7011.webm", b"webm bytes")
    with pytest.raises(MediaError, match=r"video7012: no such file \(.mp4, .m4v, .mov, .webm"):
        missing.read()
    counts = {split: len(open_dataset(path, "video", media_root=clips, selection=Selection(split)).items)
              for split in ("train", "validate", "test")}
    assert counts == {"train": 1, "validate": 1, "test": 3}
    with pytest.raises(ManifestError, match=r"no split 'val'; its splits are: test \(3\), train \(1\), validate \(1\)"):
        open_dataset(path, "video", selection=Selection("val"))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["sentences"].append({"caption": "x", "video_id": "video99", "sen_id": 9}),
     r"sentences\[6\]: video_id 'video99' is not in \"videos\""),
    (lambda d: d["sentences"][2].pop("caption"), r"sentences\[2\]: a sentence needs a \"video_id\" and a \"caption\""),
    (lambda d: d["videos"][1].pop("split"), r"videos\[1\]: no \"split\""),
    (lambda d: d["videos"][2].update(video_id=7012), r"videos\[2\]: a video needs a \"video_id\""),
    (lambda d: d["videos"][2].update(video_id="video7010"), r"videos\[2\]: id 'video7010' repeats videos\[0\]"),
    (lambda d: d["videos"][0].update(video_id="../video7010"), r"videos\[0\]: video_id '../video7010' is not a file"),
])
def test_a_malformed_msrvtt_file_is_refused_whole_naming_the_entry(tmp_path, mutate, message):
    data = msrvtt({"video7010": "test", "video7011": "test", "video7012": "test"})
    mutate(data)
    path = write_json(tmp_path / "test_videodatainfo.json", data)
    with pytest.raises(ManifestError, match=f"test_videodatainfo.json {message}"):
        open_dataset(path, "video", selection=Selection("test"))


# --------------------------------------------------------------------------- Clotho and named columns


CLOTHO = ('file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n'
          '"Santa Motor.wav",A motor hums.,An engine idles.,A car waits.,Something runs.,A low hum.\n'
          '"rain, on a roof.wav",Rain falls.,Drops on a roof.,Rain on tin.,"Water drips, steadily.",A shower.\n'
          'missing.wav,Nothing here.,,,,\n')


def test_a_clotho_captions_csv_is_recognised_without_options(tmp_path):
    (tmp_path / "clotho_captions_evaluation.csv").write_text(CLOTHO)
    audio = tmp_path / "evaluation"
    audio.mkdir()
    (audio / "Santa Motor.wav").write_bytes(b"RIFF one")
    (audio / "rain, on a roof.wav").write_bytes(b"RIFF two")
    dataset = open_dataset(tmp_path / "clotho_captions_evaluation.csv", "audio", media_root=audio)
    assert dataset.kind == "csv"
    assert dataset.describe()["columns"] == {"path": "file_name", "key": "file_name",
                                             "references": [f"caption_{i}" for i in range(1, 6)]}
    santa, rain, missing = dataset.items
    assert (santa.key, santa.source, santa.line) == ("Santa Motor.wav", "Santa Motor.wav", 2)
    assert len(santa.references) == 5 and rain.references[3] == "Water drips, steadily."
    assert missing.references == ("Nothing here.",)
    assert rain.read() == b"RIFF two"
    with pytest.raises(MediaError, match="missing.wav: no such file"):
        missing.read()
    subset = open_dataset(tmp_path / "clotho_captions_evaluation.csv", "audio", selection=Selection(None, 2))
    assert len(subset.items) == 2 and subset.describe()["entries"] == 3
    with pytest.raises(ManifestError, match="a csv dataset has no splits"):
        open_dataset(tmp_path / "clotho_captions_evaluation.csv", "audio", selection=Selection("evaluation"))


def test_csv_and_jsonl_manifests_with_their_columns_named(tmp_path):
    (tmp_path / "clips.csv").write_text("uid,clip,caption a,caption b,notes\n"
                                        "u1,a.png,first,,x\nu2,b.png,second,also second,y\n")
    columns = Columns.parse("clip", "uid", "caption *")
    dataset = open_dataset(tmp_path / "clips.csv", "image", columns=columns)
    assert [(i.key, i.source, i.references) for i in dataset.items] == [
        ("u1", "a.png", ("first",)), ("u2", "b.png", ("second", "also second"))]
    assert dataset.describe()["columns"] == {"path": "clip", "key": "uid", "references": ["caption a", "caption b"]}
    for given, message in [(Columns.parse("file"), r"clips.csv line 1: no 'file' column \(the columns are: uid, "
                                                   r"clip, caption a, caption b, notes\); --path-column names"),
                           (Columns.parse("clip", "id"), "no 'id' column .*--key-column"),
                           (Columns.parse("clip", None, "caption a,text*"), "no column matches 'text\\*'")]:
        with pytest.raises(ManifestError, match=message):
            open_dataset(tmp_path / "clips.csv", "image", columns=given)
    with pytest.raises(ManifestError, match=r"no 'path' column .*--path-column names the column"):
        open_dataset(tmp_path / "clips.csv", "image")

    lines = [{"video": "v/1.mp4", "name": "one", "texts": ["a", "b"], "also": "c"},
             {"video": "v/2.mp4", "name": "two", "texts": "d"}]
    (tmp_path / "clips.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    items = open_dataset(tmp_path / "clips.jsonl", "video", columns=Columns.parse("video", "name", "texts,also")).items
    assert [(i.key, i.source, i.references) for i in items] == [("one", "v/1.mp4", ("a", "b", "c")),
                                                               ("two", "v/2.mp4", ("d",))]
    (tmp_path / "clips.jsonl").write_text(json.dumps({"video": "v/1.mp4"}) + "\n" + json.dumps({"name": "x"}))
    with pytest.raises(ManifestError, match=r"clips.jsonl line 2: no \"video\""):
        open_dataset(tmp_path / "clips.jsonl", "video", columns=Columns.parse("video"))
    with pytest.raises(ManifestError, match="a JSON annotation file has its own fields"):
        open_dataset(write_json(tmp_path / "k.json", karpathy_coco(None, 4)), "image", columns=Columns.parse("x"))


def test_a_folder_takes_a_subset_but_no_split(tmp_path):
    for photo in SKIMAGE_PHOTOS[:6]:
        shutil.copy(sample_path(photo), tmp_path / sample_path(photo).name)
    dataset = open_dataset(tmp_path, "image", selection=Selection(None, 3, 5))
    assert len(dataset.items) == 3 and dataset.describe()["subset_seed"] == 5
    assert [i.key for i in dataset.items] == [i.key for i in open_dataset(tmp_path, "image",
                                                                          selection=Selection(None, 3, 5)).items]
    with pytest.raises(ManifestError, match="a folder dataset has no splits"):
        open_dataset(tmp_path, "image", selection=Selection("test"))


def test_the_item_limit_counts_the_chosen_items_and_references_have_none(coco_split):
    path, media = coco_split
    with pytest.raises(ManifestError, match="40 items, more than 12; choose a split or a subset"):
        open_dataset(path, "image", media_root=media, max_items=12)
    assert len(open_dataset(path, "image", media_root=media, selection=Selection("test"), max_items=12).items) == 10
    references = open_references(path)
    assert len(references.items) == 40 and references.items[1].references == (f"A {SKIMAGE_PHOTOS[1]} photo.",
                                                                               f"The {SKIMAGE_PHOTOS[1]}")


# --------------------------------------------------------------------------- uploads and archives


def test_an_uploaded_karpathy_file_reads_its_media_folder_under_the_dataset_root_only(tmp_path):
    root = tmp_path / "datasets"
    data = karpathy_coco(root / "coco", n=8)
    data["images"][4]["filepath"] = "../../outside"  # a test entry that leaves the root
    (tmp_path / "outside").mkdir()
    shutil.copy(sample_path("coins"), tmp_path / "outside" / data["images"][4]["filename"])
    upload = json.dumps(data).encode()
    dataset = open_manifest(upload, "dataset_coco.json", root, "image", media_folder="coco",
                            selection=Selection("test"))
    assert [i.key for i in dataset.items] == ["100", "104"]
    assert dataset.items[0].read() == sample_path(SKIMAGE_PHOTOS[0]).read_bytes()
    with pytest.raises(MediaError, match="outside the dataset folder"):
        dataset.items[1].read()
    for folder, message in [("..", "media folder '..': outside the dataset folder"),
                            (str(tmp_path / "outside"), "outside the dataset folder"),
                            ("nothing", "media folder 'nothing': no such folder in the dataset folder")]:
        with pytest.raises(ManifestError, match=message):
            open_manifest(upload, "dataset_coco.json", root, "image", media_folder=folder)
    with pytest.raises(ManifestError, match="no split 'testing'"):
        open_manifest(upload, "dataset_coco.json", root, "image", media_folder="coco", selection=Selection("testing"))


def test_an_archive_with_a_karpathy_file_at_its_root_takes_the_split(tmp_path):
    data = karpathy_coco(None, n=8)
    members = {"dataset_coco.json": json.dumps(data).encode()}
    members.update({f"{i['filepath']}/{i['filename']}": sample_path("horse").read_bytes()
                    for i in data["images"] if i["split"] == "test"})
    dataset = open_archive(io.BytesIO(make_zip(members, zipfile.ZIP_STORED)), "coco.zip", "image",
                           selection=Selection("test", 1, 2))
    assert dataset.kind == "zip:karpathy" and len(dataset.items) == 1
    assert dataset.describe() == {"kind": "zip:karpathy", "name": "coco.zip", "items": 1, "skipped": 0,
                                  "split": "test", "subset": 1, "subset_seed": 2, "entries": 8}
    assert dataset.items[0].read() == sample_path("horse").read_bytes()
    with pytest.raises(ManifestError, match="a zip dataset has no splits"):
        open_archive(io.BytesIO(make_zip({"a.png": b"x"})), "plain.zip", "image", selection=Selection("test"))
