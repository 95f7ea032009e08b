"""The two plug-in points of MILS: who proposes candidates and who judges them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict


class Message(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


class GeneratorError(RuntimeError):
    """The generator answered, but not with something usable (an HTTP 4xx, an empty or malformed
    answer, no answer within the time allowed): the step fails with this message."""


class GeneratorUnavailable(GeneratorError):
    """The generator's server cannot be reached now (refused connection, 5xx, overloaded): nothing
    was decided, and the same step can be tried again once it is back."""


class Completion(str):
    """One answer of a generator, with the tokens it cost as the engine reported them (or as the
    model's tokenizer counted them); None where neither is known. A generator may answer plain
    str: its tokens are then "not reported"."""

    prompt_tokens: int | None
    completion_tokens: int | None

    def __new__(cls, text: str, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> Completion:
        answer = super().__new__(cls, text)
        answer.prompt_tokens, answer.completion_tokens = prompt_tokens, completion_tokens
        return answer


class Generator(Protocol):
    """Proposes text. Real ones are LLMs; tests use tiny deterministic ones."""

    name: str

    def complete(
        self,
        conversations: Sequence[list[Message]],
        *,
        seed: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
    ) -> list[str]:
        """One raw completion per conversation (at most `max_tokens` tokens each),
        reproducible for a given seed; a `Completion` where its tokens are known."""
        ...


@dataclass(frozen=True)
class Score:
    """A scorer's answer for one text when it is more than a number."""

    value: float  # higher is better
    # Parts of the score the generator should see, e.g. {"style": 0.12, "content": 0.4}.
    details: Mapping[str, float] = field(default_factory=dict)
    # What scoring the text made (a render: any object the runner can store), kept with it.
    made: Any = None


class Scorer(Protocol):
    """Scores texts against one test sample; higher is better."""

    name: str

    def encode_sample(self, sample: Any) -> Any:
        """Features of the test sample, computed once per job."""
        ...

    def score(self, features: Any, texts: Sequence[str]) -> list[Any]:
        """One score per text: a float, or a `Score` when the score has parts the generator
        should see (e.g. style and content distances) or scoring made something (a render)."""
        ...

    def score_pool(self, features: Any, pool: Sequence[str]) -> list[float]:
        """Like `score`, for the fixed initial pool: adapters may cache its embeddings."""
        ...
