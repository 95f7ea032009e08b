"""Turning an LLM's free-form answer into clean candidate lines.

One general parser for the list formats chat models answer in: numbered lists (any punctuation,
any digits), bulleted lists (any bullet), markdown tables, JSON arrays (fenced or not), quoted or
bracketed lines, with the prompt's leftovers (echoed scores, labels) and comments about the answer
("Here are ...", "This is a good mention.") taken off. What is not a candidate is counted, by
reason (`Parsed.rejected`), so a step can say how much of the answer it could not use.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Container
from dataclasses import dataclass, field

# Bullets a list item may start with (ASCII and the usual Unicode ones).
_BULLETS = "-*+•◦▪▫●○■□►▸▹➤➢→·–—✓✔★☆"
# "1. ", "2) ", "(3) ", "4: ", "5 - ", "６．", "7、", "- ", "• " at the start of a line. Not the "0." of an
# echoed score "0.412: ..." (a digit follows), not the "**" of a bold line (a bullet has a space).
_LIST_MARK = re.compile(r"^\s*(?:[(\[]?\d{1,3}\s*(?:[.):\]、．。：）]|\s-)(?!\d)|[" + re.escape(_BULLETS) + r"](?=\s))\s*")
# Small models copy the "score: text" format of the prompt: "0.412: A cat", "[0.41] A cat", "0100: A cat".
_SCORE_PREFIX = re.compile(
    r"^\s*(?:[\[(][-+]?\d*\.?\d+[\])]"  # [0.41] (12)
    r"|(?:[-+]?\d*\s?\.\d+\s*,\s*)*[-+]?\d*\s?\.\d+\s*[:\-–](?=\s)"  # 0.412: / 0.41 - / 0.18, 0.17:
    r"|-?0\.\d{2,}(?=\s)|-?\d\.\d{3,}(?=\s)"  # 0.41 A cat, 2.2548 (a cat) (not "3.5 mm", ".45 caliber")
    r"|\d{3,5}\s*:(?=\s))\s*")  # 0100: / 3088: a score without its point (so "1999: ..." goes too)
_SEPARATOR_BEFORE_SCORE = re.compile(r"^[\s,.;:|#\-–]+(?=[-+]?\d*\s?\.\d+\s*[,:\-–])")
# A score left at the end: "(Score: 0.41)", "Score=0.459)", ", with a score of 0.28", ", -0.27."
_SCORE_SUFFIX = re.compile(
    r"(?:[\s,;]*[(\[]?\s*(?:with\s+)?(?:a\s+)?score(?:\s+of)?\s*[:=]?\s*[-+]?\d[\d.,\s]*[)\]]?"
    r"|,\s*(?:with\s+|in\s+)?[-+]?\d*\.\d+)\s*[.)\]]?\s*$", re.IGNORECASE)
# The style template's own score line: "-0.8123 (style 0.30, content 0.52): ...".
_PARTS_PREFIX = re.compile(r"^\s*\((?:\s*\w+\s+[-+]?\d*\.?\d+\s*,?)+\)\s*:\s*")
# A label the answer puts before a line: "Caption 2:", "Scored caption (negative):", "Best score:",
# "（best):", '"caption": ' (misspelt as small models do: "Scoreed", "Scoredccaption").
_LABEL_PREFIX = re.compile(
    r"^\s*[(\[（【]?\s*\"?(?:(?:the|my|new|best|scor\w*)\s+)?"
    r"(?:best|worst|new|top|scor\w*|caption\w*|prompt\w*|descriptions?|instructions?|text)\"?\s*\d*\s*"
    r"(?:\([^)]{0,20}\))?\s*[)\]）】]?\s*[:：=]\s*", re.IGNORECASE)
# A line that is only a label or a list's title: "Scoredcc-caption", "List 1", "Captions".
_ONLY_LABEL = re.compile(r"^\W*(?:(?:best|new|scor\w*)\W*)?(?:list|scor\w*|caption\w*|prompt\w*|options?)"
                         r"\W*(?:caption\w*)?\W*\d*\W*$", re.IGNORECASE)
# Lines that talk about the answer instead of being part of it. Only phrasings a description does
# not start with: "Sure," "Note:" "Here are the captions", "This is a good mention", "I hope these
# help", "Let me know", and judgements of the candidates ("... is the best description").
_META_NOUN = r"(?:mention|match|score|choice|fit|caption|description|option|one|example)"
_COMMENT = re.compile(
    r"^(?:(?:sure|certainly|of course|okay|ok|absolutely)\s*[,!.:]"
    r"|note\s*:"
    r"|here (?:are|is) (?:\w+ )?(?:new |more |some |the |my |a few )*(?:captions?|prompts?|instructions?|"
    r"descriptions?|options?|ideas?|suggestions?|alternatives?|variations?)\b"
    r"|(?:this|that|it) (?:is|was|would be) (?:a |an )?(?:very |even |really )?(?:good|great|better|nice|strong|"
    r"solid|perfect|excellent) " + _META_NOUN + r"\b"
    r"|these (?:captions?|prompts?|instructions?|descriptions?) (?:should|would|will|are|might)\b"
    r"|i hope (?:this|these|that|it)\b|let me know\b|feel free\b)", re.IGNORECASE)
# Anywhere in a line: a judgement of the candidates, not a candidate ("X is the best description").
_JUDGEMENT = re.compile(r"\b(?:is|are) (?:the )?(?:\w+ )?(?:best|worst|most|only|better)\b[^.]*\bdescri(?:ption|bed)\b"
                        r"|\b(?:best|worst) descri(?:ptions?|bed)\b", re.IGNORECASE)
# A sentence after the first that judges it: "This is a good match." "This is even better than 0.22."
_TRAILING_COMMENT = re.compile(
    r"^(?:this|that|it) (?:is|was|would be)\b[^.]*(?:\b" + _META_NOUN + r"\b|\bthan\s*[-+]?\d)", re.IGNORECASE)
_WRAPPERS = "\"'`“”‘’«»„*_ "
_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">", "（": "）", "【": "】", "「": "」", "『": "』"}
# Scripts written without spaces between words: a word is about two of their characters.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD_RUN = re.compile(_UNSPACED.pattern + "+|[^\\s" + _UNSPACED.pattern[1:-1] + "]+")
_FENCE = re.compile(r"^\s*```[\w-]*\s*$")
_TABLE_RULE = re.compile(r"^:?-{2,}:?$")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


_ASCII_WORD = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    """The identity of a candidate: case, width, punctuation and spacing do not make a new one
    (Unicode compatibility normalization and case folding); words are letters, digits and the
    combining marks of every script (Hindi's, Thai's and Arabic's vowel signs are part of a word)."""
    if text.isascii():
        # The same words ten times faster (a step's state keys hundreds of texts, a pool tens of
        # thousands): NFKC leaves ASCII as it is, and its letters and digits are its only alnums.
        return " ".join(_ASCII_WORD.findall(text.lower()))
    return _normalize_unicode(text)


def _normalize_unicode(text: str) -> str:
    words, word = [], []
    for char in unicodedata.normalize("NFKC", text).casefold():
        if char.isalnum() or unicodedata.category(char).startswith("M"):
            word.append(char)
        elif word:
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return " ".join(words)


def words(text: str) -> list[str]:
    """The words of a text, as the optimizer (top-K overlap), the parser (caption length) and the
    fluency guard (repeated words) all count them: those of its normalized form (`normalize`), a
    run of a script written without spaces (Chinese, Japanese) cut into words of two characters
    ("一只猫在沙发上" is 4 words, "iphone手机" 2)."""
    return key_words(normalize(text))


def key_words(key: str) -> list[str]:
    """`words` of a text already normalized (a candidate's key)."""
    if key.isascii():
        return key.split()
    found = []
    for run in _WORD_RUN.findall(key):
        if _UNSPACED.match(run):
            found += [run[i:i + 2] for i in range(0, len(run), 2)]
        else:
            found.append(run)
    return found


def word_count(key: str) -> int:
    """How many words a normalized text has (`key_words`)."""
    return len(key_words(key))


@dataclass
class Parsed:
    candidates: list[str] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)  # reason -> lines


_TEXT_KEYS = ("caption", "prompt", "instruction", "text", "description")


def _json_items(text: str) -> list[str] | None:
    """The strings of a JSON array that is the whole answer or the whole of a fenced block (objects
    give their caption/prompt/text field), or None."""
    fenced = re.search(r"```[\w-]*\s*\n(.*?)```", text, re.S)
    body = (fenced.group(1) if fenced else text).strip()
    if not (body.startswith("[") and body.endswith("]")):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, list) or not value:
        return None
    items = []
    for item in value:
        if isinstance(item, dict):
            named = [item[k] for k in _TEXT_KEYS if isinstance(item.get(k), str)]
            texts = named or [v for v in item.values() if isinstance(v, str)]
            item = named[0] if named else max(texts, key=len) if texts else None
        if isinstance(item, str):
            items.append(item)
    return items or None


def _table_items(lines: list[str]) -> list[str] | None:
    """The data rows of a markdown table (its widest text cell each), or None when there is none."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines
            if line.strip().startswith("|") and line.strip().count("|") >= 2]
    if not rows:
        return None
    items = []
    for i, cells in enumerate(rows):
        if all(_TABLE_RULE.match(c) for c in cells if c):
            continue
        if i + 1 < len(rows) and all(_TABLE_RULE.match(c) for c in rows[i + 1] if c):
            continue  # the header row, above the rule
        texts = [c for c in cells if c and not _SCORE_PREFIX.fullmatch(c) and not re.fullmatch(r"[-+]?[\d.]+", c)]
        if texts:
            items.append(max(texts, key=lambda c: len(c.split())))
    return items


def _strip_wrappers(line: str) -> str:
    """Quotes, backticks and emphasis around the line; brackets that wrap it or are left open."""
    previous = None
    while previous != line:
        previous = line
        line = line.strip(_WRAPPERS).rstrip(",;")
        if len(line) >= 2 and _PAIRS.get(line[0]) == line[-1]:
            line = line[1:-1]
        for opening, closing in _PAIRS.items():
            if line.startswith(opening) and closing not in line:
                line = line[1:]
            if line.endswith(closing) and opening not in line:
                line = line[:-1]
    return line


def _without_stray_brackets(line: str) -> str:
    """The line without brackets that close nothing or are never closed ("a jelly(fish in water")."""
    stray, open_at = set(), {opening: [] for opening in _PAIRS}
    closing_of = {closing: opening for opening, closing in _PAIRS.items()}
    for i, char in enumerate(line):
        if char in _PAIRS:
            open_at[char].append(i)
        elif char in closing_of:
            if open_at[closing_of[char]]:
                open_at[closing_of[char]].pop()
            else:
                stray.add(i)
    stray.update(i for positions in open_at.values() for i in positions)
    return "".join(char for i, char in enumerate(line) if i not in stray) if stray else line


def _without_comments(line: str) -> str:
    """The line without trailing sentences that comment on it ("... rug. This is a good mention.")."""
    sentences = _SENTENCE_END.split(line)
    while len(sentences) > 1 and (_COMMENT.match(sentences[-1]) or _TRAILING_COMMENT.match(sentences[-1])):
        sentences.pop()
    return " ".join(sentences)


def _clean(line: str, list_item: bool) -> str:
    line = line.replace("**", "")  # markdown bold, anywhere
    if list_item:  # "3 - piece suit" is only a list item in a list
        line = _LIST_MARK.sub("", line, count=1)
    previous = None
    while previous != line:  # "Caption 3: 0.41: ..." and the like, in any order
        previous = line
        line = _SEPARATOR_BEFORE_SCORE.sub("", line, count=1)  # ", 0.17: ..." "-, 0.17: ..."
        line = _SCORE_PREFIX.sub("", line, count=1)
        line = _PARTS_PREFIX.sub("", line, count=1)
        line = _LABEL_PREFIX.sub("", line, count=1)
        line = _strip_wrappers(line.strip())
    line = _without_stray_brackets(_without_comments(line))
    previous = None
    while previous != line:  # "... lamp. (Score: 0.409)", then what wrapped it
        previous = line
        line = _strip_wrappers(_SCORE_SUFFIX.sub("", line).strip())
    return " ".join(line.split())


def parse_answer(completion: str, *, max_words: int, min_words: int = 2, exclude: Container[str] = ()) -> Parsed:
    """Usable candidate lines of one completion, in order, without duplicates, and what was
    rejected by reason: "outside the list", "header", "comment", "empty", "too short", "too long",
    "repeated".

    A JSON array or a markdown table gives its items; otherwise, when the answer has a numbered or
    bulleted list, only its items count (so "Sure! Here are ten captions:" is not a candidate);
    otherwise every line does. `exclude` holds normalized texts that are already taken (only asked
    whether it holds one: a job's whole history need not be copied into a set)."""
    lines = [line for line in completion.splitlines() if line.strip() and not _FENCE.match(line)]
    parsed = Parsed()
    items = _json_items(completion) or _table_items(lines)
    list_items = True
    if items is None:
        # Echoed "score: text" lines are list items too (their header is not a candidate).
        listed = [line for line in lines if _LIST_MARK.match(line) or _SCORE_PREFIX.match(line)]
        if len(listed) < min(2, len(lines)):  # one item-like line among others is not a list
            listed = []
        items = listed or lines
        list_items = bool(listed)
        if listed and len(listed) < len(lines):
            parsed.rejected["outside the list"] += len(lines) - len(listed)
    taken: set[str] = set()  # this answer's own
    for raw in items:
        if raw.rstrip().endswith((":", "：")):
            parsed.rejected["header"] += 1
            continue
        text = _clean(raw, list_items)
        key = normalize(text)
        n_words = word_count(key)
        reason = ("comment" if _COMMENT.match(text) or _JUDGEMENT.search(text) else
                  "header" if _ONLY_LABEL.match(text) else
                  "no words" if not any(char.isalpha() for char in key) else
                  "empty" if not key else
                  "too short" if n_words < min_words else "too long" if n_words > max_words else
                  "repeated" if key in taken or key in exclude else None)
        if reason:
            parsed.rejected[reason] += 1
            continue
        taken.add(key)
        parsed.candidates.append(text)
    return parsed


def parse_candidates(completion: str, *, max_words: int, min_words: int = 2, exclude: Container[str] = ()) -> list[str]:
    """The candidates of `parse_answer` alone."""
    return parse_answer(completion, max_words=max_words, min_words=min_words, exclude=exclude).candidates
