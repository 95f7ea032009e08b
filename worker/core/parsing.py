"""Turning an LLM's free-form answer into clean candidate lines."""

from __future__ import annotations

import re
from collections.abc import Iterable

# "1. ", "2) ", "(3) ", "4: ", "- ", "* ", "• " at the start of a line. Not the "0." of an
# echoed score "0.412: ..." (a digit follows), not the "**" of a bold line (a bullet has a space).
_LIST_MARK = re.compile(r"^\s*(?:\(?\d{1,3}\s*[.):\]](?!\d)|[-*•](?=\s))\s*")
# Small models copy the "score: text" format of the prompt: "0.412: A cat ..." or "[0.41] A cat".
_SCORE_PREFIX = re.compile(r"^\s*[\[(]?[-+]?\d*\.\d+[\])]?\s*[:\-–]?\s*")
_LABEL_PREFIX = re.compile(r"^\s*(?:caption|prompt|text|description)\s*\d*\s*:\s*", re.IGNORECASE)
_WRAPPERS = "\"'`“”‘’*_ "
_WORD = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    """The identity of a candidate: case, punctuation and spacing do not make a new one."""
    return " ".join(_WORD.findall(text.lower()))


def _clean(line: str) -> str:
    line = line.replace("**", "")  # markdown bold, anywhere
    line = _LIST_MARK.sub("", line, count=1)
    previous = None
    while previous != line:  # "Caption 3: 0.41: ..." and the like, in any order
        previous = line
        line = _SCORE_PREFIX.sub("", line, count=1)
        line = _LABEL_PREFIX.sub("", line, count=1)
    line = line.strip(_WRAPPERS)
    return " ".join(line.split())


def parse_candidates(
    completion: str, *, max_words: int, min_words: int = 2, exclude: Iterable[str] = ()
) -> list[str]:
    """Usable candidate lines of one completion, in order, without duplicates.

    When the answer has a numbered or bulleted list, only its items count (so
    "Sure! Here are ten captions:" is not a candidate); otherwise every line does.
    Lines that end with a colon are headers. `exclude` holds normalized texts
    that are already taken.
    """
    lines = [line for line in completion.splitlines() if line.strip()]
    # Echoed "score: text" lines are list items too (their header is not a candidate).
    listed = [line for line in lines if _LIST_MARK.match(line) or _SCORE_PREFIX.match(line)]
    taken = set(exclude)
    result: list[str] = []
    for raw in listed or lines:
        if raw.rstrip().endswith(":"):
            continue
        text = _clean(raw)
        key = normalize(text)
        n_words = len(key.split())
        if not key or n_words < min_words or n_words > max_words or key in taken:
            continue
        taken.add(key)
        result.append(text)
    return result
