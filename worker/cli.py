"""The `mils` command line."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from dataclasses import dataclass

import click

from worker.core import SettingsError
from worker.media import MediaError
from worker.samples import SAMPLES


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded models never need the hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _user_errors(fn):
    """Expected failures become one-line errors with a non-zero exit, never a traceback."""
    from worker.jobs import JobError
    from worker.models import ModelLoadError
    from worker.queries import QueryError
    from worker.store.db import SchemaError
    from worker.tasks import BrokerError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (MediaError, SettingsError, ModelLoadError, JobError, QueryError, SchemaError,
                BrokerError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _job_options(fn):
    """The input and settings of a new job, shared by `caption`, `caption-video` and `submit`."""
    options = [
        click.argument("input_file", metavar="INPUT", required=False, type=click.Path(dir_okay=False)),
        click.option("--sample", type=click.Choice(sorted(SAMPLES)),
                     help="Use a bundled sample photo instead (for a video task: a pan across it)."),
        click.option("--steps", type=int, help="Optimization steps after the bootstrap."),
        click.option("--candidates", type=int, help="New candidates per step (N)."),
        click.option("--top-k", type=int, help="Best candidates kept and shown to the LLM (K)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--patience", type=int, help="Stop after this many steps without improvement."),
        click.option("--epsilon", type=float, help="Epsilon-greedy exploration of the top K (0 = greedy)."),
        click.option("--llm", default="embedded", show_default=True,
                     help="'embedded', a Hugging Face model id / local path, or 'py:MODULE:FACTORY'."),
        click.option("--scorer", default="embedded", show_default=True,
                     help="'embedded', 'open_clip:ARCH[@PRETRAINED]', or 'py:MODULE:FACTORY'."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _render_options(fn):
    options = [
        click.option("--renderer", help="The text-to-image pipeline: diffusers:ID_OR_PATH (required)."),
        click.option("--size", type=int, help="Width and height of the renders (default 512)."),
        click.option("--render-steps", type=int, help="Denoising steps per render (default 30)."),
        click.option("--guidance", type=float, help="Classifier-free guidance scale (default 7.5)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _style_options(fn):
    options = [
        click.option("--style", "style_file", type=click.Path(dir_okay=False), help="The style image (required)."),
        click.option("--style-sample", type=click.Choice(sorted(SAMPLES)), help="A bundled photo as the style image."),
        click.option("--editor", help="The instruction-editing pipeline: diffusers:ID_OR_PATH (required)."),
        click.option("--image-guidance", type=float, help="How closely an edit follows the photo (default 1.5)."),
        click.option("--content-weight", type=float, help="Weight of the content distance (default 1.0)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _audio_options(fn):
    return click.option("--clip-seconds", type=int,
                        help="Seconds per clip; a longer recording's clips are averaged (default 10).")(fn)


def _video_options(fn):
    fn = click.option("--frame-mode", type=click.Choice(["per-frame", "pooled"]),
                      help="per-frame: mean of the frames' scores (default); pooled: score the mean frame.")(fn)
    return click.option("--frames", type=int, help="Frames sampled evenly over the video (default 8).")(fn)


@dataclass(frozen=True)
class JobRequest:
    task: str
    media: object  # worker.media.Media
    input_info: dict
    settings: object  # worker.core.Settings
    options: dict
    llm: str
    scorer: str
    attachments: dict  # name -> worker.media.Media


def _job_request(task, input_file, sample, steps, candidates, top_k, seed, patience, epsilon, llm, scorer,
                 style_file=None, style_sample=None, **options) -> JobRequest:
    """Check the input, settings and options of a new job before anything is stored."""
    from worker.models import check_specs
    from worker.samples import sample_input, sample_path
    from worker.task_kinds import TASK_KINDS, job_settings

    kind = TASK_KINDS[task]
    if kind.input_kind == "text":  # the input is the prompt itself
        if input_file is None or sample is not None:
            raise click.UsageError("give the PROMPT text (and no --sample)")
        media, info = kind.check_input(input_file.encode(), "prompt.txt")
    elif (input_file is None) == (sample is None):
        raise click.UsageError(f"give an INPUT {kind.input_kind} file or --sample NAME (one of them)")
    elif input_file:
        media, info = kind.load_file(input_file)
    else:
        media, info = kind.check_input(*sample_input(sample, kind.input_kind))
    settings = job_settings(task, llm, steps=steps, candidates=candidates, top_k=top_k,
                            seed=seed, patience=patience, epsilon=epsilon)
    check_specs(llm, scorer)
    kind.check_scorer(scorer)
    attachments = {}
    if style_file or style_sample:
        if style_file and style_sample:
            raise click.UsageError("give --style FILE or --style-sample NAME (one of them)")
        style_path = style_file or sample_path(style_sample)
        attachments["style"] = TASK_KINDS["image-caption"].load_file(style_path)[0]
        options["style_sha256"] = attachments["style"].sha256
    return JobRequest(task, media, info, settings, kind.job_options(options), llm, scorer, attachments)


def _run_here(request: JobRequest, as_json: bool) -> None:
    """Store the job, run every step in this process with a progress bar, print the result."""
    from tqdm import tqdm

    from worker.jobs import create_job, run_in_process
    from worker.store.db import open_store

    Session = open_store()
    with Session.begin() as session:
        job_id = create_job(session, task=request.task, settings=request.settings, generator=request.llm,
                            scorer=request.scorer, media=request.media, options=request.options,
                            input_info=request.input_info, attachments=request.attachments).id
    _quiet_libraries()
    steps_out = []
    total = request.settings.steps + 1
    # No bar when stderr is not a terminal (disable=None).
    with tqdm(total=total, desc=f"job {job_id}", unit="step", file=sys.stderr, disable=None) as bar:
        for result in run_in_process(Session, job_id):
            steps_out.append({"step": result.step, "best_score": result.best.score,
                              "best_text": result.best.text, "mean_topk": result.mean_topk})
            bar.update(1)
            bar.set_postfix(step=result.step, best=f"{result.best.score:.4f}")
    if not steps_out:
        raise click.ClickException(f"job {job_id} ran no step")
    best = steps_out[-1]
    if as_json:
        from worker.task_kinds import TASK_KINDS

        click.echo(json.dumps({TASK_KINDS[request.task].output: best["best_text"], "score": best["best_score"],
                               "steps": steps_out, "job_id": job_id}, indent=2))
    else:
        click.echo(best["best_text"])


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine does.")
def cli(verbose: bool) -> None:
    """MILS: LLMs that see without training. Generate, score, keep the best; repeat."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@_job_options
@_user_errors
def caption(as_json, **job) -> None:
    """Caption an image in this process (no queue); the job is kept in the database."""
    _run_here(_job_request("image-caption", **job), as_json)


@cli.command("caption-video")
@_job_options
@_video_options
@_user_errors
def caption_video(as_json, **job) -> None:
    """Caption a video in this process: frames sampled evenly, scored with the image scorer."""
    _run_here(_job_request("video-caption", **job), as_json)


@cli.command("caption-audio")
@_job_options
@_audio_options
@_user_errors
def caption_audio(as_json, **job) -> None:
    """Caption a sound recording in this process, scored by an audio-text model (--scorer clap:...)."""
    _run_here(_job_request("audio-caption", **job), as_json)


@cli.command()
@_job_options
@_render_options
@_user_errors
def t2i(as_json, **job) -> None:
    """Rewrite the prompt INPUT for a text-to-image model: each candidate prompt is rendered
    (--renderer) and the picture scored against the original prompt by the image scorer."""
    _run_here(_job_request("text-to-image", **job), as_json)


@cli.command()
@_job_options
@_style_options
@_render_options
@_user_errors
def style(as_json, **job) -> None:
    """Restyle the image INPUT like the --style image: candidate editing instructions are applied
    by the --editor pipeline and scored by style (Gram) and content distances."""
    for render_only in ("renderer",):
        if job.pop(render_only) is not None:
            raise click.UsageError("--renderer is for `mils t2i`; style transfer uses --editor")
    _run_here(_job_request("style-transfer", **job), as_json)


@cli.command()
@click.option("--task", type=click.Choice(["image-caption", "video-caption", "audio-caption", "text-to-image",
                                           "style-transfer"]),
              default="image-caption", show_default=True)
@_job_options
@_video_options
@_audio_options
@_render_options
@_style_options
@_user_errors
def submit(task, as_json, **job) -> None:
    """Queue a job for the workers (`mils worker`); prints its id."""
    from worker.store.db import open_store
    from worker.task_kinds import TASK_KINDS
    from worker.tasks import submit as submit_job

    for name, kind in TASK_KINDS.items():  # another kind's options given: say whose they are
        for option in set(kind.options) - set(TASK_KINDS[task].options):
            if job.pop(option, None) is not None:
                raise click.UsageError(f"--{option.replace('_', '-')} is for --task {name}")
    if task != "style-transfer" and (job.get("style_file") or job.get("style_sample")):
        raise click.UsageError("--style and --style-sample are for --task style-transfer")
    request = _job_request(task, **job)
    job_id = submit_job(open_store(), task=task, media=request.media, generator=request.llm,
                        scorer=request.scorer, settings=request.settings, options=request.options,
                        input_info=request.input_info, attachments=request.attachments)
    click.echo(json.dumps({"job_id": job_id}) if as_json else job_id)


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--text", "texts", multiple=True, help="A text part (repeatable); parts keep their order: files, samples, texts.")
@click.option("--sample", "samples", multiple=True, type=click.Choice(sorted(SAMPLES)), help="A bundled photo as a part.")
@click.option("--steps", type=int, help="Optimization steps of the combined prompt.")
@click.option("--candidates", type=int, help="New prompts per step (N).")
@click.option("--top-k", type=int, help="Best prompts kept and shown to the LLM (K).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--llm", default="embedded", show_default=True, help="The LLM of every step (parts and combination).")
@click.option("--scorer", default="embedded", show_default=True, help="The image-text scorer (image parts, renders).")
@click.option("--audio-scorer", help="The audio-text scorer of audio parts: clap:ID_OR_PATH.")
@_render_options
@click.option("--queue", "queued", is_flag=True, help="Queue the jobs for the workers instead of running them here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_user_errors
def arithmetic(files, texts, samples, steps, candidates, top_k, seed, llm, scorer, audio_scorer, queued, as_json,
               **render) -> None:
    """Combine inputs across modalities: each image or sound FILE is captioned by MILS (its own
    job), the LLM combines the captions and texts into one prompt, and it is rendered."""
    from worker.arithmetic import create_arithmetic_job, enqueue_arithmetic, part_from_file, part_from_text
    from worker.jobs import run_in_process
    from worker.media import read_media_file
    from worker.models import check_specs
    from worker.samples import sample_input
    from worker.store.db import open_store
    from worker.task_kinds import TASK_KINDS, job_settings
    from worker.tasks import job_queue

    parts = [part_from_file(read_media_file(f), os.path.basename(f)) for f in files]
    parts += [part_from_file(*sample_input(name, "image")) for name in samples]
    parts += [part_from_text(t) for t in texts]
    check_specs(llm, scorer)
    if audio_scorer:
        check_specs(llm, audio_scorer)
    settings = job_settings("arithmetic", llm, steps=steps, candidates=candidates, top_k=top_k, seed=seed)
    options = TASK_KINDS["arithmetic"].job_options(render)
    Session = open_store()
    with Session.begin() as session:
        job, parents = create_arithmetic_job(session, parts=parts, llm=llm, scorer=scorer, audio_scorer=audio_scorer,
                                             settings=settings, options=options)
        job_id, parent_ids = job.id, [p.id for p in parents]
        arithmetic_queue, parent_queues = (job.id, job_queue(job)), [(p.id, job_queue(p)) for p in parents]
    if queued:
        enqueue_arithmetic(arithmetic_queue, parent_queues)  # the arithmetic job waits for its parents
        click.echo(json.dumps({"job_id": job_id, "parents": parent_ids}) if as_json else job_id)
        return
    _quiet_libraries()
    try:
        for parent_id in parent_ids:
            for _ in run_in_process(Session, parent_id):
                pass
    finally:
        results = list(run_in_process(Session, job_id))  # after a failed part, this marks it failed too
    if not results:
        raise click.ClickException(f"job {job_id} ran no step (a part's job failed? see `mils status`)")
    best = results[-1].best
    if as_json:
        click.echo(json.dumps({"prompt": best.text, "score": best.score, "job_id": job_id, "parents": parent_ids,
                               "steps": [{"step": r.step, "best_score": r.best.score, "best_text": r.best.text}
                                         for r in results]}, indent=2))
    else:
        click.echo(best.text)


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    click.echo(f"job {summary.id} ({summary.task}): {summary.status}, "
               f"step {max(summary.steps_done - 1, 0)} of {summary.steps_total - 1}")
    if summary.best_text is not None:
        click.echo(f"best {summary.best_score:.4f}: {summary.best_text}")
    if summary.error:
        click.echo(f"error: {summary.error}")


@cli.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@_user_errors
def status(job_id: int, as_json: bool) -> None:
    """Status, progress and best result of a job."""
    from worker.queries import get_job, summarize
    from worker.store.db import open_store

    with open_store()() as session:
        _print_summary(summarize(session, get_job(session, job_id)), as_json)


@cli.command()
@click.argument("job_id", type=int)
@_user_errors
def cancel(job_id: int) -> None:
    """Stop a job after the step in flight."""
    from worker.lifecycle import cancel as cancel_job
    from worker.store.db import open_store

    with open_store().begin() as session:
        summary = cancel_job(session, job_id)
    click.echo(f"job {job_id}: {'cancelled' if summary.status == 'cancelled' else 'stops after the step in flight'}")


@cli.command()
@click.argument("job_id", type=int)
@_user_errors
def resume(job_id: int) -> None:
    """Continue a cancelled, failed or interrupted job after its last committed step."""
    from worker.store.db import open_store
    from worker.tasks import resume_job

    step = resume_job(open_store(), job_id)
    click.echo(f"job {job_id}: resumed at step {step}")


@cli.command()
@click.argument("job_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@_user_errors
def history(job_id: int, fmt: str) -> None:
    """Every candidate of a job: step, rank, top-K flag, score, text."""
    from worker.queries import get_job, history_csv, history_json
    from worker.queries import history as job_history
    from worker.store.db import open_store

    with open_store()() as session:
        get_job(session, job_id)  # an unknown job fails before anything is printed
        rows = job_history(session, job_id)
        sys.stdout.writelines(history_csv(rows) if fmt == "csv" else history_json(rows))


@cli.command()
@click.option("--status", "status_", help="Only jobs in this status.")
@click.option("--task", help="Only jobs of this task kind.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_user_errors
def jobs(status_, task, limit, as_json) -> None:
    """List jobs, newest first."""
    from worker.queries import list_jobs
    from worker.store.db import open_store

    with open_store()() as session:
        found = list_jobs(session, status=status_, task=task, limit=limit).items
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in found], indent=2))
        return
    for s in found:
        best = f"{s.best_score:.4f} {s.best_text}" if s.best_text else "-"
        click.echo(f"{s.id}\t{s.status}\t{s.task}\tstep {max(s.steps_done - 1, 0)}/{s.steps_total - 1}\t{best}")


@cli.command()
@click.option("--queues", default="default,gpu", show_default=True, help="Queues to consume.")
@click.option("--name", default=None, help="Worker node name (default: mils@hostname-pid).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(queues: str, name: str | None, loglevel: str) -> None:
    """Run a worker: one process, one step at a time, models loaded once (one per GPU)."""
    from worker.celery_app import app
    from worker.store.db import open_store

    open_store()  # refuse to start on a schema behind the code
    _quiet_libraries()
    argv = ["worker", "--pool=solo", "--concurrency=1", f"--queues={queues}", f"--loglevel={loglevel}",
            "--without-gossip", "--without-mingle"]
    argv.append(f"--hostname={name or f'mils@%h-{os.getpid()}'}")
    app.worker_main(argv)


@cli.command()
def reap() -> None:
    """Mark jobs whose worker died interrupted and resume them (workers also do this)."""
    from worker.tasks import reap_once

    click.echo(f"resumed {reap_once()} job(s)")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--threads", type=int, default=8, show_default=True, help="Requests served at once.")
def web(host: str, port: int, threads: int) -> None:
    """Serve the web front end and the JSON API (waitress). It never loads a model."""
    import waitress

    from web import create_app
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
    from web.auth import create_token
    from worker.store.db import open_store

    with open_store().begin() as session:
        click.echo(create_token(session, name))


@token.command("list")
def token_list() -> None:
    """Tokens: id, name, created, last used, revoked."""
    from sqlalchemy import select

    from worker.store.db import open_store
    from worker.store.models import ApiToken

    def when(moment) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"

    with open_store()() as session:
        for t in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            click.echo(f"{t.id}\t{t.name}\tcreated {when(t.created_at)}\tused {when(t.last_used_at)}"
                       f"{chr(9) + 'revoked ' + when(t.revoked_at) if t.revoked_at else ''}")


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke a token by its id (see `mils token list`)."""
    from web.auth import revoke_token
    from worker.store.db import open_store

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


def main() -> None:
    cli(prog_name="mils")
