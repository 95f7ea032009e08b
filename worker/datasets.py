"""A dataset as the items of a batch: a folder of media, an annotation file with its media folder
(COCO captions, Karpathy's split files, MSR-VTT's videodatainfo files, Clotho's captions CSVs), a
CSV or JSON Lines manifest, or an archive (zip, tar) of media with or without a manifest inside.

    open_dataset(path, input_kind)        a folder, a manifest or an archive on this machine
    open_archive(file, name, input_kind)   an uploaded archive (the web form, the API)
    open_manifest(data, name, root)        an uploaded manifest naming files under a server folder
    open_references(path)                  any manifest's reference captions, for evaluation

Each takes a Selection (`split`, then a seeded `subset`) and, for CSV and JSON Lines manifests,
Columns (which column is the path, the id and the references).

Manifests (paths relative to the media folder: the manifest's folder unless given, or the archive's
root). Each entry has an item key, a media path and reference captions:
    CSV       a header row with `path`; optional `id`; every column named `reference...` (reference,
              reference_2, ...) holds one reference caption per non-empty cell. Clotho's captions
              CSVs (`file_name`, `caption_1`..`caption_5`; Drossos et al., 2020) are recognised:
              key and path are `file_name`, the captions are the references.
    JSONL     one object per line: "path", optional "id", "references" (a list) or "reference"
    COCO      {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}: the
              images' ids are the item keys and the annotations their references (no splits)
    Karpathy  dataset_coco.json, dataset_flickr30k.json, dataset_flickr8k.json (Karpathy & Fei-Fei,
              2015): {"images": [{"filepath"?, "filename", "split", "cocoid"?, "sentences":
              [{"raw", "tokens"}]}]}; key `cocoid` where present (COCO's image_id), else the file
              name's stem; path `filepath/filename`; references the sentences' "raw"; splits
              train, val, test, restval
    MSR-VTT   train_val_videodatainfo.json, test_videodatainfo.json (Xu et al., 2016):
              {"videos": [{"video_id", "split"}], "sentences": [{"video_id", "caption"}]}; key
              `video_id`, path `<video_id>.mp4` or the first file `<video_id>.<suffix>` there is
              for a video suffix we read; splits train, validate, test
A CSV or JSON Lines manifest whose columns are named otherwise says which they are with Columns.

A split is chosen, and the subset drawn, before any item's media is looked at: a 123,287-entry
Karpathy file with split "test" reads and checks only the 5,000 test items' files. The subset is
the `subset` entries whose keys hash lowest under `subset_seed` (SHA-256): a uniform sample
without replacement that depends on the seed and the keys alone, not on the file's order or the
Python version, so the same subset comes back.

A manifest that cannot be read as a whole raises ManifestError naming the line (or entry, e.g.
`images[12]`) and what is wrong, and nothing is submitted. A missing, unreadable or unsupported
item is not an error here: its `read` raises MediaError, and the batch records that item with the
reason and runs the rest. An archive whose members escape its root (absolute paths, "..", links)
or whose unpacked size is out of proportion (a zip bomb: declared, or for a compressed tar found
while decompressing it once into a temporary file) is refused as a whole, as is a damaged one. A
name repeated in an archive counts once (the last, as unpacking it would), among the files
passed over.
"""

from __future__ import annotations

import bz2
import csv
import fnmatch
import gzip
import hashlib
import io
import json
import lzma
import os
import posixpath
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from worker.media import MAX_FILE_BYTES, MediaError

# File name endings a folder or archive is scanned for, per input kind (a file is still checked
# by decoding it: the ending only says which files are meant as items).
MEDIA_SUFFIXES = {
    "image": (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"),
    "video": (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".gif"),
    "audio": (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm"),
}
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_ITEMS = 100_000  # items of one submission, after the split and subset are chosen
MAX_ENTRIES = 2_000_000  # entries of one manifest or folder, before: COCO's train captions are 414,113
MAX_KEY_LENGTH = 255
MAX_MANIFEST_BYTES = 1024**3  # a manifest inside an archive (Karpathy's dataset_coco.json is 140 MB)
SUBSET_SEED = 0  # the subset's seed unless given: its own, never the jobs' seed
# An archive declaring more than this unpacked, or more than BOMB_RATIO times its own size, is
# refused unread. Media is already compressed: real archives of it unpack to about their size.
MAX_UNPACKED_BYTES = 64 * 1024**3
BOMB_RATIO = 100
BOMB_FLOOR = 1024**2  # a tiny archive unpacks to at least a tar's 10 KiB of blocks: that is no bomb


def _unpacked_limit(size: int) -> int:
    return min(MAX_UNPACKED_BYTES, max(BOMB_RATIO * size, BOMB_FLOOR))


class ManifestError(ValueError):
    """The dataset cannot be read as a whole; the message names the file and the line or entry."""


@dataclass(frozen=True)
class Item:
    """One item of a dataset. `read()` gives its bytes or raises MediaError (missing, too big)."""

    key: str  # its id: the COCO image id, the manifest's id, or its path
    source: str  # its path as the dataset names it
    read: Callable[[], bytes] = field(repr=False, compare=False)
    references: tuple[str, ...] = ()
    line: int | None = None  # its line in the manifest (its entry number in a JSON file)


@dataclass(frozen=True)
class Dataset:
    kind: str  # "folder", "coco", "karpathy", "msrvtt", "csv", "jsonl", "zip:..."/"tar:..." for archives
    name: str  # what it was opened from
    items: list[Item]
    skipped: int = 0  # files of a folder or archive that are not of the task's formats
    # How the items were chosen and read, where not every entry with the default columns: "split",
    # "subset", "subset_seed", "entries" (before choosing), "columns".
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "items": len(self.items), "skipped": self.skipped,
                **self.details}


@dataclass(frozen=True)
class Selection:
    """Which entries become items: those of `split` (None: all; only formats with splits), then
    `subset` of them (None: all) drawn with `subset_seed`."""

    split: str | None = None
    subset: int | None = None
    subset_seed: int = SUBSET_SEED


@dataclass(frozen=True)
class Columns:
    """Which CSV columns (JSON Lines fields) hold an item's media path, its key and its references.
    None: the defaults (`path`; `id`, else the path; `reference*` / "references" and "reference").
    `references` are names or shell-style patterns (`caption_*`), each naming at least one column."""

    path: str | None = None
    key: str | None = None
    references: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, path: str | None = None, key: str | None = None, references: str | None = None) -> Columns:
        """From text as the CLI and the web take it: `references` comma-separated."""
        refs = tuple(r.strip() for r in references.split(",") if r.strip()) if references else None
        return cls((path or "").strip() or None, (key or "").strip() or None, refs or None)

    def given(self) -> bool:
        return self != Columns()


# --------------------------------------------------------------------------- manifests


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str
    paths: tuple[str, ...]  # where its media may be; the first that exists is used (MSR-VTT: per suffix)
    references: tuple[str, ...]
    line: int


@dataclass
class _Parsed:
    kind: str
    entries: list[_Entry]  # those of the split asked for (every one where no split was)
    splits: dict[str, int] | None = None  # entries per split; None: the format has no splits
    columns: dict[str, Any] | None = None  # the columns read, where not the defaults


def _is_media(name: str, input_kind: str) -> bool:
    base = posixpath.basename(name)
    return not base.startswith(".") and base.lower().endswith(MEDIA_SUFFIXES[input_kind])


def _key(value: Any, where: str) -> str:
    key = str(value).strip()
    if not key:
        raise ManifestError(f"{where}: the id is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ManifestError(f"{where}: the id is longer than {MAX_KEY_LENGTH} characters")
    return key


def _references(values: Iterable[Any], where: str) -> tuple[str, ...]:
    found = []
    for value in values:
        if not isinstance(value, str):
            raise ManifestError(f"{where}: a reference must be a string, not {value!r}")
        if value.strip():
            found.append(" ".join(value.split()))
    return tuple(found)


class _Keys:
    """Item keys seen so far: a repeated key is a malformed manifest."""

    def __init__(self, name: str) -> None:
        self.name, self.seen = name, {}

    def add(self, key: str, where: str, label: str) -> None:
        """`where` names the entry in the message, `label` names it for a later repeat."""
        if key in self.seen:
            raise ManifestError(f"{where}: id {key!r} repeats {self.seen[key]}")
        if len(self.seen) >= MAX_ENTRIES:
            raise ManifestError(f"{self.name}: more than {MAX_ENTRIES} entries; split it into several files")
        self.seen[key] = label


def _header_columns(header: list[str], columns: Columns, name: str, *,
                    clotho: bool) -> tuple[str, str | None, list[str]]:
    """(path, key or None, references) columns of a CSV header or a JSON Lines object's fields."""
    listed = f"(the columns are: {', '.join(header) or 'none'})"

    def named(column: str, option: str) -> str:
        if column not in header:
            raise ManifestError(f"{name} line 1: no {column!r} column {listed}; {option} names another")
        return column

    if columns.path is not None:
        path = named(columns.path, "--path-column")
    elif "path" in header:
        path = "path"
    elif clotho:
        path = "file_name"
    else:
        raise ManifestError(f"{name} line 1: no 'path' column {listed}; --path-column names the column that is")
    key = named(columns.key, "--key-column") if columns.key is not None else ("id" if "id" in header and not clotho
                                                                                else None)
    if columns.references is None:
        prefix = "caption_" if clotho and columns.path is None else "reference"
        references = [h for h in header if h.startswith(prefix)]
    else:
        references = []
        for pattern in columns.references:
            matched = [h for h in header if fnmatch.fnmatchcase(h, pattern)]
            if not matched:
                raise ManifestError(f"{name} line 1: no column matches {pattern!r} {listed}")
            references += [h for h in matched if h not in references]
    return path, key, references


def _is_clotho(header: list[str]) -> bool:
    return "path" not in header and "file_name" in header and any(h.startswith("caption_") for h in header)


def _columns_detail(path: str, key: str | None, references: list[str]) -> dict[str, Any]:
    return {"path": path, "key": key or path, "references": references}


def parse_csv(text: str, name: str, columns: Columns = Columns(), split: str | None = None) -> _Parsed:
    """The entries of a CSV manifest (see the module's docstring). No splits."""
    rows = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(rows)]
    except StopIteration:
        raise ManifestError(f"{name}: the file is empty") from None
    except csv.Error as exc:
        raise ManifestError(f"{name} line 1: {exc}") from None
    clotho = _is_clotho(header) and columns.path is None
    path_column, key_column, reference_columns = _header_columns(header, columns, name, clotho=clotho)
    path_at = header.index(path_column)
    key_at = header.index(key_column) if key_column is not None else None
    reference_at = [header.index(h) for h in reference_columns]
    entries, keys = [], _Keys(name)
    try:
        for row in rows:
            line = rows.line_num
            where = f"{name} line {line}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                raise ManifestError(f"{where}: {len(row)} fields, the header has {len(header)}")
            row += [""] * (len(header) - len(row))
            path = row[path_at].strip()
            if not path:
                raise ManifestError(f"{where}: the path is empty")
            key = _key(row[key_at] if key_at is not None else path, where)
            keys.add(key, where, f"line {line}")
            entries.append(_Entry(key, (path,), _references((row[i] for i in reference_at), where), line))
    except csv.Error as exc:
        raise ManifestError(f"{name} line {rows.line_num}: {exc}") from None
    if not entries:
        raise ManifestError(f"{name}: no items (only a header row)")
    default = not columns.given() and not clotho
    return _Parsed("csv", entries, columns=None if default else
                   _columns_detail(path_column, key_column, reference_columns))


def parse_jsonl(text: str, name: str, columns: Columns = Columns(), split: str | None = None) -> _Parsed:
    """The entries of a JSON Lines manifest (see the module's docstring). No splits."""
    path_field, key_field = columns.path or "path", columns.key or "id"
    entries, keys = [], _Keys(name)
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{name} line {line}"
        try:
            entry = json.loads(raw)
        except ValueError as exc:
            raise ManifestError(f"{where}: not JSON ({exc})") from None
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: not a JSON object")
        path = entry.get(path_field)
        if not isinstance(path, str) or not path.strip():
            raise ManifestError(f"{where}: no \"{path_field}\" (a non-empty string)")
        if columns.key is not None and entry.get(key_field) is None:
            raise ManifestError(f"{where}: no \"{key_field}\" (the id)")
        if columns.references is None:
            fields = [("references", entry.get("references", [])), ("reference", entry.get("reference", []))]
        else:
            fields = [(f, entry[f]) for f in entry if any(fnmatch.fnmatchcase(f, p) for p in columns.references)]
        references = []
        for field_name, value in fields:
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list):
                raise ManifestError(f"{where}: \"{field_name}\" must be a string or a list of strings")
            references += value
        key = _key(entry[key_field], where) if entry.get(key_field) is not None else _key(path, where)
        keys.add(key, where, f"line {line}")
        entries.append(_Entry(key, (path.strip(),), _references(references, where), line))
    if not entries:
        raise ManifestError(f"{name}: no items")
    named = {"path": path_field, "key": columns.key or "id, else the path",
             "references": list(columns.references or ("references", "reference"))}
    return _Parsed("jsonl", entries, columns=named if columns.given() else None)


def _without_tokens(entry: dict) -> dict:
    # A Karpathy sentence's "tokens" are never used: dropped as each one is parsed, they never
    # pile up (a whole dataset_coco.json holds 616,767 lists of them).
    if "raw" in entry:
        entry.pop("tokens", None)
    return entry


def parse_json(text: str, name: str, columns: Columns = Columns(), split: str | None = None) -> _Parsed:
    """The entries of a .json annotation file: MSR-VTT's (a "videos" list), Karpathy's (images
    with "sentences", no "annotations") or COCO captions (see the module's docstring)."""
    if columns.given():
        raise ManifestError(f"{name}: a JSON annotation file has its own fields; --path-column, --key-column and "
                            "--reference-columns are for CSV and JSON Lines manifests")
    try:
        data = json.loads(text, object_hook=_without_tokens)
    except ValueError as exc:
        raise ManifestError(f"{name}: not JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("videos"), list):
        return _msrvtt(data, name, split)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ManifestError(f"{name}: not a COCO captions, Karpathy split or MSR-VTT file (no \"images\" or "
                            "\"videos\" list)")
    first = next(iter(data["images"]), None)
    if "annotations" not in data and isinstance(first, dict) and ("sentences" in first or "filename" in first):
        return _karpathy(data, name, split)
    return _coco(data, name)


def _coco(data: dict, name: str) -> _Parsed:
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise ManifestError(f"{name}: \"annotations\" is not a list")
    images, keys = [], _Keys(name)
    for i, image in enumerate(data["images"]):
        where = f"{name} images[{i}]"
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise ManifestError(f"{where}: an image needs an \"id\" and a \"file_name\"")
        key = _key(image["id"], where)
        keys.add(key, where, f"images[{i}]")
        images.append((key, image["file_name"], i))
    captions: dict[str, list[str]] = {key: [] for key, _, _ in images}
    for i, annotation in enumerate(annotations):
        where = f"{name} annotations[{i}]"
        if not isinstance(annotation, dict) or "image_id" not in annotation or "caption" not in annotation:
            raise ManifestError(f"{where}: an annotation needs an \"image_id\" and a \"caption\"")
        key = str(annotation["image_id"]).strip()
        if key not in captions:
            raise ManifestError(f"{where}: image_id {annotation['image_id']!r} is not in \"images\"")
        captions[key].extend(_references([annotation["caption"]], where))
    if not images:
        raise ManifestError(f"{name}: no images")
    return _Parsed("coco", [_Entry(key, (path,), tuple(captions[key]), i) for key, path, i in images])


def _split_of(entry: dict, where: str) -> str:
    value = entry.get("split")
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{where}: no \"split\" (a non-empty string)")
    return value.strip()


def _karpathy(data: dict, name: str, split: str | None) -> _Parsed:
    entries, keys, splits = [], _Keys(name), {}
    for i, image in enumerate(data["images"]):
        where = f"{name} images[{i}]"
        if not isinstance(image, dict):
            raise ManifestError(f"{where}: not a JSON object")
        filename, filepath = image.get("filename"), image.get("filepath", "")
        if not isinstance(filename, str) or not filename.strip():
            raise ManifestError(f"{where}: no \"filename\" (a non-empty string)")
        if not isinstance(filepath, str):
            raise ManifestError(f"{where}: \"filepath\" must be a string")
        image_split = _split_of(image, where)
        sentences = image.get("sentences")
        if not isinstance(sentences, list):
            raise ManifestError(f"{where}: no \"sentences\" list")
        raws = []
        for j, sentence in enumerate(sentences):
            if not isinstance(sentence, dict) or not isinstance(sentence.get("raw"), str):
                raise ManifestError(f"{where} sentences[{j}]: a sentence needs a \"raw\" string")
            raws.append(sentence["raw"])
        cocoid = image.get("cocoid")
        if cocoid is not None and (isinstance(cocoid, bool) or not isinstance(cocoid, int)):
            raise ManifestError(f"{where}: \"cocoid\" must be a whole number, not {cocoid!r}")
        filename = filename.strip()
        key = _key(cocoid if cocoid is not None else posixpath.splitext(posixpath.basename(filename))[0], where)
        keys.add(key, where, f"images[{i}]")
        splits[image_split] = splits.get(image_split, 0) + 1
        if split is None or image_split == split:
            path = posixpath.join(filepath.strip(), filename) if filepath.strip() else filename
            entries.append(_Entry(key, (path,), _references(raws, where), i))
    if not splits:
        raise ManifestError(f"{name}: no images")
    return _Parsed("karpathy", entries, splits)


def _msrvtt(data: dict, name: str, split: str | None) -> _Parsed:
    sentences = data.get("sentences", [])
    if not isinstance(sentences, list):
        raise ManifestError(f"{name}: \"sentences\" is not a list")
    videos, keys, splits = [], _Keys(name), {}
    for i, video in enumerate(data["videos"]):
        where = f"{name} videos[{i}]"
        if not isinstance(video, dict) or not isinstance(video.get("video_id"), str):
            raise ManifestError(f"{where}: a video needs a \"video_id\" (a string)")
        key = _key(video["video_id"], where)
        if "/" in key or "\\" in key:
            raise ManifestError(f"{where}: video_id {key!r} is not a file name")
        keys.add(key, where, f"videos[{i}]")
        video_split = _split_of(video, where)
        splits[video_split] = splits.get(video_split, 0) + 1
        videos.append((key, i, split is None or video_split == split))
    captions: dict[str, list[str] | None] = {key: [] if wanted else None for key, _, wanted in videos}
    for i, sentence in enumerate(sentences):
        where = f"{name} sentences[{i}]"
        if not isinstance(sentence, dict) or "video_id" not in sentence or not isinstance(sentence.get("caption"), str):
            raise ManifestError(f"{where}: a sentence needs a \"video_id\" and a \"caption\" (a string)")
        key = str(sentence["video_id"]).strip()
        if key not in captions:
            raise ManifestError(f"{where}: video_id {sentence['video_id']!r} is not in \"videos\"")
        if captions[key] is not None:
            captions[key].append(sentence["caption"])
    if not videos:
        raise ManifestError(f"{name}: no videos")
    entries = [_Entry(key, tuple(key + suffix for suffix in MEDIA_SUFFIXES["video"]),
                      _references(captions[key], f"{name} videos[{i}]"), i)
               for key, i, wanted in videos if wanted]
    return _Parsed("msrvtt", entries, splits)


_PARSERS = {".csv": parse_csv, ".jsonl": parse_jsonl, ".ndjson": parse_jsonl, ".json": parse_json}


def _parser(name: str):
    for suffix, parse in _PARSERS.items():
        if name.lower().endswith(suffix):
            return parse
    raise ManifestError(f"{name}: a manifest is .csv, .jsonl or a COCO captions .json, a Karpathy split .json "
                        "or an MSR-VTT videodatainfo .json")


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")  # a BOM, as spreadsheet programs write, is not part of the header
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{name}: not UTF-8 text ({exc})") from None


# --------------------------------------------------------------------------- choosing the items


def subset_order(key: str, seed: int) -> bytes:
    """Where `key` falls in the seeded random order a subset is the start of."""
    return hashlib.sha256(f"{seed}\0{key}".encode()).digest()


def _check_selection(selection: Selection) -> None:
    if selection.subset is not None and selection.subset < 1:
        raise ManifestError(f"a subset is at least 1 item, not {selection.subset}")


def _chosen(entries: list, key: Callable[[Any], str], name: str, kind: str, splits: dict[str, int] | None,
            selection: Selection, max_items: int | None) -> tuple[list, dict[str, Any]]:
    """The entries the selection keeps (those of the split, which the parser chose; then the
    subset, in the file's order), and what the dataset records of the choice."""
    _check_selection(selection)
    details: dict[str, Any] = {}
    if selection.split is not None:
        if splits is None:
            raise ManifestError(f"{name}: a {kind} dataset has no splits (Karpathy split files and MSR-VTT's "
                                "videodatainfo files do); leave out the split")
        if selection.split not in splits:
            present = ", ".join(f"{s} ({n})" for s, n in sorted(splits.items()))
            raise ManifestError(f"{name}: no split {selection.split!r}; its splits are: {present}")
        details["split"] = selection.split
    if selection.subset is not None:
        if selection.subset > len(entries):
            what = f"split {selection.split!r}" if selection.split else "the dataset"
            raise ManifestError(f"{name}: a subset of {selection.subset} is more than the {len(entries)} items of "
                                f"{what}")
        order = sorted(range(len(entries)), key=lambda i: subset_order(key(entries[i]), selection.subset_seed))
        keep = set(order[:selection.subset])
        details.update(subset=selection.subset, subset_seed=selection.subset_seed)
        if selection.split is None:
            details["entries"] = len(entries)
        entries = [entry for i, entry in enumerate(entries) if i in keep]
    if selection.split is not None:
        details["entries"] = sum(splits.values())
    if max_items is not None and len(entries) > max_items:
        raise ManifestError(f"{name}: {len(entries)} items, more than {max_items}; choose a split or a subset, or "
                            "split it into several batches")
    return entries, details


class _Media(Protocol):
    """Where a manifest's paths lead: files under a folder, or an archive's members."""

    def reader(self, path: str) -> Callable[[], bytes]: ...

    def exists(self, path: str) -> bool: ...


def _refuse(message: str) -> Callable[[], bytes]:
    def read() -> bytes:
        raise MediaError(message)
    return read


def _items(entries: list[_Entry], media: _Media) -> list[Item]:
    """The chosen entries as items: only now is any media path looked at (never opened: reading
    is the item's `read`)."""
    items = []
    for entry in entries:
        path = entry.paths[0]
        if len(entry.paths) > 1:
            found = next((p for p in entry.paths if media.exists(p)), None)
            if found is None:
                suffixes = ", ".join(p.removeprefix(entry.key) for p in entry.paths)
                items.append(Item(entry.key, path, _refuse(f"{entry.key}: no such file ({suffixes})"),
                                  entry.references, entry.line))
                continue
            path = found
        items.append(Item(entry.key, path, media.reader(path), entry.references, entry.line))
    return items


def _dataset(parsed: _Parsed, name: str, label: str, media: _Media, selection: Selection,
             max_items: int | None, kind_prefix: str = "") -> Dataset:
    entries, details = _chosen(parsed.entries, lambda e: e.key, name, parsed.kind, parsed.splits, selection,
                               max_items)
    if parsed.columns:
        details["columns"] = parsed.columns
    return Dataset(kind_prefix + parsed.kind, label, _items(entries, media), details=details)


# --------------------------------------------------------------------------- files on this machine


def _read_file(path: Path, source: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise MediaError(f"{source}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit")
            return path.read_bytes()
        except FileNotFoundError:
            raise MediaError(f"{source}: no such file") from None
        except IsADirectoryError:
            raise MediaError(f"{source}: a folder, not a file") from None
        except OSError as exc:
            raise MediaError(f"{source}: cannot be read ({exc.strerror})") from None
    return read


class _Files:
    """A manifest's paths as files relative to `base`; with `fence`, paths that leave the fence
    are refused (an uploaded manifest may only name files under the server's dataset folder)."""

    def __init__(self, base: Path, fence: Path | None = None) -> None:
        self.base = base.resolve()
        self.fence = fence.resolve() if fence is not None else None

    def _target(self, path: str) -> Path:
        try:
            target = (self.base / path).resolve()
        except (ValueError, OSError) as exc:  # e.g. a NUL byte in the path
            raise MediaError(f"{path!r}: not a usable path ({exc})") from None
        if self.fence is not None and not target.is_relative_to(self.fence):
            raise MediaError(f"{path}: outside the dataset folder")
        return target

    def reader(self, path: str) -> Callable[[], bytes]:
        def read() -> bytes:  # resolved when read: choosing items looks at no file
            return _read_file(self._target(path), path)()
        return read

    def exists(self, path: str) -> bool:
        try:
            return self._target(path).is_file()
        except (MediaError, OSError):
            return False


def folder_items(root: Path, input_kind: str) -> tuple[list[Item], int]:
    """Every file of the kind's formats under `root` (recursively, sorted; hidden ones left
    out), keyed by its path relative to root; and how many other files were passed over."""
    items, skipped = [], 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in sorted(files):
            relative = Path(folder, file).relative_to(root).as_posix()
            if _is_media(relative, input_kind):
                items.append(Item(_key(relative, str(root)), relative, _read_file(Path(folder, file), relative)))
            elif not file.startswith("."):
                skipped += 1
        if len(items) > MAX_ENTRIES:
            raise ManifestError(f"{root}: more than {MAX_ENTRIES} files; split it into several batches")
    if not items:
        suffixes = " ".join(MEDIA_SUFFIXES[input_kind])
        raise ManifestError(f"{root}: no {input_kind} files ({suffixes}) in this folder or below it")
    return items, skipped


def _check_kind(input_kind: str) -> None:
    if input_kind not in MEDIA_SUFFIXES:
        raise ManifestError(f"a batch needs a task whose input is a media file, not {input_kind}")


def open_dataset(path: str | Path, input_kind: str, *, media_root: str | Path | None = None,
                 selection: Selection = Selection(), columns: Columns = Columns(),
                 max_items: int | None = MAX_ITEMS) -> Dataset:
    """The dataset at `path`: a folder, a manifest (.csv, .jsonl, .json annotation file; paths
    relative to `media_root`, by default the manifest's folder) or an archive, with the entries
    `selection` keeps. ManifestError when it cannot be read as a whole (which file, which line or
    entry), the split is unknown or the format has none, or more than `max_items` are chosen."""
    path = Path(path)
    _check_kind(input_kind)
    if path.is_dir():
        if columns.given():
            raise ManifestError(f"{path}: a folder has no columns; --path-column, --key-column and "
                                "--reference-columns are for CSV and JSON Lines manifests")
        found, skipped = folder_items(path, input_kind)
        items, details = _chosen(found, lambda i: i.key, str(path), "folder", None, selection, max_items)
        return Dataset("folder", str(path), items, skipped, details)
    if not path.exists():
        raise ManifestError(f"{path}: no such file or folder")
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return open_archive(path.open("rb"), path.name, input_kind, selection=selection, columns=columns,
                            max_items=max_items)
    parse = _parser(path.name)
    parsed = parse(_decode(path.read_bytes(), path.name), path.name, columns, selection.split)
    root = Path(media_root) if media_root else path.parent
    return _dataset(parsed, path.name, str(path), _Files(root), selection, max_items)


class _NoMedia:
    """For reference captions alone: no media is looked for."""

    def reader(self, path: str) -> Callable[[], bytes]:
        return _refuse(f"{path}: read for its reference captions only")

    def exists(self, path: str) -> bool:
        return False


def open_references(path: str | Path, *, columns: Columns = Columns()) -> Dataset:
    """Every entry of a manifest or annotation file (or of the manifest in an archive), all splits,
    with its reference captions, for `mils batch eval --references`; no media is looked at."""
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"{path}: a folder has no reference captions; give a COCO captions, Karpathy split, "
                            "MSR-VTT or Clotho file, or a CSV/JSONL manifest with reference columns")
    if not path.exists():
        raise ManifestError(f"{path}: no such file")
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        with path.open("rb") as file:
            return open_archive(file, path.name, "image", columns=columns, max_items=None)
    parse = _parser(path.name)
    parsed = parse(_decode(path.read_bytes(), path.name), path.name, columns, None)
    return Dataset(parsed.kind, str(path), _items(parsed.entries, _NoMedia()))


def open_manifest(data: bytes, name: str, root: str | Path | None, input_kind: str, *,
                  media_folder: str | None = None, selection: Selection = Selection(),
                  columns: Columns = Columns()) -> Dataset:
    """An uploaded manifest naming files under the server's dataset folder `root`
    (MILS_DATASET_ROOT): relative to `media_folder` there (a folder under `root`; default `root`
    itself); paths that leave `root` are refused item by item, a media folder that does is
    refused whole."""
    if root is None:
        raise ManifestError("a manifest uploaded alone names files on the server, and this server has no "
                            "dataset folder (MILS_DATASET_ROOT): upload an archive of the media instead")
    _check_kind(input_kind)
    fence = Path(root).resolve()
    base = fence
    if media_folder and media_folder.strip():
        folder = media_folder.strip()
        try:
            base = (fence / folder).resolve()
        except (ValueError, OSError) as exc:
            raise ManifestError(f"media folder {folder!r}: not a usable path ({exc})") from None
        if not base.is_relative_to(fence):
            raise ManifestError(f"media folder {folder!r}: outside the dataset folder")
        if not base.is_dir():
            raise ManifestError(f"media folder {folder!r}: no such folder in the dataset folder")
    parse = _parser(name)
    parsed = parse(_decode(data, name), name, columns, selection.split)
    return _dataset(parsed, name, name, _Files(base, fence), selection, MAX_ITEMS)


# --------------------------------------------------------------------------- archives


@dataclass(frozen=True)
class _Member:
    name: str  # normalised, relative to the archive's root
    size: int  # declared unpacked size
    handle: Any  # the ZipInfo or TarInfo


def _safe_name(raw: str, archive: str) -> str:
    name = raw.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or (parts and ":" in parts[0]) or ".." in parts:
        raise ManifestError(f"{archive}: member {raw!r} points outside the archive; refused")
    return "/".join(parts)


def _members(archive: Any, name: str, size: int) -> tuple[str, list[_Member], int]:
    """The archive's file members, each checked (names, links, sizes), and how many names were
    repeated (an archive appended to, `tar -r`): the last one wins, as when it is unpacked."""
    limit = _unpacked_limit(size)
    found: dict[str, _Member] = {}
    unpacked = 0

    def add(member: _Member) -> None:
        nonlocal unpacked
        unpacked += member.size
        if unpacked > limit:
            raise ManifestError(f"{name}: declares more than {limit} bytes unpacked from {size} bytes; refused as a "
                                "possible zip bomb")
        if len(found) >= MAX_ITEMS and member.name not in found:
            raise ManifestError(f"{name}: more than {MAX_ITEMS} files; split it into several batches")
        found.pop(member.name, None)
        found[member.name] = member

    count = 0
    if isinstance(archive, zipfile.ZipFile):
        kind = "zip"
        for info in archive.infolist():
            if info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ManifestError(f"{name}: member {info.filename!r} is a link; refused")
            count += 1
            add(_Member(_safe_name(info.filename, name), info.file_size, info))
    else:
        kind = "tar"
        # One header at a time (never the whole list first): the limits stop a bomb early.
        while (info := archive.next()) is not None:
            if info.isdir():
                continue
            if not info.isfile():  # links, devices, fifos: nothing a dataset needs
                raise ManifestError(f"{name}: member {info.name!r} is a link or a special file; refused")
            count += 1
            add(_Member(_safe_name(info.name, name), info.size, info))
    return kind, list(found.values()), count - len(found)


def _unpacked_tar(file: IO[bytes], name: str, size: int) -> IO[bytes]:
    """A compressed tar (gzip, bzip2, xz) decompressed once into a temporary file, never beyond
    BOMB_RATIO times the archive's size: reading its members in any order is then a seek, where
    a compressed stream would be decompressed again from its start for every step back."""
    head = file.read(6)
    file.seek(0)
    opener = {b"\x1f\x8b": lambda f: gzip.GzipFile(fileobj=f, mode="rb"), b"BZ": bz2.BZ2File, b"\xfd7": lzma.LZMAFile}.get(head[:2])
    if opener is None:
        return file
    limit = _unpacked_limit(size)
    out = tempfile.TemporaryFile()
    written = 0
    try:
        with opener(file) as stream:
            while chunk := stream.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise ManifestError(f"{name}: unpacks to more than {limit} bytes from {size} bytes; refused as "
                                        "a possible zip bomb")
                out.write(chunk)
    except ManifestError:
        out.close()
        raise
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        out.close()
        raise ManifestError(f"{name}: a damaged or cut-short archive ({exc})") from None
    out.seek(0)
    return out


def _member_reader(archive: Any, member: _Member, limit: int = MAX_FILE_BYTES) -> Callable[[], bytes]:
    def read() -> bytes:
        if member.size > limit:
            raise MediaError(f"{member.name}: {member.size} bytes is over the {limit}-byte limit")
        try:
            stream = archive.open(member.handle) if isinstance(archive, zipfile.ZipFile) \
                else archive.extractfile(member.handle)
            with stream:
                data = stream.read(limit + 1)  # never more, whatever the header claims
        except Exception as exc:  # damaged data, an unsupported method (Deflate64), a wrong password
            raise MediaError(f"{member.name}: cannot be unpacked ({type(exc).__name__}: {exc})") from None
        if len(data) > limit:
            raise MediaError(f"{member.name}: over the {limit}-byte limit")
        return data
    return read


class _Members:
    """A manifest's paths as the members of an archive (relative to its root)."""

    def __init__(self, archive: Any, by_name: dict[str, _Member], manifest: str) -> None:
        self.archive, self.by_name, self.manifest = archive, by_name, manifest

    def _member(self, path: str) -> _Member | None:
        return self.by_name.get(_safe_name(path, self.manifest))

    def reader(self, path: str) -> Callable[[], bytes]:
        try:
            member = self._member(path)
        except ManifestError as exc:
            return _refuse(str(exc))
        if member is None:
            return _refuse(f"{path}: not in the archive")
        return _member_reader(self.archive, member)

    def exists(self, path: str) -> bool:
        try:
            return self._member(path) is not None
        except ManifestError:
            return False


def open_archive(file: IO[bytes], name: str, input_kind: str, *, selection: Selection = Selection(),
                 columns: Columns = Columns(), max_items: int | None = MAX_ITEMS) -> Dataset:
    """An archive (zip, tar, tar.gz) of media. A manifest at its root (one .csv, .jsonl or .json
    annotation file) lists the items, its paths relative to the root; without one, every media
    file is an item keyed by its path. `selection` and `columns` as for open_dataset. The archive
    stays open while items are read: close `file` after."""
    _check_kind(input_kind)
    _check_selection(selection)
    file.seek(0, io.SEEK_END)
    size = file.tell()
    file.seek(0)
    try:
        if zipfile.is_zipfile(file):
            file.seek(0)
            archive: Any = zipfile.ZipFile(file)
        else:
            file.seek(0)
            archive = tarfile.open(fileobj=_unpacked_tar(file, name, size), mode="r:")
        kind, members, repeated = _members(archive, name, size)
    except ManifestError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError,
            NotImplementedError, ValueError) as exc:
        raise ManifestError(f"{name}: not a zip or tar archive, or a damaged one ({exc})") from None
    by_name = {m.name: m for m in members}
    manifests = [m for m in members if "/" not in m.name and m.name.lower().endswith(MANIFEST_SUFFIXES)]
    if len(manifests) > 1:
        raise ManifestError(f"{name}: more than one manifest at its root "
                            f"({', '.join(m.name for m in manifests)}); keep one")
    if manifests:
        manifest = manifests[0]
        parse = _parser(manifest.name)
        try:
            text = _decode(_member_reader(archive, manifest, MAX_MANIFEST_BYTES)(), manifest.name)
        except MediaError as exc:
            raise ManifestError(f"{name}: {exc}") from None
        parsed = parse(text, manifest.name, columns, selection.split)
        dataset = _dataset(parsed, manifest.name, name, _Members(archive, by_name, manifest.name), selection,
                           max_items, kind_prefix=f"{kind}:")
        return Dataset(dataset.kind, name, dataset.items, repeated, dataset.details)
    if columns.given():
        raise ManifestError(f"{name}: no manifest at its root to read columns of")
    found = [Item(_key(m.name, name), m.name, _member_reader(archive, m))
             for m in sorted(members, key=lambda m: m.name) if _is_media(m.name, input_kind)]
    if not found:
        raise ManifestError(f"{name}: no {input_kind} files ({' '.join(MEDIA_SUFFIXES[input_kind])}) and no manifest")
    items, details = _chosen(found, lambda i: i.key, name, kind, None, selection, max_items)
    return Dataset(kind, name, items, len(members) - len(found) + repeated, details)
