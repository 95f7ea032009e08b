"""The one way a new job is checked, stored and queued: the CLI and the web only parse their
input (arguments, form fields, uploads) into the calls below.

    task_input, attachment     the input media of a kind, from bytes, a bundled sample or a prompt
    user_files                 the user's prompt template and initial pool (files), checked
    job_request                everything else checked: settings, models, options; nothing stored yet
    checked_settings           that check alone (a batch's settings, before its items)
    store_job, submit          store it (and queue its first step)
    arithmetic_request, store_arithmetic, submit_arithmetic
                               the same for an arithmetic job and the captioning jobs of its parts

Errors are MediaError (the input), SettingsError (settings, options), ModelLoadError (a model
spec), all raised before anything is stored; BrokerError after the commit means "stored, not queued".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from worker import config, jobs
from worker.core import Settings, SettingsError
from worker.jobs import StepMessage
from worker.kinds import TASK_KINDS, TaskKind, get_kind, job_settings
from worker.kinds.arithmetic import KIND as ARITHMETIC
from worker.kinds.arithmetic import Part
from worker.kinds.audio import KIND as AUDIO
from worker.kinds.image import check_image
from worker.kinds.user_files import check_pool, check_prompt, check_task
from worker.media import Media, MediaError
from worker.media.samples import SAMPLES, sample_input
from worker.models import check_specs
from worker.queue import priority_value
from worker.store.jobs import create_job, store_artifact
from worker.store.pools import store_pool, pool_version
from worker.store.schema import Job
from worker.store.tokens import check_quota


def _sample(name: str, input_kind: str) -> tuple[bytes, str]:
    if name not in SAMPLES:
        raise MediaError(f"unknown sample {name!r}; known: {', '.join(sorted(SAMPLES))}")
    return sample_input(name, input_kind)


def task_input(kind: TaskKind, *, data: bytes | None = None, name: str = "input", sample: str | None = None,
               prompt: str | None = None) -> tuple[Media, dict]:
    """The job's input as its kind checks it (by decoding, whatever the name says): the prompt for
    a text kind, else a bundled sample's or the given bytes. Returns the media and its input_info."""
    if kind.input_kind == "text":
        return kind.check_input((prompt or "").encode(), "prompt.txt")
    if sample:
        return kind.check_input(*_sample(sample, kind.input_kind))
    return kind.check_input(data or b"", name)


def attachment(*, data: bytes | None = None, name: str = "attachment", sample: str | None = None) -> Media:
    """An attachment (e.g. a style image) from bytes or a bundled sample photo, checked as an image."""
    if sample:
        data, name = _sample(sample, "image")
    return check_image(data or b"", name)[0]


PROMPT_MEDIA_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class UserFiles:
    """The user's prompt template and initial pool of a job, or of every job of a batch
    (worker.kinds.user_files), by their stored hashes; None: the task's own. `prompt` and `pool`
    hold the content while it is still to be stored (a new submission); a batch's later items
    name what the batch stored."""

    prompt_sha256: str | None = None
    pool_sha256: str | None = None  # the pool's version (worker.store.pools.pool_version)
    prompt: str | None = field(default=None, repr=False)
    pool: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def given(self) -> bool:
        return bool(self.prompt_sha256 or self.pool_sha256)

    def store(self, session: Session) -> None:
        """Store the content this holds, once per content hash (a no-op for what is stored)."""
        if self.prompt is not None:
            store_artifact(session, Media(self.prompt.encode(), PROMPT_MEDIA_TYPE, "prompt.txt"))
        if self.pool is not None:
            store_pool(session, self.pool)


def user_files(task: str, *, prompt: tuple[bytes, str] | None = None,
               pool: tuple[bytes, str] | None = None) -> UserFiles:
    """A prompt file and a pool file, each (bytes, file name) or None, checked for `task`
    (worker.kinds.user_files); SettingsError names the file and what is wrong."""
    check_task(task, prompt=prompt is not None, pool=pool is not None)
    template = check_prompt(*prompt) if prompt is not None else None
    texts = tuple(check_pool(*pool)) if pool is not None else None
    return UserFiles(prompt_sha256=hashlib.sha256(template.encode()).hexdigest() if template is not None else None,
                     pool_sha256=pool_version(texts) if texts is not None else None, prompt=template, pool=texts)


@dataclass(frozen=True)
class JobRequest:
    """A new job, checked; nothing is stored until `store_job` or `submit`."""

    task: str
    media: Media
    input_info: dict
    settings: Settings
    options: dict
    generator: str
    scorer: str
    attachments: dict[str, Media] = field(default_factory=dict)
    files: UserFiles = UserFiles()
    generator_name: str | None = None  # the registry's names the specs were chosen by (None: raw specs)
    scorer_name: str | None = None

    @property
    def kind(self) -> TaskKind:
        return TASK_KINDS[self.task]


def job_request(task: str, media: Media, input_info: dict, *, generator: str = "embedded",
                scorer: str = "embedded", overrides: Mapping[str, Any] | None = None,
                options: Mapping[str, Any] | None = None, attachments: Mapping[str, Media] | None = None,
                files: UserFiles = UserFiles(), generator_name: str | None = None,
                scorer_name: str | None = None) -> JobRequest:
    """Check a job's settings (`overrides`: None = the task's default for this generator), model
    specs and options against its kind; returns the request, or raises before anything is stored.
    `files`: the user's prompt and pool (`user_files`); `generator_name`, `scorer_name`: the
    registry's names of the specs (worker.models.registry.resolve), recorded with the job."""
    attachments = dict(attachments or {})
    settings, checked = checked_settings(task, generator, scorer, overrides, options, attachments)
    return JobRequest(task, media, input_info, settings, checked, generator, scorer, attachments, files,
                      generator_name, scorer_name)


def checked_settings(task: str, generator: str, scorer: str, overrides: Mapping[str, Any] | None = None,
                     options: Mapping[str, Any] | None = None, attachments: Mapping[str, Media] | None = None,
                     ) -> tuple[Settings, dict]:
    """The resolved settings and checked options of a job of `task` on these models (a batch's
    too), or SettingsError / ModelLoadError before anything is stored."""
    kind = get_kind(task)
    settings = job_settings(task, generator, scorer, **(overrides or {}))
    check_specs(generator, scorer)
    kind.check_scorer(scorer)
    return settings, kind.job_options(options or {}, attachments)


def store_job(session: Session, request: JobRequest, parents: Sequence[tuple[int, int]] = (), *,
              priority: int = 0, held: bool = False, token_id: int | None = None) -> tuple[Job, list[StepMessage]]:
    """Store the request as a queued job in the caller's transaction, at `priority` (-1, 0, 1;
    worker.queue.PRIORITIES); returns it with its first step, to send after the commit (the
    in-process runner runs it instead). `held`: no step to send now (see worker.batches).
    `token_id`: the API token that submits it, its owner (None: the CLI)."""
    request.files.store(session)
    job = create_job(session, task=request.task, settings=request.settings, generator=request.generator,
                     scorer=request.scorer, media=request.media, options=request.options,
                     input_info=request.input_info, attachments=request.attachments, parents=parents,
                     priority=priority, prompt_sha256=request.files.prompt_sha256,
                     pool_sha256=request.files.pool_sha256, generator_name=request.generator_name,
                     scorer_name=request.scorer_name, token_id=token_id)
    return job, jobs.submitted(session, job, held=held)


def submit(sessions: sessionmaker[Session], request: JobRequest, *, priority: str | int | None = None,
           token_id: int | None = None) -> int:
    """Store the job, then queue its first step at `priority` ("low", "normal" (None), "high");
    returns the job id. `token_id`: the API token that submits it (its owner; None: the CLI).
    SettingsError for an unknown priority; QuotaExceeded (nothing stored) when the token has
    MILS_TOKEN_MAX_ACTIVE jobs in flight. A BrokerError after this means the job is stored, not
    queued (its message names the id to resume)."""
    try:
        value = priority_value(priority)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    with sessions.begin() as session:
        check_quota(session, token_id, 1, config.token_max_active())
        job, messages = store_job(session, request, priority=value, token_id=token_id)
    jobs.send(messages)  # after the commit: the step must find its job
    return job.id


# --------------------------------------------------------------------------- cross-modal arithmetic


@dataclass(frozen=True)
class ArithmeticRequest:
    """An arithmetic job and the captioning jobs of its media parts, checked, not stored."""

    parent_requests: tuple[tuple[int, JobRequest], ...]  # (position in the parts, request)
    manifest: tuple[dict, ...]  # per part: {"text": ...} or a parent's {"kind", "name"} ("job" set when stored)
    request: JobRequest  # the arithmetic job itself (its input is made when stored)


def arithmetic_request(parts: Sequence[Part], *, generator: str = "embedded", scorer: str = "embedded",
                       audio_scorer: str | None = None, overrides: Mapping[str, Any] | None = None,
                       options: Mapping[str, Any] | None = None,
                       names: Mapping[str, str | None] | None = None) -> ArithmeticRequest:
    """Check an arithmetic job of `parts` (images, recordings, texts, in order) and its parts'
    captioning jobs (same LLM and seed; images scored by `scorer`, recordings by `audio_scorer`).
    `names`: the registry's names of the specs, by "generator", "scorer", "audio_scorer"."""
    names = names or {}
    check_specs(generator, scorer)
    if audio_scorer:
        check_specs(generator, audio_scorer)
    settings = job_settings(ARITHMETIC.name, generator, **(overrides or {}))
    checked = ARITHMETIC.job_options(options or {})
    if len(parts) < 2:
        raise SettingsError("arithmetic combines at least two inputs")
    if any(p.kind == "audio" for p in parts) and not audio_scorer:
        raise SettingsError("an audio part needs an audio-text scorer: --audio-scorer clap:ID_OR_PATH")
    if audio_scorer:
        AUDIO.check_scorer(audio_scorer)
    parents, manifest = [], []
    for position, part in enumerate(parts):
        if part.kind == "text":
            manifest.append({"text": part.text})
            continue
        image = part.kind == "image"
        parents.append((position, job_request(part.task, part.media, part.info, generator=generator,
                                              scorer=scorer if image else audio_scorer,
                                              overrides={"seed": settings.seed},
                                              generator_name=names.get("generator"),
                                              scorer_name=names.get("scorer" if image else "audio_scorer"))))
        manifest.append({"kind": part.kind, "name": part.media.name})
    ARITHMETIC.check_scorer(scorer)
    # Its input, the manifest, names the parents' ids: it is made when they are stored.
    placeholder = Media(data=b"", media_type="application/json", name="arithmetic.json")
    request = JobRequest(ARITHMETIC.name, placeholder, {}, settings, checked, generator, scorer,
                         generator_name=names.get("generator"), scorer_name=names.get("scorer"))
    return ArithmeticRequest(tuple(parents), tuple(manifest), request)


def store_arithmetic(session: Session, request: ArithmeticRequest, *,
                     token_id: int | None = None) -> tuple[Job, list[Job], list[StepMessage]]:
    """Store the parts' captioning jobs and the arithmetic job built on them (linked in order), all
    owned by `token_id`; returns (the arithmetic job, its parents, their first steps to send after
    the commit)."""
    manifest = [dict(part) for part in request.manifest]
    parents, messages = [], []
    for position, parent_request in request.parent_requests:
        parent, first = store_job(session, parent_request, token_id=token_id)
        parents.append((position, parent))
        messages += first
        manifest[position] = {"job": parent.id, **manifest[position]}
    data = json.dumps({"parts": manifest}, sort_keys=True).encode()
    media = dataclasses.replace(request.request.media, data=data)
    job, first = store_job(session, dataclasses.replace(request.request, media=media, input_info={"parts": manifest}),
                           parents=[(position, parent.id) for position, parent in parents], token_id=token_id)
    return job, [parent for _, parent in parents], messages + first


def submit_arithmetic(sessions: sessionmaker[Session], request: ArithmeticRequest, *,
                      token_id: int | None = None) -> tuple[int, list[int]]:
    """Store the arithmetic job with its parents and queue them all (the arithmetic job waits for
    its parents by itself); returns (its id, the parents' ids). `token_id` as for `submit`: the
    quota counts the parents too."""
    with sessions.begin() as session:
        check_quota(session, token_id, len(request.parent_requests) + 1, config.token_max_active())
        job, parents, messages = store_arithmetic(session, request, token_id=token_id)
    jobs.send(messages, label="arithmetic job")
    return job.id, [parent.id for parent in parents]
