"""The kinds of job MILS runs, one module each, and the registry that lists them.

    base            TaskKind, Option (declared once: the CLI, the form, the API are made from it), JobInput
    prompts         what every task's prompt shares
    image, video, audio, text_to_image, style, arithmetic    one kind each (KIND)
"""

from __future__ import annotations

from typing import Any

from worker.core import Settings, SettingsError
from worker.kinds import arithmetic, audio, image, style, text_to_image, video
from worker.kinds.base import EMBEDDED_FLUENCY, JobInput, Option, TaskKind
from worker.models import is_embedded_generator, served_by_engine

TASK_KINDS: dict[str, TaskKind] = {
    module.KIND.name: module.KIND for module in (image, video, audio, text_to_image, style, arithmetic)
}

__all__ = ["TASK_KINDS", "JobInput", "Option", "TaskKind", "all_options", "default_settings", "get_kind",
           "job_settings"]


def get_kind(task: str) -> TaskKind:
    """The kind named `task`; SettingsError lists the known ones."""
    if task not in TASK_KINDS:
        raise SettingsError(f"unknown task {task!r}; known: {', '.join(TASK_KINDS)}")
    return TASK_KINDS[task]


def all_options() -> dict[str, tuple[Option, list[str]]]:
    """Every option name of every kind, in declaration order, with the first declaration (for
    help texts and bounds) and the kinds that have it; e.g. "size" -> (t2i's, [t2i, style, ...])."""
    found: dict[str, tuple[Option, list[str]]] = {}
    for kind in TASK_KINDS.values():
        for name, option in kind.options.items():
            found.setdefault(name, (option, []))[1].append(kind.name)
    return found


# A serving engine gets a step's N candidates asked for in shares of about this many, as parallel
# requests it decodes together: a step then lasts as long as one share (10 of the paper's 50).
CANDIDATES_PER_REQUEST = 10


def default_settings(task: str, generator: str) -> Settings:
    kind = get_kind(task)
    return kind.embedded_settings if is_embedded_generator(generator) else kind.paper_settings


def job_settings(task: str, generator: str, scorer: str | None = None, **overrides: Any) -> Settings:
    """The task's defaults for this generator (and scorer) with what the user set (None = not
    set); raises SettingsError for values out of range. The resolved settings are stored with the job.
    Captions scored by the embedded scorer get the fluency guard unless fluency_weight is given."""
    settings = default_settings(task, generator).replace(
        **{name: value for name, value in overrides.items() if value is not None})
    if overrides.get("fluency_weight") is None and scorer == "embedded" and get_kind(task).output == "caption":
        settings = settings.replace(fluency_weight=EMBEDDED_FLUENCY)
    if overrides.get("prompts_per_step") is None and served_by_engine(generator):
        settings = settings.replace(prompts_per_step=-(-settings.candidates // CANDIDATES_PER_REQUEST))
    if settings.prompts_per_step > settings.candidates:
        settings = settings.replace(prompts_per_step=settings.candidates)
    return settings
