"""A fluency guard against reward hacking: a caption the scorer likes but a person would not accept
("There is a cat by cat.", "Four small jellyfish ... This is a good mention.") scores lower.

    score(c) = match(c) - weight * defects(c)

defects(c) counts what makes a text not one well-formed caption, each defect 1:
- repeats: content words (not in scikit-learn's English stop-word list, plurals folded) that
  occur again ("a cat by cat", "a helmet against a helmet");
- extra sentences: every sentence after the first (a caption is one sentence; a second one is
  the model talking: "This is a good mention.");
- stray marks: score-like numbers copied from the prompt ("0100:", "0.1898") and brackets or
  quotes left unbalanced ("near sunset]").

Why counts and not a language model's likelihood: the only offline LM here, the embedded
Qwen2.5-Coder-0.5B, rates these failures as likely. Its mean log-probability per token
(benchmarks/fluency_lm.py, BENCHMARKS.md) put "There is a cat by cat." (-5.66) above "There is a
tabby cat on a rug." (-5.71), "Four small jellyfish ... This is a good mention." (-4.63) above the
same caption alone (-4.99), "0100: A bicycle helmet on a table." (-4.59) above both, and "cat cat
cat cat" (-3.21) above everything; and it costs a minute's load and 0.1 s per caption on 2 cores.
Language models rate repetition as likely in general (Holtzman et al. 2020, "The Curious Case of
Neural Text Degeneration"). A defect costs `weight` (Settings.fluency_weight) whatever the scorer's score
scale; on by default for the embedded scorer only.

The parts are kept as each new candidate's score details ("match", "repeats", "sentences",
"stray"), which the job page shows; the bootstrap pool is scored the same way (it is cheap).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from worker.core import Score, Scorer
from worker.core.optimizer import as_scored
from worker.core.parsing import words

# A sentence ends at . ! or ? followed by a capitalised word ("... water. This is ...").
# Not after a title or an initial ("St. Bernard", "J. Smith").
_SENTENCE_END = re.compile(r"(?<!\b[A-Z][a-z])(?<!\b[A-Z])(?<!\bMrs)[.!?](?=\s+[A-Z0-9])")
# A score as the prompt writes them ("0.1898"), or a number used as a list label ("0100:", "3:");
# not a year, a time, a count or a measure ("1967", "10:30", "1,000", "3.5 m").
_SCORE_LIKE = re.compile(r"\b0\.\d{2,}\b|\b\d+:(?!\d)")
_PAIRS = ("()", "[]", "{}")


def repeats(text: str) -> int:
    """How many content words of `text` repeat an earlier one ("a cat by cat" -> 1). Words as
    worker.core.parsing.words counts them; content words are of letters, not English stop words,
    and, in a spaced script, three letters or more (an unspaced script's word is two characters)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    seen: set[str] = set()
    count = 0
    for word in words(text):
        if not word.isalpha() or word in ENGLISH_STOP_WORDS or (len(word) < 3 and word.isascii()):
            continue
        stem = word[:-1] if word.endswith("s") and not word.endswith("ss") else word
        count += stem in seen
        seen.add(stem)
    return count


def extra_sentences(text: str) -> int:
    """Sentences after the first."""
    return len(_SENTENCE_END.findall(text.strip()))


def stray_marks(text: str) -> int:
    """Score-like numbers, and brackets or double quotes left unbalanced."""
    count = len(_SCORE_LIKE.findall(text))
    count += sum(abs(text.count(a) - text.count(b)) for a, b in _PAIRS)
    return count + text.count('"') % 2


def defects(text: str) -> dict[str, int]:
    return {"repeats": repeats(text), "sentences": extra_sentences(text), "stray": stray_marks(text)}


class FluencyGuard:
    """A scorer whose scores lose `weight` per defect of the text (see the module docstring)."""

    def __init__(self, scorer: Scorer, weight: float) -> None:
        self.scorer, self.weight = scorer, weight
        self.name = scorer.name

    def __getattr__(self, name: str) -> Any:  # feature_maps, version, ...: the wrapped scorer's
        if name.startswith("__") or name == "scorer":  # copy/pickle probe before __init__ ran
            raise AttributeError(name)
        return getattr(self.scorer, name)

    def encode_sample(self, sample: Any) -> Any:
        return self.scorer.encode_sample(sample)

    def score_pool(self, features: Any, pool: Sequence[str]) -> list[Any]:
        matches = self.scorer.score_pool(features, pool)
        if all(isinstance(m, (int, float)) for m in matches):  # kept compactly: the total only
            return [m - self.weight * sum(defects(text).values()) for text, m in zip(pool, matches)]
        return self._guarded(pool, matches)

    def score(self, features: Any, texts: Sequence[str]) -> list[Score]:
        return self._guarded(texts, self.scorer.score(features, texts))

    def _guarded(self, texts: Sequence[str], matches: Sequence[Any]) -> list[Score]:
        scored = []
        for match in map(as_scored, texts, matches):  # a number, a Score or (number, parts)
            found = defects(match.text)
            details = {**dict(match.details), "match": match.score, **{k: float(v) for k, v in found.items()}}
            scored.append(Score(match.score - self.weight * sum(found.values()), details, match.made))
        return scored


def with_fluency(scorer: Scorer, weight: float) -> Scorer:
    """The scorer guarded when weight > 0 (Settings.fluency_weight), else the scorer itself."""
    return FluencyGuard(scorer, weight) if weight > 0 else scorer
