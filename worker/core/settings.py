"""Settings of one optimization job, each declared once.

A field of `Settings` is declared with `declare(...)`: its default, its bounds (checked when a
Settings is made, with the error message made from them) and, for the settings a user may set,
where (`surfaces`) and in what words. The CLI's options (worker.cli.options), the web forms
(web.forms), the API's parsing (web.submission) and its OpenAPI description (web.openapi) are made
from these declarations, so a field declared here appears on every surface it names.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """A setting is out of range; the message says which and why."""


# Far above the paper (10 steps, 50 candidates): bounds against a typo that would run for days.
MAX_STEPS = 1000
MAX_CANDIDATES = 1000

# Where a user sets a setting: the CLI (`mils caption ...`, `mils batch submit`), the web forms
# (a job's and a batch's) and the JSON API with its OpenAPI description.
SURFACES = ("cli", "form", "api")


@dataclass(frozen=True)
class Setting:
    """How one Settings field is checked, and shown where users set it.

    Bounds: `low` and `high` are inclusive; `low_open` refuses `low` itself; `high` may name
    another setting (prompts_per_step <= candidates). A setting whose default is None may be left
    unset. `name`, `type` (int or float) and `default` are filled in from the field by `declared()`.

    Wording: `help` says what it is (the CLI's help); a surface's own text replaces it where given
    (None: `help`; "": no text there). `form_help`/`batch_form_help` may name the image-caption
    kind's paper and embedded defaults as {paper} and {embedded}.
    """

    help: str = ""
    low: float | None = None
    high: float | str | None = None
    low_open: bool = False
    surfaces: tuple[str, ...] = ()  # a subset of SURFACES; () = set only in code
    label: str = ""  # the forms' label (empty: from the name)
    # The job form's field starts with: "" (empty: the task's default), "embedded" (the image-caption
    # kind's embedded default) or "declared" (the default declared here).
    form_default: str = ""
    # The default is every task's (the seed): a new job's CLI option, form field and API field show
    # it; a batch's leave it unset, so an existing batch keeps its own.
    show_default: bool = False
    shown_before: str = ""  # listed before this other setting on the surfaces (N before K)
    form_help: str | None = None
    batch_form_help: str | None = None  # None: form_help
    batch_cli_help: str | None = None
    api_help: str | None = None  # both request bodies
    batch_api_help: str | None = None  # None: api_help
    name: str = ""
    type: type = int
    default: Any = None

    @property
    def optional(self) -> bool:
        """None is a value of it: unset (patience: run every step)."""
        return self.default is None

    @property
    def message(self) -> str:
        """The SettingsError message when a value is out of bounds, e.g. "steps must be between 1 and 1000"."""
        if self.low_open:
            if self.high is None:
                bounds = "positive" if self.low == 0 else f"above {self.low}"
            else:
                bounds = f"in ({self.low}, {self.high}]"
        elif self.high is None:
            bounds = f"at least {self.low}"
        elif self.low is None:
            bounds = f"at most {self.high}"
        else:
            bounds = f"between {self.low} and {self.high}"
        return f"{self.name} must be {bounds}" + (" (or unset)" if self.optional else "")

    @property
    def bounded(self) -> bool:
        return self.low is not None or self.high is not None

    @property
    def inclusive_low(self) -> float | None:
        """The lowest value a form or a schema can state (None when the bound is open or absent)."""
        return None if self.low_open else self.low

    @property
    def number_high(self) -> float | None:
        """The high bound when it is a number (not another setting's name)."""
        return None if isinstance(self.high, str) else self.high

    def check(self, value: Any, settings: Settings) -> None:
        """Raise SettingsError (`message`) when `value` is out of bounds; a value of the wrong type
        raises TypeError from the comparison (Settings.from_dict words it as a SettingsError)."""
        if not self.bounded or (value is None and self.optional):
            return
        high = getattr(settings, self.high) if isinstance(self.high, str) else self.high
        low_ok = self.low is None or (self.low < value if self.low_open else self.low <= value)
        if not (low_ok and (high is None or value <= high)):
            raise SettingsError(self.message)

    def wording(self, where: str) -> str:
        """The text shown with it on `where`: "cli", "batch_cli", "form", "batch_form", "api" or "batch_api"."""
        own = {
            "cli": self.help,
            "batch_cli": self.batch_cli_help,
            "form": self.form_help,
            "batch_form": self.batch_form_help if self.batch_form_help is not None else self.form_help,
            "api": self.api_help,
            "batch_api": self.batch_api_help if self.batch_api_help is not None else self.api_help,
        }[where]
        return self.help if own is None else own


def declare(default: Any, help: str = "", **how: Any) -> Any:
    """A Settings field: its default, and how it is checked and shown (the keywords of `Setting`)."""
    return dataclasses.field(default=default, metadata={"setting": Setting(help, **how)})


@dataclass(frozen=True)
class Settings:
    # Optimization steps after the bootstrap (step 0). The paper uses 10.
    steps: int = declare(
        10, "Optimization steps after the bootstrap.", low=1, high=MAX_STEPS, surfaces=SURFACES,
        label="Steps", form_default="embedded", form_help="Optimization steps after the bootstrap (paper: {paper}).",
        batch_form_help="Optimization steps after the bootstrap (embedded default {embedded}, paper {paper}).",
        api_help="")
    # How many of the best candidates are kept and shown to the generator (paper: 50).
    top_k: int = declare(
        50, "Best candidates kept and shown to the LLM (K).", low=1, high=MAX_CANDIDATES, surfaces=SURFACES,
        label="Top K", form_default="embedded",
        form_help="Best texts kept and shown back to the LLM with their scores (paper: {paper}).",
        batch_form_help="", api_help="")
    # New candidates asked for in each step (paper: 50).
    candidates: int = declare(
        50, "New candidates per step (N).", low=1, high=MAX_CANDIDATES, surfaces=SURFACES, shown_before="top_k",
        label="Candidates per step (N)", form_default="embedded",
        form_help="New texts the LLM proposes each step (paper: {paper}).", batch_form_help="", api_help="")
    seed: int = declare(
        0, surfaces=SURFACES, label="Seed", form_default="declared", show_default=True,
        form_help="Same seed, same input, same models: the same job, step for step.",
        batch_cli_help="The seed of every job (a new batch: default 0).",
        batch_form_help="The seed of every job (default 0).", api_help="", batch_api_help="A new batch: default 0.")
    # Stop early when the top K has not improved for this many steps; None runs every step.
    patience: int | None = declare(
        None, "Stop after this many steps without improvement.", low=1, surfaces=SURFACES, label="Patience",
        form_help="Stop after this many steps without improvement (empty: run every step).",
        batch_form_help="", api_help="")
    # Epsilon-greedy exploration: each top-K slot but the best is, with this probability,
    # filled by a random other scored candidate instead of the next best. 0 is greedy.
    epsilon: float = declare(
        0.0, "Epsilon-greedy exploration of the top K (0 = greedy).", low=0, high=1, surfaces=SURFACES,
        label="Exploration (epsilon)", form_default="declared",
        form_help="Chance that a top-K slot shows a random scored text instead (0: greedy).",
        batch_form_help="", api_help="")
    # Sampling of the generator (paper: temperature 0.5, top_p 0.9; the reference code's
    # optimization_utils/generator.py passes the same).
    temperature: float = declare(
        0.5, "The LLM's sampling temperature (paper: 0.5; the embedded LLM: 0.7).", low=0, low_open=True, high=5,
        surfaces=SURFACES, label="Temperature",
        form_help="The LLM's sampling temperature. Empty: the task's default (paper: 0.5; embedded LLM: 0.7).",
        batch_form_help="", api_help="")
    top_p: float = declare(
        0.9, "The LLM's nucleus sampling top-p (paper: 0.9).", low=0, low_open=True, high=1, surfaces=SURFACES,
        label="Top-p", form_help="Nucleus sampling: the LLM draws from the likeliest words whose chances add up to "
                                 "this. Empty: the task's default (paper: 0.9).",
        batch_form_help="", api_help="")
    # Candidates longer than this are dropped (the prompt asks for it, small LLMs forget).
    max_words: int = declare(
        20, "Words per text at most; longer ones are dropped (a prompt file may name it as {max_words}).",
        low=1, high=200, surfaces=SURFACES, label="Words per text",
        form_help="Texts longer than this are dropped; the task's prompt asks for it. Empty: the task's default "
                  "(image captions: 15 with the embedded LLM, 20 with others).",
        batch_form_help="", api_help="")
    # The N candidates are asked for in this many parallel prompts (a batch for the LLM).
    prompts_per_step: int = declare(
        1, "Requests the N new texts of a step are shared over, sent at once (default: one per 10 texts with a "
           "serving engine, else 1; the reference code asks for all N in one).",
        low=1, high="candidates", surfaces=SURFACES, label="Requests per step",
        form_help="The step's new texts are asked for in this many requests at once. Empty: one per 10 texts "
                  "with a serving engine (openai:...), else 1.",
        batch_form_help="", api_help="")
    # Rounds of asking again when fewer than N usable new candidates came back.
    max_generation_rounds: int = declare(3, low=1)
    # What each defect of a text (a repeated word, a second sentence, a stray score or bracket)
    # takes off its score: the guard against reward hacking (worker.models.fluency). 0 is off,
    # the paper's setting; the embedded scorer's captions default to kinds.base.EMBEDDED_FLUENCY.
    fluency_weight: float = declare(
        0.0, "Score taken off per defect of a text (repeated word, second sentence, stray score or bracket); "
             "default 0.15 for captions by the embedded scorer, else 0 (the paper).",
        low=0, high=10, surfaces=SURFACES, label="Fluency guard",
        form_help="Score taken off per defect of a caption (a repeated word, a second sentence, a stray score or "
                  "bracket). Empty: 0.15 with the embedded scorer, else 0 (the paper).",
        batch_form_help="",
        api_help="Score taken off per defect of a text (a repeated word, a second sentence, a stray score or "
                 "bracket); default 0.15 for captions by the embedded scorer, else 0 (the paper).")
    # A text whose words overlap a better one in the top K by more than this (Jaccard, 0..1) is
    # kept out of the top K while other texts are left, so the generator is not shown one
    # wording eight times (core.optimizer.distinct_first). 1 is off, the paper's setting.
    top_k_overlap: float = declare(
        1.0, "Keep texts sharing more than this share of their words (0-1) with a better one out of the top K "
             "while others are left; default 0.5 with the embedded LLM, else 1 (off, the paper).",
        low=0, high=1, surfaces=SURFACES, label="Top-K word overlap",
        form_help="Texts sharing more than this share of their words with a better one give way to others in "
                  "the top K. Empty: 0.5 with the embedded LLM, else 1 (off, the paper).",
        batch_form_help="",
        api_help="Texts sharing more than this share of their words (Jaccard) with a better one are kept out of "
                 "the top K while other texts are left; default 0.5 with the embedded LLM, else 1 (off, the paper).")

    def __post_init__(self) -> None:
        for name, setting in _declared(type(self)).items():
            setting.check(getattr(self, name), self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # wrong type compared with an int, etc.
            raise SettingsError(str(exc)) from exc

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


@functools.cache
def _declared(cls: type) -> dict[str, Setting]:
    hints = typing.get_type_hints(cls)
    found = {}
    for f in dataclasses.fields(cls):
        setting = f.metadata.get("setting", Setting())
        value_type = next(t for t in (typing.get_args(hints[f.name]) or (hints[f.name],)) if t is not type(None))
        found[f.name] = dataclasses.replace(setting, name=f.name, type=value_type, default=f.default)
    return found


def declared() -> dict[str, Setting]:
    """Every Settings field's declaration, {name: Setting}, in field order."""
    return dict(_declared(Settings))


def shown_on(surface: str) -> list[Setting]:
    """The settings a user sets on `surface` (one of SURFACES), in the order the surfaces list them:
    field order, except that a setting with `shown_before` comes just before the one it names."""
    shown = [s for s in _declared(Settings).values() if surface in s.surfaces]
    for setting in [s for s in shown if s.shown_before]:
        if setting.shown_before in [s.name for s in shown]:
            shown.remove(setting)
            shown.insert([s.name for s in shown].index(setting.shown_before), setting)
    return shown
