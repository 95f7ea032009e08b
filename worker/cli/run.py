"""Running jobs in this process (`mils caption`, ...), and submitting them to the workers (`mils submit`).

The commands only parse their arguments into worker.submission, which checks, stores and queues.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from worker.cli.common import apply, cli, quiet_libraries, user_errors
from worker.cli.options import (attachment_options, kind_options, read_user_files, settings_options, split_given,
                                user_file_options)
from worker.kinds import TASK_KINDS, TaskKind
from worker.media.samples import SAMPLES

# Commands that run one kind's job here: command -> (kind, what it does).
COMMANDS = {
    "caption": ("image-caption", "Caption an image in this process (no queue); the job is kept in the database."),
    "caption-video": ("video-caption", "Caption a video in this process: frames sampled evenly, scored with "
                                       "the image scorer."),
    "caption-audio": ("audio-caption", "Caption a sound recording in this process, scored by an audio-text "
                                       "model (--scorer clap:...)."),
    "t2i": ("text-to-image", "Rewrite the prompt INPUT for a text-to-image model: each candidate prompt is "
                             "rendered (--renderer) and the picture scored against the original prompt by the "
                             "image scorer."),
    "style": ("style-transfer", "Restyle the image INPUT like the --style image: candidate editing "
                                "instructions are applied by the --editor pipeline and scored by style (Gram) "
                                "and content distances."),
}
COMMAND_OF = {task: command for command, (task, _) in COMMANDS.items()}


def _common_options() -> list:
    """The input and settings of a new job, shared by every command that makes one."""
    return [
        click.argument("input_file", metavar="INPUT", required=False, type=click.Path(dir_okay=False)),
        click.option("--sample", type=click.Choice(sorted(SAMPLES)),
                     help="Use a bundled sample photo instead (for a video task: a pan across it)."),
        *settings_options(),
        click.option("--llm", default="embedded", show_default=True,
                     help="'embedded' (llama.cpp, in process), 'openai:MODEL@BASE_URL' (any OpenAI-compatible "
                          "server: vLLM, SGLang, llama.cpp, Ollama, `mils llm-server`), 'gguf:PATH', a Hugging "
                          "Face model id / local path (transformers), or 'py:MODULE:FACTORY'."),
        click.option("--scorer", default="embedded", show_default=True,
                     help="'embedded', 'open_clip:ARCH[@PRETRAINED]', 'clap:ID_OR_PATH' or 'py:MODULE:FACTORY'."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]


def _where(kind: TaskKind) -> str:
    return f"`mils {COMMAND_OF[kind.name]}`" if kind.name in COMMAND_OF else f"--task {kind.name}"


def _request(kind: TaskKind, params: dict, where=_where):
    """The command's parameters as a checked worker.submission.JobRequest."""
    from worker.media import read_media_file
    from worker.models.registry import resolve
    from worker.submission import attachment, job_request, task_input

    options, sources = split_given(kind, params, where)
    input_file, sample = params.pop("input_file"), params.pop("sample")
    if kind.input_kind == "text":  # the input is the prompt itself
        if input_file is None or sample is not None:
            raise click.UsageError("give the PROMPT text (and no --sample)")
        media, info = task_input(kind, prompt=input_file)
    elif (input_file is None) == (sample is None):
        raise click.UsageError(f"give an INPUT {kind.input_kind} file or --sample NAME (one of them)")
    elif input_file:
        media, info = task_input(kind, data=read_media_file(input_file), name=Path(input_file).name)
    else:
        media, info = task_input(kind, sample=sample)
    attachments = {}
    for name, (path, sample_name) in sources.items():
        if path and sample_name:
            raise click.UsageError(f"give --{name} FILE or --{name}-sample NAME (one of them)")
        if path or sample_name:
            attachments[name] = (attachment(data=read_media_file(path), name=Path(path).name) if path
                                 else attachment(sample=sample_name))
    files = read_user_files(kind.name, params)
    # The operator's command line: a registry name (MILS_MODELS) or any raw spec.
    llm_name, llm = resolve("generator", params.pop("llm"), raw_allowed=True)
    scorer_name, scorer = resolve("scorer", params.pop("scorer"), raw_allowed=True)
    return job_request(kind.name, media, info, generator=llm, scorer=scorer, overrides=params,
                       options=options, attachments=attachments, files=files, generator_name=llm_name,
                       scorer_name=scorer_name)


def _run_here(request, as_json: bool) -> None:
    """Store the job, run every step in this process with a progress bar, print the result."""
    from tqdm import tqdm

    from worker.runner import run_in_process
    from worker.store.db import open_store
    from worker.submission import store_job

    sessions = open_store()
    with sessions.begin() as session:
        job_id = store_job(session, request)[0].id  # its steps run here, not from a queue
    quiet_libraries()
    steps_out = []
    # No bar when stderr is not a terminal (disable=None).
    with tqdm(total=request.settings.steps + 1, desc=f"job {job_id}", unit="step", file=sys.stderr,
              disable=None) as bar:
        for result in run_in_process(sessions, job_id):
            steps_out.append({"step": result.step, "best_score": result.best.score,
                              "best_text": result.best.text, "mean_topk": result.mean_topk})
            bar.update(1)
            bar.set_postfix(step=result.step, best=f"{result.best.score:.4f}")
    if not steps_out:
        raise click.ClickException(f"job {job_id} ran no step")
    best = steps_out[-1]
    if as_json:
        click.echo(json.dumps({request.kind.output: best["best_text"], "score": best["best_score"],
                               "steps": steps_out, "job_id": job_id}, indent=2))
    else:
        click.echo(best["best_text"])


def _run_command(command: str, task: str, doc: str):
    kind = TASK_KINDS[task]

    def run(as_json, **params) -> None:
        _run_here(_request(kind, params), as_json)

    run.__doc__ = doc
    decorators = _common_options() + kind_options(kind) + attachment_options(kind) + user_file_options(kind)
    return cli.command(command)(apply(user_errors(run), decorators))


for _command, (_task, _doc) in COMMANDS.items():
    _run_command(_command, _task, _doc)


def submit(task, priority, as_json, **params) -> None:
    """Queue a job for the workers (`mils worker`); prints its id."""
    from worker.store.db import open_store
    from worker.submission import submit as submit_job

    if task == "arithmetic":
        raise click.UsageError("an arithmetic job combines several inputs: "
                               "use `mils arithmetic FILE... --text TEXT --queue`")
    request = _request(TASK_KINDS[task], params, where=lambda kind: f"--task {kind.name}")
    job_id = submit_job(open_store(), request, priority=priority)
    click.echo(json.dumps({"job_id": job_id}) if as_json else job_id)


cli.command("submit")(apply(user_errors(submit), [
    click.option("--task", type=click.Choice(list(TASK_KINDS)), default="image-caption", show_default=True),
    click.option("--priority", type=click.Choice(["low", "normal", "high"]), default="normal", show_default=True,
                 help="Its place in the queue: higher goes first (batches run at low unless told otherwise)."),
    *_common_options(), *kind_options(None), *attachment_options(None), *user_file_options(None)]))


def arithmetic(files, texts, samples, steps, candidates, top_k, seed, llm, scorer, audio_scorer, queued, as_json,
               **options) -> None:
    """Combine inputs across modalities: each image or sound FILE is captioned by MILS (its own
    job), the LLM combines the captions and texts into one prompt, and it is rendered."""
    from worker.kinds.arithmetic import part_from_file, part_from_text
    from worker.media import read_media_file
    from worker.media.samples import sample_input
    from worker.runner import run_in_process
    from worker.store.db import open_store
    from worker.submission import arithmetic_request, store_arithmetic, submit_arithmetic

    kind = TASK_KINDS["arithmetic"]
    options, _ = split_given(kind, options, _where)
    parts = [part_from_file(read_media_file(f), os.path.basename(f)) for f in files]
    parts += [part_from_file(*sample_input(name, "image")) for name in samples]
    parts += [part_from_text(t) for t in texts]
    request = arithmetic_request(parts, generator=llm, scorer=scorer, audio_scorer=audio_scorer,
                                 overrides={"steps": steps, "candidates": candidates, "top_k": top_k, "seed": seed},
                                 options=options)
    sessions = open_store()
    if queued:  # the arithmetic job waits for its parents on the queue
        job_id, parent_ids = submit_arithmetic(sessions, request)
        click.echo(json.dumps({"job_id": job_id, "parents": parent_ids}) if as_json else job_id)
        return
    with sessions.begin() as session:
        job, parents, _ = store_arithmetic(session, request)  # their steps run here, not from a queue
        job_id, parent_ids = job.id, [p.id for p in parents]
    quiet_libraries()
    try:
        for parent_id in parent_ids:
            for _ in run_in_process(sessions, parent_id):
                pass
    finally:
        # After a failed part, this marks it failed too. Only the summaries are kept: a step's
        # candidates carry their renders.
        steps = [{"step": r.step, "best_score": r.best.score, "best_text": r.best.text}
                 for r in run_in_process(sessions, job_id)]
    if not steps:
        raise click.ClickException(f"job {job_id} ran no step (a part's job failed? see `mils status`)")
    best = steps[-1]
    if as_json:
        click.echo(json.dumps({"prompt": best["best_text"], "score": best["best_score"], "job_id": job_id,
                               "parents": parent_ids, "steps": steps}, indent=2))
    else:
        click.echo(best["best_text"])


cli.command("arithmetic")(apply(user_errors(arithmetic), [
    click.argument("files", nargs=-1, type=click.Path(dir_okay=False)),
    click.option("--text", "texts", multiple=True,
                 help="A text part (repeatable); parts keep their order: files, samples, texts."),
    click.option("--sample", "samples", multiple=True, type=click.Choice(sorted(SAMPLES)),
                 help="A bundled photo as a part."),
    click.option("--steps", type=int, help="Optimization steps of the combined prompt."),
    click.option("--candidates", type=int, help="New prompts per step (N)."),
    click.option("--top-k", type=int, help="Best prompts kept and shown to the LLM (K)."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--llm", default="embedded", show_default=True, help="The LLM of every step (parts and combination)."),
    click.option("--scorer", default="embedded", show_default=True, help="The image-text scorer (image parts, renders)."),
    click.option("--audio-scorer", help="The audio-text scorer of audio parts: clap:ID_OR_PATH."),
    *kind_options(TASK_KINDS["arithmetic"]),
    click.option("--queue", "queued", is_flag=True, help="Queue the jobs for the workers instead of running them here."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
]))
