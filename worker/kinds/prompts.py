"""What every task's prompt shares, written for this project: the scored lines, the answer rules,
the caption template (image, video and audio captioning word it their own way) and who the LLM
is when it writes text-to-image prompts. Each kind's module holds its own template.

The prompt shows the current top K as `score: text` lines, best first, and asks
for N new ones as a numbered list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.core import Message, Scored


def scored_lines(examples: Sequence[Scored]) -> str:
    return "\n".join(f"{c.score:.4f}: {c.text}" for c in examples)


def answer_rules(noun: str, n: int, length: str, article: str = "a") -> str:
    """The end of every prompt: how long each new text is, and the numbered list asked for."""
    return (f"Each {noun} {length}. Do not repeat {article} {noun} above and do not write scores. "
            f"Answer with a numbered list of {n} {noun}s and nothing else.")


# Who the LLM is when it writes text-to-image prompts (prompt rewriting and arithmetic).
PROMPT_WRITER = (
    "You write prompts for a text-to-image model. A good prompt names the subject, the "
    "setting, the composition, the lighting and the style in concrete words. You never "
    "explain yourself."
)


@dataclass(frozen=True)
class CaptionTemplate:
    subject: str = "an image"
    system: str = (
        "You write short, concrete, literal captions. You name the main object, "
        "what it looks like and where it is. You never explain yourself."
    )
    length: str = "at most {max_words} words"

    def messages(self, examples: Sequence[Scored], n: int, max_words: int) -> list[Message]:
        user = (
            f"We are looking for the caption that best describes {self.subject} you cannot see. "
            "A judge that can see it scored some captions; a higher score means a better match.\n\n"
            f"Scored captions, best first (score: caption):\n{scored_lines(examples)}\n\n"
            f"Write {n} new captions that would score higher than all of these. Keep what the "
            "best ones get right, drop what the worst ones say, and try different details. "
            + answer_rules("caption", n, self.length.format(max_words=max_words))
        )
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
