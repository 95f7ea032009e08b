"""`mils purge`: old finished jobs' candidates are archived to files, checked, then deleted, on the
real PostgreSQL (worker.store.purge; the command run for real as a subprocess).

Jobs run in this process with the tiny fakes (their history is real: step 0 scores the
5,000-caption pool); their finish time is then set back by hand to make them old.
"""

from __future__ import annotations

import errno
import hashlib
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

import worker.store.purge
from tests.support.fakes import HiddenCaptionScorer, ScriptedGenerator
from tests.support.media import png_media
from tests.support.services import assert_one_error_line, mils_env, run_mils
from web import create_app
from worker.core import Settings
from worker.runner import JobModels, run_in_process
from worker.store.db import open_store
from worker.store.jobs import create_job
from worker.store.purge import PurgeError, purge_job, purgeable, read_archive
from worker.store.queries import history, history_json
from worker.store.schema import Candidate, Job, JobEvent, JobStatus, Step, TopEntry, utcnow

SETTINGS = Settings(steps=2, top_k=3, candidates=4, seed=1, max_words=10, prompts_per_step=1)


def run_job(Session) -> int:
    with Session.begin() as session:
        job_id = create_job(session, task="image-caption", settings=SETTINGS, generator="fake-llm",
                            scorer="fake-scorer", media=png_media()).id
    models = JobModels(ScriptedGenerator(extra_words=["tabby", "sun"]), HiddenCaptionScorer("a tabby cat in the sun"))
    for _ in run_in_process(Session, job_id, lambda *_: models):
        pass
    return job_id


def rows_of(Session, job_id: int) -> dict[str, int]:
    with Session() as session:
        return {table.__tablename__: session.scalar(select(func.count()).select_from(table)
                                                    .where(table.job_id == job_id))
                for table in (Candidate, TopEntry, Step, JobEvent)}


def exported(Session, job_id: int) -> list[dict]:
    """The job's history as `mils history --format json` and the API export it."""
    with Session() as session:
        return json.loads("".join(history_json(history(session, job_id))))


@pytest.fixture
def Session(pg):
    return open_store(pg)


@pytest.fixture
def jobs(Session):
    """old: succeeded 40 days ago; failed: failed 40 days ago; cancelled: cancelled 40 days ago;
    recent: succeeded now; running: ran its steps, then claimed by a worker (running)."""
    ids = {name: run_job(Session) for name in ("old", "failed", "cancelled", "recent", "running")}
    long_ago = utcnow() - timedelta(days=40)
    with Session.begin() as session:
        for name, status in (("old", JobStatus.SUCCEEDED), ("failed", JobStatus.FAILED),
                             ("cancelled", JobStatus.CANCELLED)):
            session.execute(update(Job).where(Job.id == ids[name]).values(status=status, finished_at=long_ago))
        session.execute(update(Job).where(Job.id == ids["running"])
                        .values(status=JobStatus.RUNNING, finished_at=None, worker="celery@w/1/1"))
    return ids


def test_purge_archives_every_candidate_then_deletes_them_and_keeps_the_job(Session, pg, jobs, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    before = {name: exported(Session, job_id) for name, job_id in jobs.items()}
    counts = {name: rows_of(Session, job_id) for name, job_id in jobs.items()}
    assert all(len(rows) > 5000 for rows in before.values())  # the pool, and the steps' own

    env = mils_env(home=tmp_path / "home", database_url=pg, broker_url=f"sqla+sqlite:///{tmp_path / 'q.db'}")
    out = run_mils("purge", "--older-than", "30d", "--status", "succeeded,failed", "--archive", str(archive), env=env)
    assert out.returncode == 0, out.stderr
    files = sorted(archive.iterdir())
    assert [f.name.split("-")[1] for f in files] == sorted(str(jobs[n]) for n in ("old", "failed"))
    assert not list(archive.glob(".*"))  # no temporary file left

    for name in ("old", "failed"):
        job_id = jobs[name]
        path = next(f for f in files if f.name.startswith(f"job-{job_id}-"))
        header, rows = read_archive(path)
        assert rows == before[name]  # exactly the history export, every candidate
        assert header["format"] == "mils-job-archive/1" and header["job"]["id"] == job_id
        assert header["job"]["settings"]["steps"] == 2 and len(header["job"]["steps"]) == 3
        assert header["job"]["top_k"] and header["job"]["events"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"{path} sha256 {digest}" in out.stdout
        after = rows_of(Session, job_id)
        assert after == {"candidates": 0, "top_entries": 0, "steps": counts[name]["steps"],
                         "job_events": counts[name]["job_events"] + 1}
        with Session() as session:
            event = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)
                                    .order_by(JobEvent.id.desc())).first()
            job = session.get(Job, job_id)
        assert event.kind == "purged" and str(path) in event.detail and digest in event.detail
        assert job.result_text is not None and job.status.value == ("succeeded" if name == "old" else "failed")

    # Recent, running and not-chosen (cancelled) jobs are untouched.
    for name in ("recent", "running", "cancelled"):
        assert rows_of(Session, jobs[name]) == counts[name] and exported(Session, jobs[name]) == before[name]

    # Purging again finds nothing: the archive of a purged job is never replaced.
    again = run_mils("purge", "--older-than", "30d", "--archive", str(archive), env=env)
    assert again.returncode == 0, again.stderr
    added = sorted(set(archive.iterdir()) - set(files))
    assert set(files) <= set(archive.iterdir()) and [f.name.split("-")[1] for f in added] == [str(jobs["cancelled"])]

    # A purged job's page and API still work and say where its candidates went.
    app = create_app({"DATABASE_URL": pg, "TESTING": True})
    client = app.test_client()
    page = client.get(f"/jobs/{jobs['old']}")
    assert page.status_code == 200 and 'id="history-archived"' in page.get_data(as_text=True)
    body = client.get(f"/api/jobs/{jobs['old']}").get_json()
    assert body["archived"]["detail"].startswith(f"{len(before['old']):,} candidate(s) archived to ")
    assert body["steps"] and body["best_text"]
    assert client.get(f"/api/jobs/{jobs['recent']}").get_json()["archived"] is None

    # Nor can it be resumed: its candidates, the state its next step needs, are in the archive.
    refused = run_mils("resume", str(jobs["failed"]), env=env)
    assert_one_error_line(refused, r"candidates were archived by `mils purge` .*cannot be resumed")


def test_a_dry_run_lists_and_changes_nothing(Session, pg, jobs, tmp_path):
    counts = {name: rows_of(Session, job_id) for name, job_id in jobs.items()}
    archive = tmp_path / "archive"
    archive.mkdir()
    env = mils_env(home=tmp_path / "home", database_url=pg, broker_url=f"sqla+sqlite:///{tmp_path / 'q.db'}")
    out = run_mils("purge", "--older-than", "30d", "--archive", str(archive), "--dry-run", env=env)
    assert out.returncode == 0, out.stderr
    listed = sorted(int(line.split()[1]) for line in out.stdout.splitlines())
    assert listed == sorted(jobs[n] for n in ("old", "failed", "cancelled"))
    assert "3 job(s) would be archived" in out.stderr
    assert list(archive.iterdir()) == []
    assert {name: rows_of(Session, job_id) for name, job_id in jobs.items()} == counts


def test_a_failed_archive_write_deletes_nothing(Session, jobs, tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    archive.mkdir()
    counts = rows_of(Session, jobs["old"])

    def disk_full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(worker.store.purge.os, "fsync", disk_full)
    with pytest.raises(PurgeError, match="No space left on device.*nothing deleted"):
        purge_job(Session, jobs["old"], archive)
    assert rows_of(Session, jobs["old"]) == counts
    assert list(archive.iterdir()) == []  # the partial file is removed

    # A file that does not read back whole is refused too.
    monkeypatch.undo()
    monkeypatch.setattr(worker.store.purge, "_read_back", lambda path: (path.stat().st_size, "0" * 64, 1))
    with pytest.raises(PurgeError, match="reads back 1 of"):
        purge_job(Session, jobs["old"], archive)
    assert rows_of(Session, jobs["old"]) == counts


def test_only_finished_jobs_are_ever_chosen(Session, jobs):
    with Session() as session:
        found = {c.job_id for c in purgeable(session, utcnow() + timedelta(days=1))}
        with pytest.raises(ValueError, match="only finished jobs"):
            purgeable(session, utcnow(), [JobStatus.RUNNING])
    assert found == {jobs[n] for n in ("old", "failed", "cancelled", "recent")}
    assert purge_job(Session, jobs["running"], None) is None  # not finished: left alone, nothing written


@pytest.mark.parametrize("args, pattern", [
    (["--older-than", "30x", "--archive", "{tmp}"], r"'30x' is not a duration"),
    (["--older-than", "30d", "--archive", "{tmp}/missing"], r"archive folder .*missing does not exist"),
    (["--older-than", "30d", "--archive", "/proc"], r"archive folder /proc is not writable"),
    (["--older-than", "30d", "--status", "running", "--archive", "{tmp}"], r"only finished jobs are purged"),
    (["--older-than", "30d"], r"--archive DIR is required"),
])
def test_bad_purge_options_are_one_error_line(pg, tmp_path, args, pattern):
    env = mils_env(home=tmp_path / "home", database_url=pg, broker_url=f"sqla+sqlite:///{tmp_path / 'q.db'}")
    out = run_mils("purge", *(a.replace("{tmp}", str(tmp_path)) for a in args), env=env)
    assert_one_error_line(out, pattern)
