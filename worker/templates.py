"""Task prompts, written for this project. Each task has one template class.

The prompt shows the current top K as `score: text` lines, best first, and asks
for N new ones as a numbered list. Other tasks (video, audio) change its
wording; each task kind (worker/task_kinds.py) names its template.
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


IMAGE_CAPTION = CaptionTemplate()

# The subject is set per job from the video's length ("a 12-second video"), see task_kinds.
VIDEO_CAPTION = CaptionTemplate(
    subject="a video",
    system=(
        "You write concrete, literal captions of short videos. You name who or what is in it, "
        "what happens and where. You never explain yourself."
    ),
    length="of 20 to {max_words} words",
)

# The subject is set per job from the recording's length ("a 7-second sound recording").
AUDIO_CAPTION = CaptionTemplate(
    subject="a sound recording",
    system=(
        "You write short, literal descriptions of sound recordings. You name what makes each "
        "sound, what it does and where it seems to be. You never explain yourself."
    ),
)


@dataclass(frozen=True)
class PromptRewriteTemplate:
    """Text-to-image prompt rewriting: the scored texts are prompts, judged by the picture a
    text-to-image model makes from them against the user's original description."""

    original: str = ""  # set per job (see task_kinds)
    system: str = PROMPT_WRITER

    def messages(self, examples: Sequence[Scored], n: int, max_words: int) -> list[Message]:
        user = (
            f'We want a picture that matches this description: "{self.original}".\n'
            "Each prompt below was given to a text-to-image model, and a judge scored the picture "
            "it made against the description; a higher score means a better match.\n\n"
            f"Prompts, best first (score: prompt):\n{scored_lines(examples)}\n\n"
            f"Write {n} new prompts that would make pictures scoring higher than all of these. Keep "
            "what the best ones get right, add concrete visual details and try different wordings. "
            + answer_rules("prompt", n, f"at most {max_words} words")
        )
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class StyleTemplate:
    """Style transfer: the scored texts are editing instructions; each score is shown with its
    two parts, the style distance and the content distance (lower is better for both)."""

    system: str = (
        "You write short instructions for an image-editing model that restyle a photo. You name "
        "the medium, the technique, the colours and the texture. You never explain yourself."
    )

    def messages(self, examples: Sequence[Scored], n: int, max_words: int) -> list[Message]:
        def line(c: Scored) -> str:
            parts = dict(c.details)
            return (f"{c.score:.4f} (style {parts.get('style', float('nan')):.4f}, "
                    f"content {parts.get('content', float('nan')):.4f}): {c.text}")

        lines = "\n".join(line(c) for c in examples)
        user = (
            "We want to restyle a photo so that it looks like a reference artwork you cannot see, "
            "while keeping what the photo shows. An image-editing model applied each instruction "
            "below to the photo. A judge measured the style distance (how far the result's colours "
            "and textures are from the artwork's) and the content distance (how much of the photo's "
            "layout and objects was lost); lower is better for both, and the score is minus their "
            "weighted sum, so a higher score is better.\n\n"
            f"Instructions, best first (score (style, content): instruction):\n{lines}\n\n"
            f"Write {n} new instructions that would score higher than all of these: move the style "
            "toward what the best ones do, and keep the content distance low. "
            + answer_rules("instruction", n, f"at most {max_words} words", article="an")
        )
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


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
