"""A new job from a web request (the form or the API): task, input, models, settings, options."""

from __future__ import annotations

from collections.abc import Mapping

from flask import abort
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from web.db import session_factory
from web.params import float_arg, int_arg
from worker.core.settings import MAX_CANDIDATES, MAX_STEPS
from worker.media import MAX_FILE_BYTES, Media, MediaError
from worker.samples import SAMPLES, sample_input
from worker.models import check_specs
from worker.task_kinds import TASK_KINDS, TaskKind, job_settings
from worker.tasks import submit


def task_kind(task: str) -> TaskKind:
    if task not in TASK_KINDS:
        abort(400, f"unknown task {task!r}; known: {', '.join(TASK_KINDS)}")
    return TASK_KINDS[task]


def media_from_request(kind: TaskKind, upload: FileStorage | None, sample: str | None,
                       prompt: str | None = None) -> tuple[Media, dict]:
    """The uploaded file (checked by decoding it, whatever its name says), a bundled sample, or
    for a text task the prompt, as the task kind's input; returns the media and its input_info."""
    if kind.input_kind == "text":
        if not prompt or not prompt.strip():
            abort(400, f"{kind.name} needs a prompt (the text the picture should match)")
        return kind.check_input(prompt.encode(), "prompt.txt")
    has_upload = upload is not None and upload.filename != ""
    if has_upload == bool(sample):
        abort(400, f"send an {kind.input_kind} file or the name of a bundled sample (one of them)")
    if sample:
        if sample not in SAMPLES:
            abort(400, f"unknown sample {sample!r}; known: {', '.join(sorted(SAMPLES))}")
        return kind.check_input(*sample_input(sample, kind.input_kind))
    # The client's file name is only a label: made safe, never used as a path.
    return kind.check_input(*_uploaded(upload, "upload"))


def _uploaded(upload: FileStorage, label: str) -> tuple[bytes, str]:
    data = upload.stream.read(MAX_FILE_BYTES + 1)
    name = secure_filename(upload.filename or "") or label
    if not data:
        raise MediaError(f"{name}: the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise MediaError(f"{name}: over the {MAX_FILE_BYTES}-byte limit")
    return data, name


def attachments_from(kind: TaskKind, upload: FileStorage | None, sample: str | None) -> dict[str, Media]:
    """The style image of a style-transfer job (an upload or a bundled sample); nothing for others."""
    if "style_sha256" not in kind.options:
        return {}
    has_upload = upload is not None and upload.filename != ""
    if has_upload and sample:
        abort(400, "send a style image file or a bundled sample as the style (one of them)")
    if sample:
        if sample not in SAMPLES:
            abort(400, f"unknown sample {sample!r}; known: {', '.join(sorted(SAMPLES))}")
        data, name = sample_input(sample, "image")
    elif has_upload:
        data, name = _uploaded(upload, "style")
    else:
        return {}  # the kind's options say what is missing
    return {"style": TASK_KINDS["image-caption"].check_input(data, name)[0]}


def options_from(fields: Mapping[str, str]) -> dict:
    """Task options sent with a submission (unset ones None); the kind checks them."""
    return {"frames": int_arg(fields, "frames", low=1), "frame_mode": fields.get("frame_mode") or None,
            "clip_seconds": int_arg(fields, "clip_seconds", low=1), "renderer": fields.get("renderer") or None,
            "size": int_arg(fields, "size", low=1), "render_steps": int_arg(fields, "render_steps", low=1),
            "guidance": float_arg(fields, "guidance"), "editor": fields.get("editor") or None,
            "image_guidance": float_arg(fields, "image_guidance"),
            "content_weight": float_arg(fields, "content_weight")}


def settings_from(fields: Mapping[str, str], llm: str) -> dict:
    """The optional settings of a submission, parsed; unset ones are None (the task's default)."""
    return {
        "steps": int_arg(fields, "steps", low=1, high=MAX_STEPS),
        "candidates": int_arg(fields, "candidates", low=1, high=MAX_CANDIDATES),
        "top_k": int_arg(fields, "top_k", low=1, high=MAX_CANDIDATES),
        "seed": int_arg(fields, "seed", 0),
        "patience": int_arg(fields, "patience", low=1),
        "epsilon": float_arg(fields, "epsilon"),
    }


def submit_job(*, kind: TaskKind, media: Media, input_info: dict, llm: str, scorer: str, overrides: dict,
               options: dict, attachments: dict[str, Media] | None = None) -> int:
    settings = job_settings(kind.name, llm, **overrides)
    return submit(session_factory(), task=kind.name, media=media, generator=llm, scorer=scorer,
                  settings=settings, options=options, input_info=input_info, attachments=attachments)


def submit_arithmetic(fields: Mapping[str, str], uploads: list[FileStorage], llm: str) -> int:
    """An arithmetic job from its parts: uploaded images or recordings (in order), then texts
    (the `text` fields, or the lines of one). Its parents are queued with it."""
    from worker.arithmetic import create_arithmetic_job, enqueue_arithmetic, part_from_file, part_from_text
    from worker.tasks import job_queue

    getlist = getattr(fields, "getlist", lambda name: [fields[name]] if name in fields else [])
    parts = [part_from_file(*_uploaded(u, "part")) for u in uploads if u.filename]
    parts += [part_from_text(line) for text in getlist("text") for line in text.splitlines() if line.strip()]
    scorer, audio_scorer = fields.get("scorer") or "embedded", fields.get("audio_scorer") or None
    check_specs(llm, scorer)
    if audio_scorer:
        check_specs(llm, audio_scorer)
    kind = TASK_KINDS["arithmetic"]
    settings = job_settings("arithmetic", llm, **settings_from(fields, llm))
    options = kind.job_options({k: v for k, v in options_from(fields).items() if k in kind.options})
    Session = session_factory()
    with Session.begin() as session:
        job, parents = create_arithmetic_job(session, parts=parts, llm=llm, scorer=scorer,
                                             audio_scorer=audio_scorer, settings=settings, options=options)
        arithmetic, parent_queues = (job.id, job_queue(job)), [(p.id, job_queue(p)) for p in parents]
    enqueue_arithmetic(arithmetic, parent_queues)  # the arithmetic job waits for its parents by itself
    return arithmetic[0]
