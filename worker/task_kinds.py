"""The kinds of job MILS runs. A kind is a prompt template, an initial pool, a way to decode
its input, and default settings; the optimizer core and the store are the same for all."""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.core import Settings
from worker.core.optimizer import PromptTemplate
from worker.media import decode_image
from worker.templates import IMAGE_CAPTION


@dataclass(frozen=True)
class TaskKind:
    name: str
    template: PromptTemplate
    pool_file: str  # in worker/data
    decode: Callable[[bytes, str], Any]  # input bytes, name -> what the scorer encodes
    # The paper's settings, for real models on a GPU.
    paper_settings: Settings
    # What the embedded offline models can do on 2 CPU cores in minutes (see README).
    embedded_settings: Settings

    @functools.cached_property
    def pool(self) -> tuple[str, ...]:
        text = (importlib.resources.files("worker") / "data" / self.pool_file).read_text("utf-8")
        return tuple(line.strip() for line in text.splitlines() if line.strip())


TASK_KINDS: dict[str, TaskKind] = {
    "image-caption": TaskKind(
        name="image-caption",
        template=IMAGE_CAPTION,
        pool_file="image_caption_pool.txt",
        decode=decode_image,
        paper_settings=Settings(steps=10, top_k=50, candidates=50, temperature=0.5, top_p=0.9),
        embedded_settings=Settings(
            steps=5, top_k=8, candidates=15, temperature=0.7, top_p=0.9, max_words=15,
            max_generation_rounds=2,
        ),
    ),
}


def default_settings(task: str, generator: str) -> Settings:
    kind = TASK_KINDS[task]
    return kind.embedded_settings if generator == "embedded" else kind.paper_settings


def job_settings(task: str, generator: str, **overrides: Any) -> Settings:
    """The task's defaults for this generator with what the user set (None = not set);
    raises SettingsError for values out of range."""
    settings = default_settings(task, generator).replace(
        **{name: value for name, value in overrides.items() if value is not None})
    if settings.prompts_per_step > settings.candidates:
        settings = settings.replace(prompts_per_step=settings.candidates)
    return settings
