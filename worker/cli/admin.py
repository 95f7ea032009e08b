"""Running the service and looking after it: worker, reap, web, token, db."""

from __future__ import annotations

import os

import click

from worker.cli.common import cli, quiet_libraries, user_errors


@cli.command()
@click.option("--queues", default="default,gpu", show_default=True, help="Queues to consume.")
@click.option("--name", default=None, help="Worker node name (default: mils@hostname-pid).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Steps of different jobs run at once, in threads sharing one copy of each model. "
                   "Pays off when the LLM is a serving engine (openai:MODEL@URL) that batches their "
                   "requests; keep 1 for models computed in this process on a CPU.")
def worker(queues: str, name: str | None, loglevel: str, concurrency: int) -> None:
    """Run a worker: one process, models loaded once (one per GPU), CONCURRENCY steps at a time."""
    from worker.celery_app import app
    from worker.store.db import open_store

    open_store()  # refuse to start on a schema behind the code
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
def web(host: str, port: int, threads: int) -> None:
    """Serve the web front end and the JSON API (waitress). It never loads a model."""
    import waitress

    from web import create_app  # the one import of the web front end from worker/ (see pyproject.toml)
    from worker.store.db import open_store

    app = create_app()
    open_store(app.config["DATABASE_URL"])  # refuse to start on a schema behind the code
    if app.config["AUTH"] == "none" and host not in ("127.0.0.1", "localhost", "::1"):
        click.echo("warning: MILS_WEB_AUTH is not 'token': anyone who can reach this address can "
                   "submit and cancel jobs", err=True)
    click.echo(f"MILS web on http://{host}:{port}/ (API description: /api/openapi.json)", err=True)
    waitress.serve(app, host=host, port=port, threads=threads, ident="mils")


@cli.group()
def token() -> None:
    """API tokens for the web front end (when run with MILS_WEB_AUTH=token)."""


@token.command("create")
@click.argument("name")
def token_create(name: str) -> None:
    """Create a token and print it (the only time it is shown; only its hash is stored)."""
    from worker.store.db import open_store
    from worker.store.tokens import create_token

    with open_store().begin() as session:
        click.echo(create_token(session, name))


@token.command("list")
def token_list() -> None:
    """Tokens: id, name, created, last used, revoked."""
    from worker.store.db import open_store
    from worker.store.tokens import list_tokens

    def when(moment) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"

    with open_store()() as session:
        for t in list_tokens(session):
            click.echo(f"{t.id}\t{t.name}\tcreated {when(t.created_at)}\tused {when(t.last_used_at)}"
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
