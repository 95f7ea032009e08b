"""What a task kind is. A kind is a prompt template, an initial pool, how its input is checked (at
submission) and decoded (in the worker), how the job's scorer is applied to it, its own options,
and default settings; the optimizer core and the store are the same for all.

An `Option` is declared once, on its kind: the CLI, the web form, the API and its OpenAPI
description are made from the declaration.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.core import Scorer, Settings, SettingsError
from worker.core.optimizer import PromptTemplate
from worker.kinds.user_files import UserTemplate
from worker.media import Media
from worker.models import ModelLoadError, has_feature_maps, scorer_modality


@dataclass(frozen=True)
class Option:
    """A task option: its type and default (None: it must be given), and its choices or bounds."""

    default: Any
    help: str
    type: type = int
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    validate: Callable[[Any], None] | None = None  # raises with a message when the value is wrong
    # The value names a model (e.g. a diffusers pipeline): the job's queue depends on it.
    names_model: bool = False

    @property
    def required(self) -> bool:
        return self.default is None

    def check(self, name: str, value: Any) -> Any:
        value = self._typed(name, value)
        if self.validate is not None:
            self.validate(value)
        return value

    def _typed(self, name: str, value: Any) -> Any:
        if self.choices:
            if value not in self.choices:
                raise SettingsError(f"{name} must be one of {', '.join(self.choices)}, not {value!r}")
            return value
        if self.type is str:
            text = str(value).strip()
            if not text:
                raise SettingsError(f"{name} must not be empty")
            return text
        try:
            number = self.type(value)
            if self.type is int and number != float(value):
                raise ValueError
        except (TypeError, ValueError):
            kind = "a whole number" if self.type is int else "a number"
            raise SettingsError(f"{name} must be {kind}, not {value!r}") from None
        if not (self.low is None or number >= self.low) or not (self.high is None or number <= self.high):
            raise SettingsError(f"{name} must be between {self.low} and {self.high}, not {number}")
        return number


@dataclass(frozen=True)
class JobInput:
    """What a kind's worker-side functions get: the stored input and the job's choices."""

    data: bytes
    name: str
    options: Mapping[str, Any]
    settings: Settings
    # Other stored media the job names (attachment "style" -> its bytes).
    attachments: Mapping[str, bytes] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)  # what the input is (jobs.input_info)
    # The results of the jobs this one is built on, in order (cross-modal arithmetic).
    parent_texts: tuple[str, ...] = ()
    # The user's prompt template and initial pool (worker.kinds.user_files), when the job has them;
    # the pool is read only for step 0.
    prompt: str | None = None
    pool: Sequence[str] | None = None


def _same_scorer(scorer: Scorer, _job: JobInput) -> Scorer:
    return scorer


@dataclass(frozen=True)
class TaskKind:
    name: str
    input_kind: str  # "image" | "video" | "audio" | "text" | "parts": what the CLI, the form and the API accept
    template: PromptTemplate
    pool_file: str  # in worker/data ("" when the pool comes from the input, pool_from_input)
    # At submission: check the input bytes; returns the stored media and what it is (input_info).
    check_input: Callable[[bytes, str], tuple[Media, dict]]
    # In the worker: the job's input -> what the scorer encodes.
    decode: Callable[[JobInput], Any]
    # The paper's settings, for real models on a GPU.
    paper_settings: Settings
    # What the embedded offline models can do on 2 CPU cores in minutes (see README).
    embedded_settings: Settings
    options: Mapping[str, Option] = field(default_factory=dict)
    # More input images the job needs, by name, with what each is (e.g. "style": "a style image").
    attachments: Mapping[str, str] = field(default_factory=dict)
    # The job's scorer (by its spec) made fit for this input, e.g. applied frame by frame.
    adapt_scorer: Callable[[Scorer, JobInput], Scorer] = _same_scorer
    # The initial pool from the input (e.g. plain rewrites of a prompt), instead of pool_file.
    pool_from_input: Callable[[JobInput], Sequence[str]] | None = None
    # Fields of the template set from the job's input (e.g. subject="a 12-second video").
    subject: Callable[[JobInput], dict[str, Any]] | None = None
    # What the result is called (the CLI's --json key).
    output: str = "caption"
    # What the job's scorer must compare texts with: "image", "audio" or "feature maps" (a CNN's).
    scorer_needs: str = "image"

    @functools.cached_property
    def pool(self) -> tuple[str, ...]:
        text = (importlib.resources.files("worker") / "data" / self.pool_file).read_text("utf-8")
        return tuple(line.strip() for line in text.splitlines() if line.strip())

    def initial_pool(self, job: JobInput) -> Sequence[str]:
        """The texts step 0 scores: the user's pool file, else the kind's (from its input or its file)."""
        if job.pool is not None:
            return job.pool
        return self.pool if self.pool_from_input is None else self.pool_from_input(job)

    def template_for(self, job: JobInput) -> PromptTemplate:
        """The job's prompt: the user's template, else the kind's (with the job's subject)."""
        if job.prompt is not None:
            return UserTemplate(job.prompt)
        if self.subject is None:
            return self.template
        return dataclasses.replace(self.template, **self.subject(job))

    def job_options(self, given: Mapping[str, Any], attachments: Mapping[str, Media] | None = None) -> dict[str, Any]:
        """The kind's options with what the user gave (None = not given), checked; SettingsError
        names an unknown, missing or wrong option, or a missing attachment."""
        unknown = sorted(k for k, v in given.items() if v is not None and k not in self.options)
        unknown += sorted(f"{k} (an attachment)" for k in (attachments or {}) if k not in self.attachments)
        if unknown:
            raise SettingsError(f"{self.name} has no option {', '.join(unknown)}")
        options = {}
        for name, option in self.options.items():
            if given.get(name) is not None:
                options[name] = option.check(name, given[name])
            elif option.required:
                raise SettingsError(f"{self.name} needs {option.help}")
            else:
                options[name] = option.default
        for name, what in self.attachments.items():
            if name not in (attachments or {}):
                raise SettingsError(f"{self.name} needs {what} (the CLI's --{name}, the API's {name}_file)")
        return options

    def model_specs(self, options: Mapping[str, Any]) -> list[str]:
        """The models the job's options name (e.g. its renderer), besides its LLM and scorer."""
        return [options[name] for name, option in self.options.items() if option.names_model and options.get(name)]

    def check_scorer(self, spec: str) -> None:
        """Refuse (ModelLoadError) a scorer spec this kind cannot use, before a job is stored."""
        modality = scorer_modality(spec)
        if self.scorer_needs == "image" and modality == "audio":
            raise ModelLoadError(f"{spec!r} is an audio-text scorer; this task scores pictures "
                                 "(--scorer embedded or open_clip:ARCH[@PRETRAINED])")
        if self.scorer_needs == "audio" and modality == "image":
            raise ModelLoadError(
                f"{self.name} needs an audio-text scorer: --scorer clap:ID_OR_PATH (e.g. "
                "clap:laion/clap-htsat-unfused); the embedded and open_clip scorers see images only, "
                "and no CLAP weights are installed offline (see README)")
        if self.scorer_needs == "feature maps" and not has_feature_maps(spec):
            raise ModelLoadError(f"{self.name} measures style and content with the embedded scorer's CNN "
                                 "(EfficientNet-Lite0 activations): use --scorer embedded")


PAPER = Settings(steps=10, top_k=50, candidates=50, temperature=0.5, top_p=0.9)
# The fluency guard's weight for captions scored by the embedded scorer: one defect costs more
# than the largest gain a degenerate caption won over its bootstrap before the guard (0.098,
# "There is a cat by cat." over "There is a tabby cat on a rug.", BENCHMARKS.md section 1).
EMBEDDED_FLUENCY = 0.15
# The embedded LLM (0.5B) copies the wording it is shown: with a plain top K, by step 5 six to
# eight of its 8 texts were one wording with a word changed (BENCHMARKS.md, "The embedded scorer's eyes and the fluency guard"). Texts
# sharing more than half their words with a better one give way to others (Settings.top_k_overlap).
EMBEDDED = Settings(steps=5, top_k=8, candidates=15, temperature=0.7, top_p=0.9, max_words=15,
                    max_generation_rounds=2, top_k_overlap=0.5)
