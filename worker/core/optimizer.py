"""The MILS loop: bootstrap from a pool, then generate, score and keep the best K.

Each step is a pure function of the previous `State` (plus the models), so a
job can be stopped after any step and continued later from what was stored.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any, Protocol

from worker.core.parsing import normalize, parse_answer, words
from worker.core.protocols import Generator, Message, Score, Scorer
from worker.core.settings import Settings


@dataclass(frozen=True)
class Scored:
    text: str
    score: float
    # The parts of the score worth showing the generator, e.g. (("style", 0.12), ("content", 0.4)).
    details: tuple[tuple[str, float], ...] = ()
    # What scoring the text made (e.g. a render), for the record; not part of the candidate's identity.
    made: Any = field(default=None, compare=False, repr=False)


def as_scored(text: str, score: Any) -> Scored:
    """A scorer's answer for one text: a number, a `Score`, or (number, {part: value}) when the
    score has parts (see Scorer.score)."""
    if isinstance(score, Score):
        return Scored(text, float(score.value), tuple((k, float(v)) for k, v in score.details.items()), score.made)
    if isinstance(score, tuple):
        total, parts = score
        return Scored(text, float(total), tuple((k, float(v)) for k, v in parts.items()))
    return Scored(text, float(score))


@dataclass(frozen=True)
class Seen:
    """The texts a job has scored, by normalize(text), so that none is scored twice: the pool's
    (shared by every job of that pool, never copied: 29,000 keys in the paper's setting) and
    the few scored by the steps since. Only asked whether it holds a key."""

    pool: Set[str]
    later: frozenset[str] = frozenset()

    def __contains__(self, key: object) -> bool:
        return key in self.later or key in self.pool

    def __iter__(self) -> Iterator[str]:
        yield from self.pool
        yield from self.later

    def __len__(self) -> int:
        return len(self.pool) + len(self.later)

    def adding(self, keys: Iterable[str]) -> Seen:
        return Seen(self.pool, self.later.union(keys))


@dataclass(frozen=True)
class State:
    """Everything the next step needs, and nothing else."""

    step: int  # the last completed step; 0 is the bootstrap
    top: tuple[Scored, ...]  # what the generator sees next, best first
    seen: Seen  # every text scored in this job, by normalize(text)
    stale: int  # completed steps in a row without improving the top K
    # Every candidate scored so far, in the order scored: what epsilon-greedy exploration picks
    # from. Kept only when settings.epsilon > 0; a greedy step needs no more than the top K.
    scored: tuple[Scored, ...] = ()

    @property
    def best(self) -> Scored:
        return self.top[0]


@dataclass(frozen=True)
class StepResult:
    step: int
    candidates: tuple[Scored, ...]  # scored for the first time in this step, in the order produced
    state: State  # the state after this step
    improved: bool
    generation_seconds: float = 0.0
    scoring_seconds: float = 0.0
    # Lines of the generator's answers that were not new candidates, by reason (see parse_answer).
    rejected: Mapping[str, int] = field(default_factory=dict)
    # What the step asked of the LLM: requests sent, and the tokens of their prompts and answers
    # (None when the generator reported none for some answer).
    llm_requests: int = 0
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0

    @property
    def renders(self) -> int:
        """Candidates whose scoring made something (a text-to-image render, an edited image)."""
        return sum(c.made is not None for c in self.candidates)

    @property
    def top(self) -> tuple[Scored, ...]:
        return self.state.top

    @property
    def best(self) -> Scored:
        return self.state.best

    @property
    def mean_topk(self) -> float:
        return fmean(c.score for c in self.state.top)


class PromptTemplate(Protocol):
    """Builds the generator's conversation for a task (see worker.kinds)."""

    def messages(self, examples: Sequence[Scored], n: int, max_words: int) -> list[Message]: ...


def derive_seed(seed: int, step: int, round_: int = 0) -> int:
    """A seed for each (step, round): resuming at step k samples what a full run would."""
    return (seed * 1_000_003 + step * 7_919 + round_ * 104_729) % (2**31 - 1)


def greedy_top(pool: Sequence[Scored], k: int) -> list[Scored]:
    # Stable sort: among equal scores the earlier (older) candidate wins.
    return sorted(pool, key=lambda c: -c.score)[:k]


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of two texts' sets of words (parsing.words: normalized, any script): 0..1."""
    return _jaccard(set(words(a)), set(words(b)))


def distinct_first(ranked: Sequence[Scored], k: int, max_overlap: float) -> list[Scored]:
    """`ranked` reordered so that its first K overlap no better one of them by more than
    `max_overlap` (word_overlap), as long as enough such texts exist; the rest follow in order.
    Against the top K collapsing into one wording with a word changed ("a tripod on a stand",
    "... on a shelf", "... on a desk"): the generator copies what it is shown (BENCHMARKS.md,
    "The embedded scorer's eyes and the fluency guard"). The best always comes first."""
    kept: list[Scored] = []
    kept_words: list[set[str]] = []  # each kept text's words, split once (a pool has thousands of texts)
    left: list[Scored] = []
    for candidate in ranked:
        if len(kept) < k:
            its_words = set(words(candidate.text))
            if all(_jaccard(its_words, other) <= max_overlap for other in kept_words):
                kept.append(candidate)
                kept_words.append(its_words)
                continue
        left.append(candidate)
    return kept + left


def select_top(pool: Sequence[Scored], k: int, epsilon: float, rng: random.Random,
               max_overlap: float = 1.0) -> tuple[Scored, ...]:
    """The top K, epsilon-greedy: the best always stays (elitism), other slots may explore.
    With max_overlap < 1, near-copies of a better text give way to other texts (distinct_first)."""
    ranked = sorted(pool, key=lambda c: -c.score)
    if max_overlap < 1.0:
        ranked = distinct_first(ranked, k, max_overlap)
    if epsilon == 0.0 or len(ranked) <= k:
        return tuple(sorted(ranked[:k], key=lambda c: -c.score))
    chosen = [ranked[0]]
    rest = ranked[1:]
    while len(chosen) < k:
        pick = rng.randrange(len(rest)) if rng.random() < epsilon else 0
        chosen.append(rest.pop(pick))
    return tuple(sorted(chosen, key=lambda c: -c.score))


def _improved(state: State, candidates: Sequence[Scored], k: int) -> bool:
    """Did the greedy top K of everything scored so far get a better mean score? Greedy
    (epsilon 0), the state's top K is that top K; exploring, it is taken from `state.scored`."""
    before = [c.score for c in greedy_top(state.scored or state.top, k)]
    after = sorted(before + [c.score for c in candidates], reverse=True)[:k]
    return fmean(after) > fmean(before)  # fmean sums exactly: the order of the scores does not count


def unique_texts(pool: Iterable[str]) -> list[str]:
    """The texts step 0 scores: `pool` in order, without empty texts and without a text whose
    normalize() key an earlier one had (the first wording is kept)."""
    unique: dict[str, str] = {}
    for text in pool:
        key = normalize(text)
        if key and key not in unique:
            unique[key] = text
    return list(unique.values())


def bootstrap(pool: Sequence[str], scorer: Scorer, features: Any, settings: Settings) -> StepResult:
    """Step 0: score the initial pool once and keep its best K."""
    texts = unique_texts(pool)
    assert texts, "the initial pool is empty"
    started = time.perf_counter()
    scores = scorer.score_pool(features, texts)
    scoring_seconds = time.perf_counter() - started
    candidates = tuple(as_scored(t, s) for t, s in zip(texts, scores, strict=True))
    rng = random.Random(derive_seed(settings.seed, 0))
    state = State(
        step=0,
        top=select_top(candidates, settings.top_k, settings.epsilon, rng, settings.top_k_overlap),
        seen=Seen(frozenset(normalize(t) for t in texts)),
        stale=0,
        scored=candidates if settings.epsilon > 0.0 else (),
    )
    return StepResult(0, candidates, state, improved=True, scoring_seconds=scoring_seconds)


class Proposals(list):
    """New candidate texts, in order; `rejected` counts the lines of the answers that were not
    candidates, by reason; `requests`, `prompt_tokens` and `completion_tokens` what asking cost
    (the tokens None once an answer came without them: a sum of some would be no total)."""

    def __init__(self) -> None:
        super().__init__()
        self.rejected: Counter = Counter()
        self.requests = 0
        self.prompt_tokens: int | None = 0
        self.completion_tokens: int | None = 0

    def count(self, completions: Sequence[str]) -> None:
        self.requests += len(completions)
        for answer in completions:
            prompt, completion = getattr(answer, "prompt_tokens", None), getattr(answer, "completion_tokens", None)
            self.prompt_tokens = None if prompt is None or self.prompt_tokens is None else self.prompt_tokens + prompt
            self.completion_tokens = (None if completion is None or self.completion_tokens is None
                                      else self.completion_tokens + completion)


def generate_candidates(
    state: State, generator: Generator, template: PromptTemplate, settings: Settings, step: int
) -> Proposals:
    """Ask for `settings.candidates` new texts; ask again while too few usable ones come back."""
    new = Proposals()
    taken = state.seen
    for round_ in range(settings.max_generation_rounds):
        missing = settings.candidates - len(new)
        if missing <= 0:
            break
        n_prompts = min(settings.prompts_per_step, missing)
        per_prompt = -(-missing // n_prompts)  # ceil
        conversation = template.messages(state.top, per_prompt, settings.max_words)
        completions = generator.complete(
            [conversation] * n_prompts,
            seed=derive_seed(settings.seed, step, round_),
            temperature=settings.temperature,
            top_p=settings.top_p,
            # Room for the numbered list: ~1.5 tokens a word plus numbering and newline.
            max_tokens=per_prompt * (settings.max_words * 3 // 2 + 6),
        )
        new.count(completions)
        for completion in completions:
            parsed = parse_answer(completion, max_words=settings.max_words, exclude=taken)
            new.rejected.update(parsed.rejected)
            taken = taken.adding(normalize(text) for text in parsed.candidates)
            new.extend(parsed.candidates)
    if len(new) > settings.candidates:
        new.rejected["over the number asked for"] += len(new) - settings.candidates
        del new[settings.candidates:]
    return new


def step(
    state: State,
    generator: Generator,
    scorer: Scorer,
    features: Any,
    template: PromptTemplate,
    settings: Settings,
) -> StepResult:
    """One MILS iteration: propose, score what is new, keep the best K."""
    number = state.step + 1
    started = time.perf_counter()
    texts = generate_candidates(state, generator, template, settings, number)
    generated = time.perf_counter()
    scores = scorer.score(features, texts) if texts else []
    scoring_seconds = time.perf_counter() - generated
    candidates = tuple(as_scored(t, s) for t, s in zip(texts, scores, strict=True))

    explore = settings.epsilon > 0.0
    scored = state.scored + candidates if explore else ()
    # Old top first: on equal scores the incumbent stays, so the best never goes down.
    pool = list(state.top) + list(candidates)
    if explore:  # exploration may pick any candidate scored so far
        in_pool = set(pool)
        pool += [c for c in scored if c not in in_pool]
    rng = random.Random(derive_seed(settings.seed, number))
    top = select_top(pool, settings.top_k, settings.epsilon, rng, settings.top_k_overlap)
    improved = _improved(state, candidates, settings.top_k)
    assert top[0].score >= state.best.score, "elitism: the best score went down"
    seen = state.seen.adding(normalize(c.text) for c in candidates)
    new_state = State(number, top, seen, 0 if improved else state.stale + 1, scored)
    return StepResult(number, candidates, new_state, improved, generated - started, scoring_seconds,
                      dict(texts.rejected), texts.requests, texts.prompt_tokens, texts.completion_tokens)


def should_stop(state: State, settings: Settings) -> bool:
    if state.step >= settings.steps:
        return True
    return settings.patience is not None and state.stale >= settings.patience


def run(
    pool: Sequence[str],
    generator: Generator,
    scorer: Scorer,
    sample: Any,
    template: PromptTemplate,
    settings: Settings,
) -> Iterator[StepResult]:
    """The whole job in memory: yields step 0 (bootstrap), then each step until done."""
    features = scorer.encode_sample(sample)
    result = bootstrap(pool, scorer, features, settings)
    yield result
    while not should_stop(result.state, settings):
        result = step(result.state, generator, scorer, features, template, settings)
        yield result
