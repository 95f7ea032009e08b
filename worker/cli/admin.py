"""Running the service and looking after it: worker, reap, web, token, db, purge."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import click

from worker.cli.common import cli, quiet_libraries, user_errors
from worker.store.schema import TOKEN_ROLES


@cli.command()
@click.option("--queues", default="default,gpu", show_default=True, help="Queues to consume.")
@click.option("--name", default=None, help="Worker node name (default: mils@hostname-pid).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Steps of different jobs run at once, in threads sharing one copy of each model. "
                   "Pays off when the LLM is a serving engine (openai:MODEL@URL) that batches their "
                   "requests; keep 1 for models computed in this process on a CPU.")
@user_errors
def worker(queues: str, name: str | None, loglevel: str, concurrency: int) -> None:
    """Run a worker: one process, models loaded once (one per GPU), CONCURRENCY steps at a time."""
    from worker.celery_app import app
    from worker.models.registry import registry
    from worker.store.db import open_store

    open_store()  # refuse to start on a schema behind the code
    registry()  # refuse to start on a malformed model registry (MILS_MODELS), naming its line
    quiet_libraries()
    # Threads, not processes: C processes would each load the models (C copies on one GPU).
    pool = "solo" if concurrency == 1 else "threads"
    argv = ["worker", f"--pool={pool}", f"--concurrency={concurrency}", f"--queues={queues}",
            f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"]
    argv.append(f"--hostname={name or f'mils@%h-{os.getpid()}'}")
    app.worker_main(argv)


@cli.command("llm-server")
@click.option("--model", "model", default="embedded", show_default=True,
              help="'embedded' (the offline Qwen2.5-Coder-0.5B GGUF) or the path of any GGUF file.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--parallel", "-p", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Requests decoded together (llama.cpp slots).")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="CPU threads (default: MILS_LLM_THREADS, else every core).")
@click.option("--reproducible/--prompt-cache", default=False, show_default=True,
              help="--reproducible: no prompt cache, so a request decoded alone (--parallel 1) gives "
                   "the same text for the same seed every time; the prompt cache is faster.")
@user_errors
def llm_server(model: str, host: str, port: int, parallel: int, threads: int | None, reproducible: bool) -> None:
    """Serve a GGUF model over the OpenAI chat-completions API (llama.cpp), so several workers on
    this machine share one model: submit jobs with --llm openai:MODEL@http://HOST:PORT/v1."""
    import signal
    import socket
    import threading
    from pathlib import Path

    from worker import config
    from worker.models.chat import start_llamacpp
    from worker.models.embedded_llm import embedded_gguf

    with socket.socket() as probe:  # llama.cpp only says "failed to init" when the port is taken
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    gguf = embedded_gguf() if model == "embedded" else Path(model).expanduser()
    alias = "embedded" if model == "embedded" else gguf.stem
    server = start_llamacpp(gguf, slots=parallel, threads=threads or config.llm_threads(), host=host, port=port,
                            reproducible=reproducible, alias=alias)
    click.echo(f"llama.cpp serving {gguf.name} on {server.listening_address}/v1 with {parallel} slot(s); "
               f"jobs: --llm openai:{alias}@{server.listening_address}/v1", err=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    click.echo("llm-server stopped", err=True)


@cli.command()
def reap() -> None:
    """Mark jobs whose worker died interrupted and resume them (workers also do this)."""
    from worker.lifecycle import reap_once
    from worker.store.db import open_store

    click.echo(f"resumed {reap_once(open_store())} job(s)")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--threads", type=int, default=8, show_default=True, help="Requests served at once.")
@user_errors
def web(host: str, port: int, threads: int) -> None:
    """Serve the web front end and the JSON API (waitress). It never loads a model."""
    import waitress

    from web import create_app  # the one import of the web front end from worker/ (see pyproject.toml)
    from worker.store.db import open_store

    app = create_app()
    open_store(app.config["DATABASE_URL"])  # refuse to start on a schema behind the code
    if app.config["AUTH"] == "none" and host not in ("127.0.0.1", "localhost", "::1"):
        click.echo("warning: MILS_WEB_AUTH is not 'token': anyone who can reach this address can "
                   "submit and cancel jobs, and name any model spec (code, files, URLs)", err=True)
    click.echo(f"MILS web on http://{host}:{port}/ (API description: /api/openapi.json)", err=True)
    waitress.serve(app, host=host, port=port, threads=threads, ident="mils")


@cli.command()
@user_errors
def models() -> None:
    """The models this server offers by name (the registry file MILS_MODELS names): name, role,
    spec, queue, description, tab-separated."""
    from worker import config
    from worker.models.registry import registry

    click.echo(f"# {config.models_path() or 'no MILS_MODELS: the built-in names only'}")
    for entry in registry().entries:
        click.echo("\t".join((entry.name, entry.role, entry.spec, entry.queue or "-", entry.description)))


@cli.group()
def token() -> None:
    """API tokens for the web front end (when run with MILS_WEB_AUTH=token)."""


@token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(TOKEN_ROLES), default="user", show_default=True,
              help="admin: anything to any job or batch; user: read all, submit, cancel and resume its own; "
                   "reader: read only")
def token_create(name: str, role: str) -> None:
    """Create a token and print it (the only time it is shown; only its hash is stored)."""
    from worker.store.db import open_store
    from worker.store.tokens import create_token

    with open_store().begin() as session:
        click.echo(create_token(session, name, role))


@token.command("list")
def token_list() -> None:
    """Tokens: id, name, role, created, last used, revoked."""
    from worker.store.db import open_store
    from worker.store.tokens import list_tokens

    def when(moment) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"

    with open_store()() as session:
        for t in list_tokens(session):
            click.echo(f"{t.id}\t{t.name}\t{t.role}\tcreated {when(t.created_at)}\tused {when(t.last_used_at)}"
                       f"{chr(9) + 'revoked ' + when(t.revoked_at) if t.revoked_at else ''}")


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke a token by its id (see `mils token list`)."""
    from worker.store.db import open_store
    from worker.store.tokens import revoke_token

    with open_store().begin() as session:
        if not revoke_token(session, token_id):
            raise click.ClickException(f"no active token {token_id}")
    click.echo(f"token {token_id} revoked")


@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command()
def upgrade() -> None:
    """Create or upgrade the schema of MILS_DATABASE_URL (or the local SQLite file)."""
    from worker.config import database_url
    from worker.store.db import upgrade as run_upgrade

    run_upgrade()
    click.echo(f"schema up to date: {database_url().split('@')[-1]}")


class Duration(click.ParamType):
    """A span of time such as 30d, 12h, 90m, 3600s or 2w (a number and one unit)."""

    name = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

    def convert(self, value, param, ctx) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(value))
        if not match:
            self.fail(f"{value!r} is not a duration: a number and a unit, e.g. 30d, 12h, 90m, 3600s, 2w", param, ctx)
        return timedelta(seconds=float(match.group(1)) * self.UNITS[match.group(2)])


def _statuses(raw: str) -> list:
    from worker.store.purge import FINISHED

    by_name = {s.value: s for s in FINISHED}
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name]
    if unknown or not names:
        raise click.BadParameter(f"{', '.join(unknown) or raw!r}: only finished jobs are purged, "
                                 f"give some of {','.join(by_name)}", param_hint="'--status'")
    return [by_name[name] for name in names]


def _archive_folder(raw: str) -> Path:
    """The archive folder, checked by writing to it: it must exist and take a file."""
    import tempfile

    folder = Path(raw).expanduser()
    if not folder.is_dir():
        raise click.ClickException(f"archive folder {folder} does not exist (create it first)")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise click.ClickException(f"archive folder {folder} is not writable ({exc.strerror or exc})") from None
    return folder


@cli.command()
@click.option("--older-than", "older_than", type=Duration(), required=True,
              help="Jobs that finished longer ago than this: 30d, 12h, 2w, ...")
@click.option("--status", "statuses", default="succeeded,failed,cancelled", show_default=True,
              help="Which finished jobs (comma-separated). Running and unfinished jobs are never touched.")
@click.option("--archive", "archive", default=None, metavar="DIR",
              help="Folder for the archives: one job-ID-TIME.jsonl.gz per job (required unless --dry-run).")
@click.option("--dry-run", is_flag=True, help="List the jobs that would be purged; write and delete nothing.")
@user_errors
def purge(older_than: timedelta, statuses: str, archive: str | None, dry_run: bool) -> None:
    """Archive old finished jobs' candidates to files, then delete them from the database.

    Each job's whole history (every candidate with its score, as `mils history` exports it, and
    the job's record: settings, steps, top K, events) is written to DIR, fsynced and read back;
    only then are its candidates and top-K entries deleted, in one transaction per job, and a
    "purged" event names the file and its sha256. The job, its steps and events stay, and its
    page says where the candidates went."""
    from worker.store.db import open_store
    from worker.store.purge import PurgeError, purge_job, purgeable
    from worker.store.schema import utcnow

    chosen = _statuses(statuses)
    if archive is None and not dry_run:
        raise click.UsageError("--archive DIR is required (or --dry-run to only list)")
    folder = _archive_folder(archive) if archive is not None and not dry_run else None
    sessions = open_store()
    with sessions() as session:
        found = purgeable(session, utcnow() - older_than, chosen)
    if dry_run:
        for job in found:
            click.echo(f"job {job.job_id}\t{job.status}\tfinished {job.finished_at:%Y-%m-%d %H:%M}\t"
                       f"{job.candidate_rows:,} candidate row(s)")
        click.echo(f"dry run: {len(found)} job(s) would be archived and purged", err=True)
        return
    purged = rows = 0
    for job in found:
        try:
            done = purge_job(sessions, job.job_id, folder)
        except PurgeError as exc:
            raise click.ClickException(f"{exc} ({purged} job(s) purged before it)") from None
        if done is None:
            click.echo(f"job {job.job_id}: no longer finished (resumed?), left alone")
        elif done.deleted:
            purged += 1
            rows += done.rows
            click.echo(f"job {job.job_id}: {done.rows:,} candidate(s) -> {done.path} sha256 {done.sha256}")
        else:
            click.echo(f"job {job.job_id}: changed while it was archived, left in place ({done.path} kept)")
    click.echo(f"purged {purged} job(s), {rows:,} candidate(s) archived to {folder}", err=True)
