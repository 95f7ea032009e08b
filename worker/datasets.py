"""A dataset as the items of a batch: a folder of media, a COCO captions annotation file with its
image folder, a CSV or JSON Lines manifest, or an archive (zip, tar) of media with or without a
manifest inside.

    open_dataset(path, input_kind)        a folder, a manifest or an archive on this machine
    open_archive(file, name, input_kind)   an uploaded archive (the web form, the API)
    open_manifest(data, name, root)        an uploaded manifest naming files under a server folder

Manifests (paths relative to the manifest's folder, or the archive's root):
    CSV     a header row with `path`; optional `id`; every column named `reference...` (reference,
            reference_2, ...) holds one reference caption per non-empty cell
    JSONL   one object per line: "path", optional "id", "references" (a list) or "reference"
    COCO    {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}: the
            images' ids are the item keys and the annotations their references

A manifest that cannot be read as a whole raises ManifestError naming the line (or entry) that is
wrong, and nothing is submitted. A missing, unreadable or unsupported item is not an error here:
its `read` raises MediaError, and the batch records that item with the reason and runs the rest.
An archive whose members escape its root (absolute paths, "..", links) or whose unpacked size
is out of proportion (a zip bomb: declared, or for a compressed tar found while decompressing it
once into a temporary file) is refused as a whole, as is a damaged one. A name repeated in an
archive counts once (the last, as unpacking it would), among the files passed over.
"""

from __future__ import annotations

import bz2
import csv
import gzip
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
from typing import IO, Any

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
MAX_ITEMS = 100_000
MAX_KEY_LENGTH = 255
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
    line: int | None = None  # its line in the manifest (its entry number for COCO)


@dataclass(frozen=True)
class Dataset:
    kind: str  # "folder", "coco", "csv", "jsonl", and "zip:..."/"tar:..." for archives
    name: str  # what it was opened from
    items: list[Item]
    skipped: int = 0  # files of a folder or archive that are not of the task's formats

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "items": len(self.items), "skipped": self.skipped}


# --------------------------------------------------------------------------- manifests


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

    def add(self, key: str, line: int, what: str = "line") -> None:
        if key in self.seen:
            raise ManifestError(f"{self.name} {what} {line}: id {key!r} repeats {what} {self.seen[key]}")
        if len(self.seen) >= MAX_ITEMS:
            raise ManifestError(f"{self.name}: more than {MAX_ITEMS} items; split it into several batches")
        self.seen[key] = line


def read_csv(text: str, name: str, reader: Callable[[str], Callable[[], bytes]]) -> list[Item]:
    """Items of a CSV manifest (see the module's docstring); `reader(path)` makes an item's read."""
    rows = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(rows)]
    except StopIteration:
        raise ManifestError(f"{name}: the file is empty") from None
    except csv.Error as exc:
        raise ManifestError(f"{name} line 1: {exc}") from None
    if "path" not in header:
        raise ManifestError(f"{name} line 1: no 'path' column (the columns are: {', '.join(header) or 'none'})")
    path_at, id_at = header.index("path"), header.index("id") if "id" in header else None
    reference_at = [i for i, h in enumerate(header) if h.startswith("reference")]
    items, keys = [], _Keys(name)
    try:
        for row in rows:
            line = rows.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                raise ManifestError(f"{name} line {line}: {len(row)} fields, the header has {len(header)}")
            row += [""] * (len(header) - len(row))
            path = row[path_at].strip()
            if not path:
                raise ManifestError(f"{name} line {line}: the path is empty")
            key = _key(row[id_at], f"{name} line {line}") if id_at is not None else _key(path, f"{name} line {line}")
            keys.add(key, line)
            items.append(Item(key, path, reader(path), _references((row[i] for i in reference_at), name), line))
    except csv.Error as exc:
        raise ManifestError(f"{name} line {rows.line_num}: {exc}") from None
    if not items:
        raise ManifestError(f"{name}: no items (only a header row)")
    return items


def read_jsonl(text: str, name: str, reader: Callable[[str], Callable[[], bytes]]) -> list[Item]:
    """Items of a JSON Lines manifest (see the module's docstring)."""
    items, keys = [], _Keys(name)
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
        path = entry.get("path")
        if not isinstance(path, str) or not path.strip():
            raise ManifestError(f"{where}: no \"path\" (a non-empty string)")
        references = entry.get("references", [])
        if isinstance(references, str):
            references = [references]
        if not isinstance(references, list):
            raise ManifestError(f"{where}: \"references\" must be a list of strings")
        if "reference" in entry:
            references = [*references, entry["reference"]]
        key = _key(entry["id"], where) if entry.get("id") is not None else _key(path, where)
        keys.add(key, line)
        items.append(Item(key, path.strip(), reader(path.strip()), _references(references, where), line))
    if not items:
        raise ManifestError(f"{name}: no items")
    return items


def read_coco(text: str, name: str, reader: Callable[[str], Callable[[], bytes]]) -> list[Item]:
    """Items of a COCO captions annotation file: one per image, its captions as references."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{name}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ManifestError(f"{name}: not a COCO captions file (no \"images\" list)")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise ManifestError(f"{name}: \"annotations\" is not a list")
    images, keys = [], _Keys(name)
    for i, image in enumerate(data["images"]):
        where = f"{name} images[{i}]"
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise ManifestError(f"{where}: an image needs an \"id\" and a \"file_name\"")
        key = _key(image["id"], where)
        keys.add(key, i, "images entry")
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
    return [Item(key, path, reader(path), tuple(captions[key]), i) for key, path, i in images]


_READERS = {".csv": read_csv, ".jsonl": read_jsonl, ".ndjson": read_jsonl, ".json": read_coco}


def _manifest_reader(name: str):
    for suffix, read in _READERS.items():
        if name.lower().endswith(suffix):
            return read
    raise ManifestError(f"{name}: a manifest is .csv, .jsonl or a COCO captions .json")


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")  # a BOM, as spreadsheet programs write, is not part of the header
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{name}: not UTF-8 text ({exc})") from None


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


def _files_under(root: Path, *, confined: bool) -> Callable[[str], Callable[[], bytes]]:
    """A manifest path -> its reader: relative to `root`; `confined` refuses paths that leave it
    (an uploaded manifest may only name files under the server's dataset folder)."""
    base = root.resolve()

    def refuse(message: str) -> Callable[[], bytes]:
        def read() -> bytes:
            raise MediaError(message)
        return read

    def reader(path: str) -> Callable[[], bytes]:
        try:
            target = (base / path).resolve()
        except (ValueError, OSError) as exc:  # e.g. a NUL byte in the path
            return refuse(f"{path!r}: not a usable path ({exc})")
        if confined and not target.is_relative_to(base):
            return refuse(f"{path}: outside the dataset folder")
        return _read_file(target, path)
    return reader


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
        if len(items) > MAX_ITEMS:
            raise ManifestError(f"{root}: more than {MAX_ITEMS} items; split it into several batches")
    if not items:
        suffixes = " ".join(MEDIA_SUFFIXES[input_kind])
        raise ManifestError(f"{root}: no {input_kind} files ({suffixes}) in this folder or below it")
    return items, skipped


def open_dataset(path: str | Path, input_kind: str, *, media_root: str | Path | None = None) -> Dataset:
    """The dataset at `path`: a folder, a manifest (.csv, .jsonl, COCO .json; paths relative to
    `media_root`, by default the manifest's folder) or an archive. ManifestError when it cannot
    be read as a whole (which file, which line)."""
    path = Path(path)
    if input_kind not in MEDIA_SUFFIXES:
        raise ManifestError(f"a batch needs a task whose input is a media file, not {input_kind}")
    if path.is_dir():
        items, skipped = folder_items(path, input_kind)
        return Dataset("folder", str(path), items, skipped)
    if not path.exists():
        raise ManifestError(f"{path}: no such file or folder")
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return open_archive(path.open("rb"), path.name, input_kind)
    read = _manifest_reader(path.name)
    text = _decode(path.read_bytes(), path.name)
    root = Path(media_root) if media_root else path.parent
    items = read(text, path.name, _files_under(root, confined=False))
    return Dataset(read.__name__.removeprefix("read_"), str(path), items)


def open_manifest(data: bytes, name: str, root: str | Path | None, input_kind: str) -> Dataset:
    """An uploaded manifest naming files under the server's dataset folder `root`
    (MILS_DATASET_ROOT); paths that leave it are refused item by item."""
    if root is None:
        raise ManifestError("a manifest uploaded alone names files on the server, and this server has no "
                            "dataset folder (MILS_DATASET_ROOT): upload an archive of the media instead")
    read = _manifest_reader(name)
    items = read(_decode(data, name), name, _files_under(Path(root), confined=True))
    if input_kind not in MEDIA_SUFFIXES:
        raise ManifestError(f"a batch needs a task whose input is a media file, not {input_kind}")
    return Dataset(read.__name__.removeprefix("read_"), name, items)


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


def _member_reader(archive: Any, member: _Member) -> Callable[[], bytes]:
    def read() -> bytes:
        if member.size > MAX_FILE_BYTES:
            raise MediaError(f"{member.name}: {member.size} bytes is over the {MAX_FILE_BYTES}-byte limit")
        try:
            stream = archive.open(member.handle) if isinstance(archive, zipfile.ZipFile) \
                else archive.extractfile(member.handle)
            with stream:
                data = stream.read(MAX_FILE_BYTES + 1)  # never more, whatever the header claims
        except Exception as exc:  # damaged data, an unsupported method (Deflate64), a wrong password
            raise MediaError(f"{member.name}: cannot be unpacked ({type(exc).__name__}: {exc})") from None
        if len(data) > MAX_FILE_BYTES:
            raise MediaError(f"{member.name}: over the {MAX_FILE_BYTES}-byte limit")
        return data
    return read


def open_archive(file: IO[bytes], name: str, input_kind: str) -> Dataset:
    """An archive (zip, tar, tar.gz) of media. A manifest at its root (one .csv, .jsonl or COCO
    .json) lists the items, its paths relative to the root; without one, every media file is
    an item keyed by its path. The archive stays open while items are read: close `file` after."""
    if input_kind not in MEDIA_SUFFIXES:
        raise ManifestError(f"a batch needs a task whose input is a media file, not {input_kind}")
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
        read = _manifest_reader(manifest.name)
        text = _decode(_member_reader(archive, manifest)(), manifest.name)

        def reader(path: str) -> Callable[[], bytes]:
            try:
                member = by_name.get(_safe_name(path, manifest.name))
            except ManifestError as exc:
                message = str(exc)

                def refuse() -> bytes:
                    raise MediaError(message)
                return refuse
            if member is None:
                def missing() -> bytes:
                    raise MediaError(f"{path}: not in the archive")
                return missing
            return _member_reader(archive, member)

        items = read(text, manifest.name, reader)
        return Dataset(f"{kind}:{read.__name__.removeprefix('read_')}", name, items, skipped=repeated)
    items = [Item(_key(m.name, name), m.name, _member_reader(archive, m))
             for m in sorted(members, key=lambda m: m.name) if _is_media(m.name, input_kind)]
    if not items:
        raise ManifestError(f"{name}: no {input_kind} files ({' '.join(MEDIA_SUFFIXES[input_kind])}) and no manifest")
    return Dataset(kind, name, items, skipped=len(members) - len(items) + repeated)
