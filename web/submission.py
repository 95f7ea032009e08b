"""A new job from a web request (the form or the API): input media, task, models, settings."""

from __future__ import annotations

from collections.abc import Mapping

from flask import abort
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from web.db import session_factory
from web.params import float_arg, int_arg
from worker.core.settings import MAX_CANDIDATES, MAX_STEPS
from worker.media import MAX_FILE_BYTES, Media, MediaError, image_media, load_image_file
from worker.samples import SAMPLES, sample_path
from worker.task_kinds import TASK_KINDS, job_settings
from worker.tasks import submit


def media_from_request(upload: FileStorage | None, sample: str | None) -> Media:
    """The uploaded image (checked by decoding it, whatever its name says) or a bundled sample."""
    has_upload = upload is not None and upload.filename != ""
    if has_upload == bool(sample):
        abort(400, "send an image file or the name of a bundled sample (one of them)")
    if sample:
        if sample not in SAMPLES:
            abort(400, f"unknown sample {sample!r}; known: {', '.join(sorted(SAMPLES))}")
        return load_image_file(sample_path(sample))
    data = upload.stream.read(MAX_FILE_BYTES + 1)
    # The client's file name is only a label: made safe, never used as a path.
    name = secure_filename(upload.filename or "") or "upload"
    if len(data) > MAX_FILE_BYTES:
        raise MediaError(f"{name}: over the {MAX_FILE_BYTES}-byte limit")
    return image_media(data, name)


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


def submit_job(*, task: str, media: Media, llm: str, scorer: str, overrides: dict) -> int:
    if task not in TASK_KINDS:
        abort(400, f"unknown task {task!r}; known: {', '.join(TASK_KINDS)}")
    settings = job_settings(task, llm, **overrides)
    return submit(session_factory(), task=task, media=media, generator=llm, scorer=scorer, settings=settings)
