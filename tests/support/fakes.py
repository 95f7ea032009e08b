"""Tiny deterministic fake plug-ins for the optimizer core's tests.

These implement `worker.core.protocols.Generator` / `Scorer` exactly, with no model
library behind them: a scorer that counts words of a hidden target caption, and
generators that recombine the words of the prompt, play back a script, or only
ever write nonsense. They also record what they were asked, for assertions.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from worker.core.parsing import normalize
from worker.core.protocols import Message

# One "score: text" example line of the prompt (see worker.kinds.prompts.CaptionTemplate).
_EXAMPLE_LINE = re.compile(r"^\s*(-?\d+\.\d+): (.+)$")
_ASK_N = re.compile(r"Write (\d+) new")


def prompt_examples(conversation: list[Message]) -> list[tuple[float, str]]:
    """The (score, text) examples shown in a conversation's user message, in order."""
    user = next(m["content"] for m in conversation if m["role"] == "user")
    found = []
    for line in user.splitlines():
        match = _EXAMPLE_LINE.match(line)
        if match:
            found.append((float(match.group(1)), match.group(2)))
    return found


def asked_n(conversation: list[Message]) -> int:
    user = next(m["content"] for m in conversation if m["role"] == "user")
    match = _ASK_N.search(user)
    assert match, "the prompt does not ask for N captions"
    return int(match.group(1))


class FakeCall:
    """What one `complete` call was given and gave back."""

    def __init__(self, conversations, seed, temperature, top_p, max_tokens, completions):
        self.conversations = [list(c) for c in conversations]
        self.seed = seed
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.completions = list(completions)


class _RecordingGenerator:
    name = "fake-generator"

    def __init__(self) -> None:
        self.calls: list[FakeCall] = []

    def _complete_one(self, conversation: list[Message], seed: int, index: int) -> str:
        raise NotImplementedError

    def complete(
        self,
        conversations: Sequence[list[Message]],
        *,
        seed: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
    ) -> list[str]:
        completions = [self._complete_one(c, seed, i) for i, c in enumerate(conversations)]
        self.calls.append(FakeCall(conversations, seed, temperature, top_p, max_tokens, completions))
        return completions


class ScriptedGenerator(_RecordingGenerator):
    """Fake LLM.

    With `script`: plays back the given completions, one per conversation, in order,
    then "" once the script is used up (for parsing / re-asking tests).

    Without: a seeded random recombination of the words of the examples in the
    prompt (plus a few `extra_words`), written like a small chatty LLM: a header,
    a numbered list, one echoed example in other case and punctuation, and one
    duplicate line. The output depends only on (prompt, seed, conversation index).
    """

    name = "fake-scripted-generator"

    def __init__(self, script: Sequence[str] | None = None, extra_words: Sequence[str] = ()) -> None:
        super().__init__()
        self.script = list(script) if script is not None else None
        self.extra_words = list(extra_words)
        self._played = 0

    def _complete_one(self, conversation: list[Message], seed: int, index: int) -> str:
        if self.script is not None:
            if self._played >= len(self.script):
                return ""
            self._played += 1
            return self.script[self._played - 1]

        n = asked_n(conversation)
        examples = prompt_examples(conversation)
        vocabulary: list[str] = []  # ordered, never a set: output must not depend on hashing
        for _, text in examples:
            for word in normalize(text).split():
                if word not in vocabulary:
                    vocabulary.append(word)
        for word in self.extra_words:
            if word not in vocabulary:
                vocabulary.append(word)
        rng = random.Random(f"{seed}/{index}")
        lines = [f"Sure! Here are {n} captions:"]
        for i in range(1, n + 1):
            words = [rng.choice(vocabulary) for _ in range(rng.randint(2, 7))]
            lines.append(f"{i}. {' '.join(words).capitalize()}.")
        if examples:  # small LLMs repeat what they were shown ...
            lines.append(f"{n + 1}. {examples[0][1].upper()}!")
        if len(lines) > 1:  # ... and themselves
            lines.append(f"{n + 2}) {lines[1].split(' ', 1)[1].lower()}")
        return "\n".join(lines)


class NonsenseGenerator(_RecordingGenerator):
    """Fake LLM that only writes new captions of made-up words (never in any target)."""

    name = "fake-nonsense-generator"

    def _complete_one(self, conversation: list[Message], seed: int, index: int) -> str:
        n = asked_n(conversation)
        return "\n".join(f"{i}. zork s{seed} c{index} n{i} blorp" for i in range(1, n + 1))


class WordOverlapScorer:
    """Fake judge. The sample is a hidden target caption; a text's score is the
    fraction of the target's words it contains, minus a tiny length penalty.
    Records every text it is asked to score."""

    name = "fake-word-overlap-scorer"
    length_penalty = 0.001

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.pool_calls = 0
        self.score_calls = 0

    def encode_sample(self, sample: Any) -> Any:
        return tuple(dict.fromkeys(normalize(str(sample)).split()))

    def _score(self, features: Any, texts: Sequence[str]) -> list[float]:
        target = set(features)
        self.seen.extend(texts)
        out = []
        for text in texts:
            words = normalize(text).split()
            overlap = len(target & set(words)) / len(target)
            out.append(overlap - self.length_penalty * len(words))
        return out

    def score(self, features: Any, texts: Sequence[str]) -> list[float]:
        self.score_calls += 1
        return self._score(features, texts)

    def score_pool(self, features: Any, pool: Sequence[str]) -> list[float]:
        self.pool_calls += 1
        return self._score(features, pool)


class HiddenCaptionScorer(WordOverlapScorer):
    """`WordOverlapScorer` for jobs whose sample is not text (e.g. the PIL image that
    `TASK_KINDS["image-caption"].decode` returns): the sample is ignored and `target`, a
    fixed hidden caption, is what texts are scored against. Records the samples it got."""

    name = "fake-hidden-caption-scorer"

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.samples: list[Any] = []

    def encode_sample(self, sample: Any) -> Any:
        self.samples.append(sample)
        return super().encode_sample(self.target)


class FailingGenerator(_RecordingGenerator):
    """Fake LLM that raises on every call (a crashed or misconfigured model)."""

    name = "fake-failing-generator"

    def __init__(self, message: str = "the fake LLM fell over") -> None:
        super().__init__()
        self.message = message

    def _complete_one(self, conversation: list[Message], seed: int, index: int) -> str:
        raise RuntimeError(self.message)


# Factories for "py:tests.support.fakes:..." model specs, so a real `mils worker` process runs the
# tiny fakes. MILS_FAKE_STEP_SECONDS makes each generation slow enough to kill a worker mid-step.
WORKER_TARGET = "a tabby cat sitting on a wooden table in the sun"


class SlowScriptedGenerator(ScriptedGenerator):
    """`ScriptedGenerator` that sleeps MILS_FAKE_STEP_SECONDS per call and, where
    MILS_FAKE_FAIL_AFTER_CALLS=N is set, falls over on every call after its N-th (a worker
    whose model broke: the same spec works on a healthy worker)."""

    name = "fake-slow-scripted-generator"

    def complete(self, conversations, **kwargs):
        import os
        import time

        time.sleep(float(os.environ.get("MILS_FAKE_STEP_SECONDS", "0")))
        fail_after = os.environ.get("MILS_FAKE_FAIL_AFTER_CALLS")
        if fail_after is not None and len(self.calls) >= int(fail_after):
            raise RuntimeError(f"the fake LLM fell over after {fail_after} calls")
        return super().complete(conversations, **kwargs)


def worker_generator() -> SlowScriptedGenerator:
    return SlowScriptedGenerator(extra_words=["tabby", "wooden", "sun", "sitting", "kitten"])


def worker_scorer() -> HiddenCaptionScorer:
    return HiddenCaptionScorer(WORKER_TARGET)


class MeanColourScorer:
    """Fake image-text judge: an image is its unit mean-RGB vector, a text the unit sum of the
    colour words it names ("red", "green", "blue", ...); the score is their dot product. Cheap,
    deterministic, and it does look at the picture (text-to-image tests score renders with it)."""

    name = "fake-mean-colour-scorer"
    version = "1"
    COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0),
               "orange": (1, 0.5, 0), "purple": (0.5, 0, 1), "white": (1, 1, 1), "black": (0.01, 0.01, 0.01)}

    def encode_sample(self, image: Any) -> Any:
        import numpy as np

        v = np.asarray(image.convert("RGB"), np.float64).reshape(-1, 3).mean(axis=0) + 1e-6
        return v / np.linalg.norm(v)

    def score(self, features: Any, texts: Sequence[str]) -> list[float]:
        import numpy as np

        out = []
        for text in texts:
            v = sum((np.array(self.COLOURS[w]) for w in normalize(text).split() if w in self.COLOURS), np.zeros(3))
            out.append(float(v @ features / max(np.linalg.norm(v), 1e-9)))
        return out

    score_pool = score


def colour_scorer() -> MeanColourScorer:
    return MeanColourScorer()
