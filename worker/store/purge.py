"""Archiving old jobs' candidates and removing them from the database (`mils purge`), so the
database does not grow without bound.

Per job, in this order: its whole record is written to one gzip-compressed JSON Lines file in the
archive folder (line 1 `{"job": ...}`: what the job page shows, events included; then one line per
candidate, exactly the rows of the history export, worker.store.queries.history), flushed, fsynced
and checked (size, sha256, rows read back); only then, in one transaction of its own, the job's
candidates, top-K entries and compact pool scores are deleted and a "purged" event names the
file and its sha256. The job row, its steps and its events stay. A crash at any point loses
nothing: before the commit the rows are all there, and the archive is complete before any delete.
A job that is no longer finished, or finished again since it was archived, is left alone.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from worker.store.jobs import add_event, get_job
from worker.store.queries import history, iso, job_detail
from worker.store.schema import Candidate, Job, JobEvent, JobStatus, PoolScores, TopEntry, utcnow

FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
ARCHIVE_FORMAT = "mils-job-archive/1"
CHUNK = 5000  # candidate rows deleted per statement


class PurgeError(RuntimeError):
    """The archive could not be written or checked: nothing of that job was deleted."""


@dataclass(frozen=True)
class PurgeCandidate:
    job_id: int
    status: str
    finished_at: datetime
    candidate_rows: int  # rows of `candidates` (a compact step 0 adds its pool's scores to the archive)


@dataclass(frozen=True)
class Archived:
    job_id: int
    path: Path
    sha256: str  # of the file as written (the compressed bytes)
    size: int  # bytes
    rows: int  # candidates in it
    deleted: bool  # False: the job changed after it was archived, so nothing was deleted


def _has_rows(job_id_column):
    return or_(exists().where(Candidate.job_id == job_id_column),
               exists().where(PoolScores.job_id == job_id_column))


def purgeable(session: Session, before: datetime, statuses: Iterable[JobStatus] = FINISHED) -> list[PurgeCandidate]:
    """Finished jobs (only `statuses`, a subset of succeeded, failed, cancelled) that finished
    before `before` and still have candidates or pool scores, oldest id first. Running, queued and
    interrupted jobs are never among them."""
    statuses = list(statuses)
    if not statuses or any(s not in FINISHED for s in statuses):
        raise ValueError(f"only finished jobs can be purged: {', '.join(s.value for s in FINISHED)}")
    rows = session.execute(select(Job.id, Job.status, Job.finished_at)
                           .where(Job.status.in_(statuses), Job.finished_at < before, _has_rows(Job.id))
                           .order_by(Job.id)).all()
    return [PurgeCandidate(job_id, status.value, finished_at,
                           session.scalar(select(func.count()).where(Candidate.job_id == job_id)))
            for job_id, status, finished_at in rows]


def purge_record(session: Session, job_id: int) -> dict | None:
    """{"at", "detail"} of the job's last purge (its "purged" event: the archive file and its
    sha256), or None when its candidates were never archived and removed."""
    event = session.scalar(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "purged")
                           .order_by(JobEvent.id.desc()).limit(1))
    return {"at": iso(event.at), "detail": event.detail} if event else None


# --------------------------------------------------------------------------- the archive


def _write_archive(session: Session, job_id: int, folder: Path) -> Archived:
    """Write the job's record to a new file in `folder` through a temporary file (renamed when
    complete, the folder fsynced), then read it back: size, sha256 and row count must match what
    was written. PurgeError (the temporary file removed) when any of it fails."""
    detail = job_detail(session, job_id)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"job-{job_id}-{stamp}.jsonl.gz"  # a new name: an earlier archive is never replaced
    tmp = folder / f".{path.name}.tmp"
    rows = 0
    try:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
                header = {"format": ARCHIVE_FORMAT, "archived_at": iso(utcnow()), "job": detail}
                out.write((json.dumps(header, ensure_ascii=False) + "\n").encode())
                for row in history(session, job_id):
                    out.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
                    rows += 1
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
        _fsync_folder(folder)
        size, digest, read_rows = _read_back(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PurgeError(f"job {job_id}: the archive {path} could not be written ({exc}); nothing deleted") from None
    if size != path.stat().st_size or read_rows != rows:
        raise PurgeError(f"job {job_id}: the archive {path} reads back {read_rows} of {rows} rows; nothing deleted")
    return Archived(job_id, path, digest, size, rows, deleted=False)


def _fsync_folder(folder: Path) -> None:
    """The rename itself is durable only once the folder is."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _read_back(path: Path) -> tuple[int, str, int]:
    """(bytes, sha256 of them, candidate rows) of an archive as it is on disk; a truncated or
    corrupt file fails to decompress (OSError, EOFError as OSError) or to parse."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            count = sum(1 for line in lines if line.strip()) - 1  # the header line
    except (EOFError, ValueError) as exc:
        raise OSError(f"unreadable after writing: {exc}") from None
    return size, digest.hexdigest(), count


def read_archive(path: Path) -> tuple[dict, list[dict]]:
    """(header, candidate rows) of an archive file: header["job"] is the job's record."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        header = json.loads(next(lines))
        return header, [json.loads(line) for line in lines if line.strip()]


# --------------------------------------------------------------------------- archive, then delete


def _delete_rows(session: Session, job_id: int, chunk: int) -> None:
    session.execute(delete(TopEntry).where(TopEntry.job_id == job_id).execution_options(synchronize_session=False))
    while True:  # in chunks: one statement never holds a whole large job's rows
        ids = session.scalars(select(Candidate.id).where(Candidate.job_id == job_id).limit(chunk)).all()
        if not ids:
            break
        session.execute(delete(Candidate).where(Candidate.id.in_(ids)).execution_options(synchronize_session=False))
    session.execute(delete(PoolScores).where(PoolScores.job_id == job_id).execution_options(synchronize_session=False))


def purge_job(sessions: sessionmaker[Session], job_id: int, folder: Path, *, chunk: int = CHUNK) -> Archived | None:
    """Archive one finished job's candidates into `folder`, then delete them (see the module's
    docstring). None when the job is not finished (left alone, nothing written); `deleted` False
    when it changed between the archive and the delete. PurgeError when the archive could not be
    written or checked: nothing was deleted."""
    with sessions() as session:
        job = get_job(session, job_id)
        if job.status not in FINISHED:
            return None
        finished_at = job.finished_at
        archived = _write_archive(session, job_id, folder)
    with sessions.begin() as session:
        job = get_job(session, job_id, for_update=True)  # a resume now waits for this transaction
        if job.status not in FINISHED or job.finished_at != finished_at:
            return archived  # resumed (or finished again) since: its rows changed, keep them all
        _delete_rows(session, job_id, chunk)
        add_event(session, job, "purged", f"{archived.rows:,} candidate(s) archived to {archived.path} "
                                          f"(sha256 {archived.sha256}, {archived.size:,} bytes) and removed")
    return Archived(job_id, archived.path, archived.sha256, archived.size, archived.rows, deleted=True)
