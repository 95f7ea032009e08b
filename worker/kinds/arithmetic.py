"""Cross-modal arithmetic: turn each input (an image, a sound recording, or a text) into text
with MILS, have the LLM combine the texts into one prompt, and render it.

An arithmetic job is a text-to-image job whose targets are several texts. Its image and audio
parts become their own captioning jobs (its parents, linked in `job_links`, made by
worker.submission); its first step runs once they have all succeeded (the runner raises
WaitingForParents until then, and the Celery task looks again a few seconds later), and fails if
one of them fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from worker.core import Message, Scored
from worker.kinds import audio, image
from worker.kinds.base import EMBEDDED, PAPER, JobInput, TaskKind
from worker.kinds.prompts import PROMPT_WRITER, answer_rules, scored_lines
from worker.kinds.text_to_image import RENDER_OPTIONS, render_scorer
from worker.media import Media, MediaError


@dataclass(frozen=True)
class ArithmeticTemplate:
    """Cross-modal arithmetic: one picture that combines several inputs, each already turned into
    text by MILS; the scored texts are prompts, judged against every input's text."""

    parts: tuple[str, ...] = ()  # set per job: the inputs' texts, in order
    system: str = PROMPT_WRITER

    def messages(self, examples: Sequence[Scored], n: int, max_words: int) -> list[Message]:
        inputs = "\n".join(f"{i}. {text}" for i, text in enumerate(self.parts, 1))
        user = (
            f"We want one picture that combines all of these:\n{inputs}\n\n"
            "Each prompt below was given to a text-to-image model, and a judge scored how well the "
            "picture matches every item above (the mean); a higher score means a better combination.\n\n"
            f"Prompts, best first (score: prompt):\n{scored_lines(examples)}\n\n"
            f"Write {n} new prompts that would make pictures scoring higher than all of these: one "
            "scene in which every item is visible. "
            + answer_rules("prompt", n, f"at most {max_words} words")
        )
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


def _check_manifest(data: bytes, name: str) -> tuple[Media, dict]:
    """The input of an arithmetic job: which parts it combines, in order (see Part)."""
    try:
        manifest = json.loads(data)
        parts = manifest["parts"]
        if len(parts) < 2 or not all(("job" in p) != ("text" in p) for p in parts):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise MediaError(f"{name}: not an arithmetic manifest ({{'parts': [{{'job': ID}} or {{'text': ...}}, ...]}})") from None
    return Media(data=data, media_type="application/json", name=name), {"parts": parts}


def _part_texts(job: JobInput) -> list[str]:
    """Every part as text, in order: the parent jobs' results and the literal texts."""
    results = iter(job.parent_texts)
    return [next(results) if "job" in part else part["text"] for part in json.loads(job.data)["parts"]]


def _combinations(job: JobInput) -> list[str]:
    texts = [t.rstrip(" .") for t in _part_texts(job)]
    lowered = [t[:1].lower() + t[1:] for t in texts]
    return [" and ".join(texts), ", ".join(texts), "A picture of " + " and ".join(lowered),
            texts[0] + ", with " + " and ".join(lowered[1:]), "One scene showing " + ", ".join(lowered),
            " ".join(texts), texts[0] + " in a scene with " + " and ".join(lowered[1:])]


KIND = TaskKind(
    name="arithmetic",
    input_kind="parts",
    template=ArithmeticTemplate(),
    pool_file="",
    check_input=_check_manifest,
    decode=_part_texts,
    paper_settings=PAPER.replace(max_words=40),
    embedded_settings=EMBEDDED.replace(max_words=30),
    options=RENDER_OPTIONS,
    adapt_scorer=render_scorer,
    pool_from_input=_combinations,
    subject=lambda job: {"parts": tuple(_part_texts(job))},
    output="prompt",
)


@dataclass(frozen=True)
class Part:
    """One input: media to invert (kind "image" or "audio"), or a text used as it is."""

    kind: str
    media: Media | None = None
    info: dict | None = None
    text: str | None = None

    @property
    def task(self) -> str:
        """The task of the job that inverts this part into text."""
        return {"image": image.KIND.name, "audio": audio.KIND.name}[self.kind]


def part_from_file(data: bytes, name: str) -> Part:
    """An image or a sound recording, recognised by decoding it (its name is only a label)."""
    errors = []
    for kind, check in (("image", image.check_image), ("audio", audio.check_audio)):
        try:
            media, info = check(data, name)
            return Part(kind, media, info)
        except MediaError as exc:
            errors.append(str(exc))
    raise MediaError(f"{name}: neither an image nor a sound recording we can read ({'; '.join(errors)})")


def part_from_text(text: str) -> Part:
    text = " ".join(text.split())
    if len(text) < 2:
        raise MediaError("an arithmetic text part is empty")
    return Part("text", text=text)
