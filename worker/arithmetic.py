"""Cross-modal arithmetic: turn each input (an image, a sound recording, or a text) into text
with MILS, have the LLM combine the texts into one prompt, and render it.

An arithmetic job is a text-to-image job whose targets are several texts. Its image and audio
parts become their own captioning jobs (its parents, linked in `job_links`); its first step
runs once they have all succeeded (worker.jobs raises WaitingForParents until then, and the
Celery task looks again a few seconds later), and fails if one of them fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.orm import Session

from worker.core import Settings, SettingsError
from worker.jobs import create_job
from worker.media import Media, MediaError
from worker.store.models import Job, JobLink
from worker.task_kinds import TASK_KINDS, job_settings


@dataclass(frozen=True)
class Part:
    """One input: media to invert (kind "image" or "audio"), or a text used as it is."""

    kind: str
    media: Media | None = None
    info: dict | None = None
    text: str | None = None


def part_from_file(data: bytes, name: str) -> Part:
    """An image or a sound recording, recognised by decoding it (its name is only a label)."""
    errors = []
    for kind, task in (("image", "image-caption"), ("audio", "audio-caption")):
        try:
            media, info = TASK_KINDS[task].check_input(data, name)
            return Part(kind, media, info)
        except MediaError as exc:
            errors.append(str(exc))
    raise MediaError(f"{name}: neither an image nor a sound recording we can read ({'; '.join(errors)})")


def part_from_text(text: str) -> Part:
    text = " ".join(text.split())
    if len(text) < 2:
        raise MediaError("an arithmetic text part is empty")
    return Part("text", text=text)


def create_arithmetic_job(
    session: Session, *, parts: list[Part], llm: str, scorer: str, audio_scorer: str | None,
    settings: Settings, options: dict,
) -> tuple[Job, list[Job]]:
    """Store the captioning jobs of the media parts and the arithmetic job built on them;
    returns (the arithmetic job, its parents) for the caller to queue after the commit."""
    if len(parts) < 2:
        raise SettingsError("arithmetic combines at least two inputs")
    if any(p.kind == "audio" for p in parts) and not audio_scorer:
        raise SettingsError("an audio part needs an audio-text scorer: --audio-scorer clap:ID_OR_PATH")
    if audio_scorer:
        TASK_KINDS["audio-caption"].check_scorer(audio_scorer)
    parents: list[tuple[int, Job]] = []
    manifest = []
    for position, part in enumerate(parts):
        if part.kind == "text":
            manifest.append({"text": part.text})
            continue
        task = "image-caption" if part.kind == "image" else "audio-caption"
        child = create_job(session, task=task, settings=job_settings(task, llm, seed=settings.seed),
                           generator=llm, scorer=scorer if part.kind == "image" else audio_scorer,
                           media=part.media, input_info=part.info)
        parents.append((position, child))
        manifest.append({"job": child.id, "kind": part.kind, "name": part.media.name})
    data = json.dumps({"parts": manifest}, sort_keys=True).encode()
    job = create_job(session, task="arithmetic", settings=settings, generator=llm, scorer=scorer,
                     media=Media(data=data, media_type="application/json", name="arithmetic.json"),
                     options=options, input_info={"parts": manifest})
    for position, parent in parents:
        session.add(JobLink(job_id=job.id, position=position, parent_id=parent.id))
    session.flush()
    return job, [parent for _, parent in parents]


def enqueue_arithmetic(job: tuple[int, str], parents: list[tuple[int, str]]) -> None:
    """Queue the parents and the arithmetic job ((id, queue) pairs), after their commit. Every
    one is tried; if the broker refused any, one BrokerError names the job and what to resume."""
    from worker.tasks import BrokerError, enqueue

    refused = []
    for job_id, queue in [*parents, job]:
        try:
            enqueue(job_id, 0, queue)
        except BrokerError:
            refused.append(job_id)
    if refused:
        raise BrokerError(f"arithmetic job {job[0]} is stored but the broker did not take job(s) "
                          f"{', '.join(map(str, refused))}; run `mils resume ID` for each when it is back", job[0])
