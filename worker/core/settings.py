"""Settings of one optimization job."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """A setting is out of range; the message says which and why."""


# Far above the paper (10 steps, 50 candidates): bounds against a typo that would run for days.
MAX_STEPS = 1000
MAX_CANDIDATES = 1000


@dataclass(frozen=True)
class Settings:
    # Optimization steps after the bootstrap (step 0). The paper uses 10.
    steps: int = 10
    # How many of the best candidates are kept and shown to the generator (paper: 50).
    top_k: int = 50
    # New candidates asked for in each step (paper: 50).
    candidates: int = 50
    seed: int = 0
    # Stop early when the top K has not improved for this many steps; None runs every step.
    patience: int | None = None
    # Epsilon-greedy exploration: each top-K slot but the best is, with this probability,
    # filled by a random other scored candidate instead of the next best. 0 is greedy.
    epsilon: float = 0.0
    # Sampling of the generator (paper: temperature 0.5, top_p 0.9).
    temperature: float = 0.5
    top_p: float = 0.9
    # Candidates longer than this are dropped (the prompt asks for it, small LLMs forget).
    max_words: int = 20
    # The N candidates are asked for in this many parallel prompts (a batch for the LLM).
    prompts_per_step: int = 1
    # Rounds of asking again when fewer than N usable new candidates came back.
    max_generation_rounds: int = 3
    # What each defect of a text (a repeated word, a second sentence, a stray score or bracket)
    # takes off its score: the guard against reward hacking (worker.models.fluency). 0 is off,
    # the paper's setting; the embedded scorer's captions default to kinds.base.EMBEDDED_FLUENCY.
    fluency_weight: float = 0.0
    # A text whose words overlap a better one in the top K by more than this (Jaccard, 0..1) is
    # kept out of the top K while other texts are left, so the generator is not shown one
    # wording eight times (core.optimizer.distinct_first). 1 is off, the paper's setting.
    top_k_overlap: float = 1.0

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.steps <= MAX_STEPS, f"steps must be between 1 and {MAX_STEPS}"),
            (1 <= self.top_k <= MAX_CANDIDATES, f"top_k must be between 1 and {MAX_CANDIDATES}"),
            (1 <= self.candidates <= MAX_CANDIDATES, f"candidates must be between 1 and {MAX_CANDIDATES}"),
            (self.patience is None or self.patience >= 1, "patience must be at least 1 (or unset)"),
            (0.0 <= self.epsilon <= 1.0, "epsilon must be between 0 and 1"),
            (self.temperature > 0.0, "temperature must be positive"),
            (0.0 < self.top_p <= 1.0, "top_p must be in (0, 1]"),
            (self.max_words >= 1, "max_words must be at least 1"),
            (1 <= self.prompts_per_step <= self.candidates, "prompts_per_step must be between 1 and candidates"),
            (self.max_generation_rounds >= 1, "max_generation_rounds must be at least 1"),
            (0.0 <= self.fluency_weight <= 10.0, "fluency_weight must be between 0 and 10"),
            (0.0 <= self.top_k_overlap <= 1.0, "top_k_overlap must be between 0 and 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)

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
