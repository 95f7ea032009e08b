"""Unit tests of the optimizer core (worker.core) with tiny deterministic fakes.

No torch, no model library: the plug-ins are the fakes of tests/support/fakes.py.
"""

from __future__ import annotations

import inspect
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest


from tests.support.fakes import (  # noqa: E402
    NonsenseGenerator,
    ScriptedGenerator,
    WordOverlapScorer,
    asked_n,
    prompt_examples,
)

from worker.core import (  # noqa: E402
    Scored,
    Seen,
    Settings,
    SettingsError,
    State,
    bootstrap,
    normalize,
    parse_candidates,
    run,
    step,
)
from worker.core.optimizer import (  # noqa: E402
    derive_seed, distinct_first, generate_candidates, greedy_top, select_top, word_overlap)
from worker.core.protocols import Generator, Scorer  # noqa: E402
from worker.kinds.prompts import CaptionTemplate  # noqa: E402

TARGET = "a small orange cat sleeping on a red wooden chair in the garden"
POOL = [
    "a dog running on the beach",
    "a cat on a sofa",
    "A cat on a sofa.",  # the same candidate as the line above once normalized
    "an orange fruit on a table",
    "a red car parked in the street",
    "a wooden chair in a room",
    "a garden with flowers",
    "a person riding a bicycle",
    "a small bird on a branch",
    "a bowl of soup",
    "children playing in the park",
]
EXTRA = ["sleeping", "kitten", "blue", "grass", "sunny", "lamp"]
TEMPLATE = CaptionTemplate()


def _run(settings: Settings, generator=None, scorer=None):
    generator = generator if generator is not None else ScriptedGenerator(extra_words=EXTRA)
    scorer = scorer if scorer is not None else WordOverlapScorer()
    return list(run(POOL, generator, scorer, TARGET, TEMPLATE, settings))


def _scored_until(results, last):
    """Every candidate scored up to and including step `last`, in the order scored."""
    return [c for r in results[:last.step + 1] for c in r.candidates]


def _trajectory(results):
    return [
        (r.step, [(c.text, c.score) for c in r.candidates], [(c.text, c.score) for c in r.top], r.state.stale)
        for r in results
    ]


def _parse(text: str, **kwargs) -> list[str]:
    kwargs.setdefault("max_words", 20)
    return parse_candidates(text, **kwargs)


# --------------------------------------------------------------------------- fakes


@pytest.mark.parametrize(
    ("fake", "protocol", "methods"),
    [
        (ScriptedGenerator, Generator, ["complete"]),
        (NonsenseGenerator, Generator, ["complete"]),
        (WordOverlapScorer, Scorer, ["encode_sample", "score", "score_pool"]),
    ],
)
def test_fakes_implement_the_protocols_exactly(fake, protocol, methods):
    assert isinstance(fake.name, str) and fake.name.startswith("fake")
    for method in methods:
        want = inspect.signature(getattr(protocol, method))
        got = inspect.signature(getattr(fake, method))
        assert [(p.name, p.kind) for p in got.parameters.values()] == [
            (p.name, p.kind) for p in want.parameters.values()
        ]


def test_word_overlap_scorer_prefers_the_target():
    scorer = WordOverlapScorer()
    features = scorer.encode_sample(TARGET)
    full, half, none = scorer.score(features, [TARGET, "a small orange cat", "zork blorp"])
    assert full > half > 0 > none
    assert full == pytest.approx(1.0 - 0.001 * len(TARGET.split()))


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "line",
    [
        "1. A cat on a mat",
        "2) A cat on a mat",
        "(3) A cat on a mat",
        "4: A cat on a mat",
        "- A cat on a mat",
        "* A cat on a mat",
        "• A cat on a mat",
        "  12.   A cat on a mat  ",
        "0.412: A cat on a mat",
        "[0.41] A cat on a mat",
        "(0.41) A cat on a mat",
        "1. 0.412: A cat on a mat",
        "2) [0.41] A cat on a mat",
        "Caption 3: A cat on a mat",
        "caption: A cat on a mat",
        "1. Caption 1: A cat on a mat",
        '"A cat on a mat"',
        "“A cat on a mat”",
        "**A cat on a mat**",
        '1. **"A cat on a mat"**',
        "- 'A cat on a mat'",
    ],
)
def test_parse_strips_marks_scores_labels_and_wrappers(line):
    assert _parse(line) == ["A cat on a mat"]


def test_parse_ignores_header_when_a_numbered_list_exists():
    completion = (
        "Sure! Here are 3 captions for you\n"
        "\n"
        "1. A cat on a mat\n"
        "2. A dog in a park\n"
        "\n"
        "3. A bird on a wire\n"
        "I hope these help you a lot\n"
    )
    assert _parse(completion) == ["A cat on a mat", "A dog in a park", "A bird on a wire"]


def test_parse_ignores_header_of_echoed_score_lines():
    completion = "Here are some better ones\n0.912: A cat on a mat\n0.874: A dog in a park"
    assert _parse(completion) == ["A cat on a mat", "A dog in a park"]


def test_parse_header_with_colon_is_dropped_even_without_a_list():
    assert _parse("Sure! Here are 5 captions:\nA cat on a mat") == ["A cat on a mat"]


def test_parse_accepts_plain_lines_when_there_is_no_list():
    completion = "A cat on a mat\n\n   \nA dog in a park\n**A bird on a wire**\n"
    assert _parse(completion) == ["A cat on a mat", "A dog in a park", "A bird on a wire"]


def test_parse_empty_and_blank_completions():
    assert _parse("") == []
    assert _parse("\n\n   \n\t\n") == []
    assert _parse("1. \n2) \n- ") == []


def test_parse_drops_overlong_lines():
    five = "one two three four five"
    six = "one two three four five six"
    assert _parse(f"1. {five}\n2. {six}", max_words=5) == [five]
    assert _parse(f"1. {five}\n2. {six}", max_words=6) == [five, six]


def test_parse_drops_one_word_lines():
    assert _parse("1. Cat\n2. A cat\n3. !!!\n4) Kitten.") == ["A cat"]
    assert _parse("1. Cat\n2. A cat", min_words=1) == ["Cat", "A cat"]


def test_parse_drops_duplicates_within_a_completion():
    completion = "1. A cat on a mat.\n2. a CAT, on a mat!\n3) A  cat on   a mat\n4. A dog in a park"
    assert _parse(completion) == ["A cat on a mat.", "A dog in a park"]


def test_parse_drops_excluded_texts():
    exclude = {normalize("A dog in a park"), normalize("a bird, on a wire")}
    completion = "1. A Dog in a park!\n2. A cat on a mat\n3. A BIRD ON A WIRE"
    assert _parse(completion, exclude=exclude) == ["A cat on a mat"]
    assert exclude == {"a dog in a park", "a bird on a wire"}  # not mutated


def test_normalize_ignores_case_punctuation_and_spacing():
    assert normalize("  A Cat,  on a MAT! ") == normalize("a cat on a mat") == "a cat on a mat"
    assert normalize("...") == ""


# --------------------------------------------------------------------------- generate_candidates


def _state(texts=("a cat on a sofa", "a dog on a rug")) -> State:
    top = tuple(Scored(t, 1.0 - i / 10) for i, t in enumerate(texts))
    return State(step=0, top=top, seen=Seen(frozenset(normalize(c.text) for c in top)), stale=0)


def test_generate_asks_again_with_another_seed_when_too_few_lines():
    generator = ScriptedGenerator(script=[
        "Sure, here you go:\n1. A red cat\n2. Cat\n3. A CAT ON A SOFA",  # one usable line of three
        "1. A blue cat\n2. A green cat\n3. A pink cat",
    ])
    settings = Settings(candidates=3, seed=5)
    texts = generate_candidates(_state(), generator, TEMPLATE, settings, step=4)
    assert texts == ["A red cat", "A blue cat", "A green cat"]
    assert len(generator.calls) == 2
    assert [c.seed for c in generator.calls] == [derive_seed(5, 4, 0), derive_seed(5, 4, 1)]
    assert generator.calls[0].seed != generator.calls[1].seed
    assert [asked_n(c.conversations[0]) for c in generator.calls] == [3, 2]  # asks for what is missing


def test_generate_stops_after_max_generation_rounds():
    generator = ScriptedGenerator(script=["Cat"] * 10)  # never a usable line
    settings = Settings(candidates=4, max_generation_rounds=3)
    assert generate_candidates(_state(), generator, TEMPLATE, settings, step=1) == []
    assert len(generator.calls) == 3
    assert len({c.seed for c in generator.calls}) == 3


def test_generate_does_not_ask_again_when_enough_came_back():
    generator = ScriptedGenerator(script=["\n".join(f"{i}. a cat number {i}" for i in range(1, 11))])
    texts = generate_candidates(_state(), generator, TEMPLATE, Settings(candidates=4), step=1)
    assert texts == [f"a cat number {i}" for i in range(1, 5)]
    assert len(generator.calls) == 1


def test_generate_never_returns_more_than_candidates_even_over_rounds():
    generator = ScriptedGenerator(script=[
        "1. a cat one\n2. a cat two",
        "1. a cat three\n2. a cat four\n3. a cat five\n4. a cat six",
    ])
    texts = generate_candidates(_state(), generator, TEMPLATE, Settings(candidates=3), step=1)
    assert texts == ["a cat one", "a cat two", "a cat three"]


def test_generate_never_returns_already_scored_texts():
    state = _state(("a cat on a sofa", "a dog on a rug", "a bird on a wire"))
    generator = ScriptedGenerator(script=[
        "1. A Cat on a sofa!\n2. a dog, on a rug\n3. a fish in a bowl",
        "1. A BIRD ON A WIRE\n2. a fish in a bowl.\n3. a cow in a field",
    ])
    texts = generate_candidates(state, generator, TEMPLATE, Settings(candidates=3), step=1)
    assert texts == ["a fish in a bowl", "a cow in a field"]
    assert not {normalize(t) for t in texts} & set(state.seen)


def test_generate_splits_across_prompts_per_step():
    generator = ScriptedGenerator(script=[
        "1. a cat one\n2. a cat two",
        "1. a cat three\n2. a cat four",
        "1. a cat five\n2. a cat two",  # a line already taken by another prompt of the batch
        "1. a cat six\n2. a cat seven",
    ])
    settings = Settings(candidates=6, prompts_per_step=3, temperature=0.7, top_p=0.8, max_words=10)
    texts = generate_candidates(_state(), generator, TEMPLATE, settings, step=2)
    assert texts == [f"a cat {w}" for w in ["one", "two", "three", "four", "five", "six"]]
    first, second = generator.calls
    assert len(first.conversations) == 3
    assert [asked_n(c) for c in first.conversations] == [2, 2, 2]
    assert first.temperature == 0.7 and first.top_p == 0.8
    assert first.max_tokens == 2 * (10 * 3 // 2 + 6)
    assert len(second.conversations) == 1  # one missing: one prompt, not three
    assert asked_n(second.conversations[0]) == 1


def test_generate_uneven_split_rounds_up():
    generator = ScriptedGenerator(script=[""] * 2)
    generate_candidates(_state(), generator, TEMPLATE, Settings(candidates=5, prompts_per_step=2,
                                                                max_generation_rounds=1), step=1)
    assert [asked_n(c) for c in generator.calls[0].conversations] == [3, 3]


# --------------------------------------------------------------------------- run: scoring, elitism


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
def test_run_never_rescores_a_text(epsilon):
    generator = ScriptedGenerator(extra_words=EXTRA)
    scorer = WordOverlapScorer()
    results = _run(Settings(steps=8, top_k=4, candidates=6, epsilon=epsilon, prompts_per_step=2),
                   generator, scorer)
    keys = [normalize(t) for t in scorer.seen]
    assert len(keys) == len(set(keys)), "a text was scored twice"
    assert scorer.pool_calls == 1
    assert scorer.score_calls == len(results) - 1
    # Not vacuous: the generator did echo texts that had already been scored.
    raw = [line.split(" ", 1)[-1] for call in generator.calls for c in call.completions
           for line in c.splitlines()]
    assert len({normalize(x) for x in raw} & set(keys)) > len(results)
    # Everything scored is in the job's memory, once.
    assert set(results[-1].state.seen) == set(keys)


@pytest.mark.parametrize("epsilon", [0.0, 0.5, 1.0])
def test_run_best_score_never_decreases(epsilon):
    results = _run(Settings(steps=10, top_k=4, candidates=5, epsilon=epsilon, seed=3))
    bests = [r.best.score for r in results]
    assert all(b >= a for a, b in zip(bests, bests[1:]))
    for r in results:  # the best kept is the best ever scored
        assert r.best.score == max(c.score for c in _scored_until(results, r))
        assert [c.score for c in r.top] == sorted((c.score for c in r.top), reverse=True)
        assert len(r.top) == 4
    # Not vacuous: some steps produced only candidates worse than the incumbent best.
    assert any(r.candidates and max(c.score for c in r.candidates) < prev.best.score
               for prev, r in zip(results, results[1:]))


def test_run_step_zero_is_the_bootstrap_of_the_unique_pool():
    results = _run(Settings(steps=1, top_k=3, candidates=3))
    zero = results[0]
    assert zero.step == 0 and zero.state.step == 0 and zero.improved
    assert len(zero.candidates) == len(POOL) - 1  # "A cat on a sofa." is "a cat on a sofa"
    assert [c.text for c in zero.top] == [c.text for c in greedy_top(zero.candidates, 3)]


def test_prompts_show_the_current_top_best_first():
    generator = ScriptedGenerator(extra_words=EXTRA)
    results = _run(Settings(steps=4, top_k=3, candidates=4), generator)
    first_calls = [c for c in generator.calls]
    assert first_calls
    for call in first_calls:
        for conversation in call.conversations:
            scores = [s for s, _ in prompt_examples(conversation)]
            assert len(scores) == 3
            assert scores == sorted(scores, reverse=True)
    # Step k's prompt shows the top after step k-1.
    shown = [t for _, t in prompt_examples(generator.calls[0].conversations[0])]
    assert shown == [c.text for c in results[0].top]


# --------------------------------------------------------------------------- early stop


def test_patience_stops_after_exactly_that_many_non_improving_steps():
    generator = NonsenseGenerator()
    results = _run(Settings(steps=10, top_k=3, candidates=4, patience=2), generator)
    assert [r.step for r in results] == [0, 1, 2]
    assert [r.improved for r in results[1:]] == [False, False]
    assert [r.state.stale for r in results] == [0, 1, 2]
    assert len(generator.calls) == 2
    assert results[-1].top == results[0].top  # nothing worse got in


def test_without_patience_every_step_runs():
    results = _run(Settings(steps=5, top_k=3, candidates=4), NonsenseGenerator())
    assert [r.step for r in results] == [0, 1, 2, 3, 4, 5]
    assert [r.state.stale for r in results] == [0, 1, 2, 3, 4, 5]


def test_improving_step_resets_stale():
    results = _run(Settings(steps=6, top_k=3, candidates=6, patience=6, seed=1))
    for before, after in zip(results, results[1:]):
        assert after.state.stale == (0 if after.improved else before.state.stale + 1)
    assert any(r.improved for r in results[1:])


# --------------------------------------------------------------------------- epsilon-greedy


POOL_SCORED = [Scored(f"candidate number {i}", s) for i, s in
               enumerate(random.Random(42).sample(range(1000), 40))]


def test_select_top_epsilon_zero_is_greedy():
    for seed in range(5):
        top = select_top(POOL_SCORED, 6, 0.0, random.Random(seed))
        assert list(top) == greedy_top(POOL_SCORED, 6)
        assert [c.score for c in top] == sorted((c.score for c in POOL_SCORED), reverse=True)[:6]


def test_select_top_epsilon_one_keeps_the_best_but_explores():
    greedy = greedy_top(POOL_SCORED, 6)
    for seed in range(5):
        top = select_top(POOL_SCORED, 6, 1.0, random.Random(seed))
        assert len(top) == 6 and len(set(top)) == 6
        assert top[0] == greedy[0]
        assert list(top) != greedy
        assert set(top) <= set(POOL_SCORED)
        assert [c.score for c in top] == sorted((c.score for c in top), reverse=True)


def test_select_top_is_deterministic_for_a_seed():
    a = select_top(POOL_SCORED, 6, 0.5, random.Random(11))
    b = select_top(POOL_SCORED, 6, 0.5, random.Random(11))
    assert a == b
    others = {select_top(POOL_SCORED, 6, 0.5, random.Random(s)) for s in range(12, 20)}
    assert len(others | {a}) > 1  # the seed does matter


def test_select_top_with_a_small_pool_returns_it_all():
    top = select_top(POOL_SCORED[:4], 6, 1.0, random.Random(0))
    assert list(top) == greedy_top(POOL_SCORED[:4], 6)


TRIPODS = [Scored("A close-up of a tripod on a stand.", 0.30), Scored("A close-up of a tripod on a shelf.", 0.29),
           Scored("A close-up of a tripod on a desk.", 0.28), Scored("A man using a tripod.", 0.27),
           Scored("An old camera in a field.", 0.20), Scored("A close-up of a tripod on a TV.", 0.19)]


def test_word_overlap_is_the_jaccard_of_the_word_sets():
    assert word_overlap("A cat on a rug.", "a RUG on a cat") == 1.0
    assert word_overlap("A cat on a rug.", "A dog on a mat.") == pytest.approx(2 / 6)
    assert word_overlap("猫が寝ている", "猫が寝ている") == 1.0 and word_overlap("猫", "cat") == 0.0


def test_an_unspaced_caption_is_words_of_two_characters_for_the_top_k_overlap_too():
    """The optimizer, the parser and the fluency guard count words alike: in Chinese or Japanese
    two characters are a word, so two captions that share half their words overlap by a third,
    not 0 (as one "word" each) or 1."""
    from worker.core.parsing import word_count, words
    from worker.models.fluency import repeats

    assert words("一只猫在沙发上") == ["一只", "猫在", "沙发", "上"] and word_count("一只猫在沙发上") == 4
    assert words("iPhone手机, A cat!") == ["iphone", "手机", "a", "cat"]
    assert word_overlap("一只猫在沙发上", "一只猫在床上睡") == pytest.approx(2 / 6)
    assert repeats("沙发上的沙发") == 1 and repeats("a cat by a cat's bed") == 1 and repeats("a 100 by 100") == 0


def test_a_top_k_overlap_keeps_near_copies_of_a_better_text_out_while_others_are_left():
    top = select_top(TRIPODS, 3, 0.0, random.Random(0), max_overlap=0.5)
    # The best first; its copies with one word changed (overlap 6/8) give way to other texts.
    assert [c.text for c in top] == ["A close-up of a tripod on a stand.", "A man using a tripod.",
                                     "An old camera in a field."]
    # Too few different texts: the copies fill the rest, best first.
    top = select_top(TRIPODS, 5, 0.0, random.Random(0), max_overlap=0.5)
    assert [c.score for c in top] == [0.30, 0.29, 0.28, 0.27, 0.20]
    assert select_top(TRIPODS, 3, 0.0, random.Random(0), max_overlap=1.0) == tuple(TRIPODS[:3])  # off: greedy
    assert distinct_first(TRIPODS, 2, 0.5)[:2] == [TRIPODS[0], TRIPODS[3]]


def test_a_run_with_a_top_k_overlap_shows_different_wordings_and_never_loses_its_best():
    plain = _run(Settings(steps=4, top_k=4, candidates=5, seed=2))
    distinct = _run(Settings(steps=4, top_k=4, candidates=5, seed=2, top_k_overlap=0.5))
    for result in distinct[1:]:
        texts = [c.text for c in result.state.top]
        pairs = [(a, b) for i, a in enumerate(texts) for b in texts[i + 1:]]
        assert all(word_overlap(a, b) <= 0.5 for a, b in pairs) or len(texts) < 4
    assert [r.state.best.score for r in distinct] == sorted(r.state.best.score for r in distinct)  # elitism
    assert [c.text for c in plain[-1].state.top] != [c.text for c in distinct[-1].state.top]
    with pytest.raises(SettingsError, match="top_k_overlap must be between 0 and 1"):
        Settings(top_k_overlap=1.5)


def test_run_with_epsilon_explores_beyond_the_greedy_top():
    greedy = _run(Settings(steps=6, top_k=4, candidates=5, epsilon=0.0, seed=2))
    explore = _run(Settings(steps=6, top_k=4, candidates=5, epsilon=1.0, seed=2))
    assert [c.text for c in greedy[0].top] == [c.text for c in greedy_top(greedy[0].candidates, 4)]
    differs = False
    for r in explore:
        want = greedy_top(_scored_until(explore, r), 4)
        assert r.top[0].score == want[0].score
        differs |= [c.text for c in r.top] != [c.text for c in want]
    assert differs


# --------------------------------------------------------------------------- determinism, resume


@pytest.mark.parametrize("epsilon", [0.0, 0.4])
def test_same_seed_same_trajectory(epsilon):
    settings = Settings(steps=6, top_k=4, candidates=5, epsilon=epsilon, seed=9, prompts_per_step=2)
    assert _trajectory(_run(settings)) == _trajectory(_run(settings))


def test_different_seed_different_trajectory():
    a = _run(Settings(steps=4, top_k=4, candidates=5, seed=1))
    b = _run(Settings(steps=4, top_k=4, candidates=5, seed=2))
    assert _trajectory(a)[0] == _trajectory(b)[0]  # the bootstrap does not sample
    assert _trajectory(a)[1:] != _trajectory(b)[1:]


def _to_plain(state: State) -> str:
    return json.dumps({
        "step": state.step,
        "top": [[c.text, c.score] for c in state.top],
        "seen": [sorted(state.seen.pool), sorted(state.seen.later)],
        "scored": [[c.text, c.score] for c in state.scored],
        "stale": state.stale,
    })


def _from_plain(data: str) -> State:
    d = json.loads(data)
    return State(
        step=d["step"],
        top=tuple(Scored(t, s) for t, s in d["top"]),
        seen=Seen(frozenset(d["seen"][0]), frozenset(d["seen"][1])),
        scored=tuple(Scored(t, s) for t, s in d["scored"]),
        stale=d["stale"],
    )


@pytest.mark.parametrize("epsilon", [0.0, 0.5])
def test_resume_step_by_step_equals_an_uninterrupted_run(epsilon):
    settings = Settings(steps=6, top_k=4, candidates=5, epsilon=epsilon, seed=4, prompts_per_step=2)
    whole = _run(settings)

    # Each step in a "new process": fresh plug-ins, state rebuilt from plain data.
    scorer = WordOverlapScorer()
    features = scorer.encode_sample(TARGET)
    resumed = [bootstrap(POOL, scorer, features, settings)]
    while resumed[-1].step < settings.steps:
        state = _from_plain(_to_plain(resumed[-1].state))
        scorer = WordOverlapScorer()
        generator = ScriptedGenerator(extra_words=EXTRA)
        resumed.append(step(state, generator, scorer, scorer.encode_sample(TARGET), TEMPLATE, settings))

    assert _trajectory(resumed) == _trajectory(whole)
    assert [r.improved for r in resumed] == [r.improved for r in whole]


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"steps": 0}, "steps"),
        ({"top_k": 0}, "top_k"),
        ({"candidates": 0}, "candidates"),
        ({"patience": 0}, "patience"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"epsilon": -0.1}, "epsilon"),
        ({"temperature": 0}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.1}, "top_p"),
        ({"max_words": 0}, "max_words"),
        ({"candidates": 4, "prompts_per_step": 5}, "prompts_per_step"),
        ({"prompts_per_step": 0}, "prompts_per_step"),
        ({"max_generation_rounds": 0}, "max_generation_rounds"),
    ],
)
def test_bad_settings_raise_naming_the_setting(changes, name):
    with pytest.raises(SettingsError, match=name):
        Settings(**changes)
    with pytest.raises(SettingsError, match=name):
        Settings.from_dict(changes)
    with pytest.raises(SettingsError, match=name):
        Settings().replace(**changes)


def test_from_dict_rejects_unknown_keys_by_name():
    with pytest.raises(SettingsError, match=r"(?i)unknown.*top_q"):
        Settings.from_dict({"steps": 3, "top_q": 0.9})
    with pytest.raises(SettingsError, match=r"(?i)unknown.*\bbeam\b.*\btop_q\b"):
        Settings.from_dict({"top_q": 0.9, "beam": 2, "steps": 0})  # unknown keys first, all named


def test_settings_roundtrip_and_defaults():
    s = Settings(steps=3, epsilon=0.25, patience=2)
    assert Settings.from_dict(s.to_dict()) == s
    assert Settings.from_dict({}) == Settings()
    assert Settings(epsilon=0.0).epsilon == 0.0 and Settings(epsilon=1.0).epsilon == 1.0
    assert Settings(candidates=4, prompts_per_step=4).prompts_per_step == 4


# --------------------------------------------------------------------------- template


def test_caption_template_messages():
    examples = [Scored("a cat on a mat", 0.91234), Scored("a dog in a park", 0.5), Scored("a car", -0.02)]
    messages = CaptionTemplate().messages(examples, 7, 12)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    lines = user.splitlines()
    i = lines.index("0.9123: a cat on a mat")
    assert lines[i:i + 3] == ["0.9123: a cat on a mat", "0.5000: a dog in a park", "-0.0200: a car"]
    assert "at most 12 words" in user
    assert "Write 7 new captions" in user
    assert "numbered list of 7 captions" in user
    assert prompt_examples(messages) == [(0.9123, "a cat on a mat"), (0.5, "a dog in a park"), (-0.02, "a car")]
    assert CaptionTemplate(subject="a video").messages(examples, 1, 5)[1]["content"].count("a video") == 1


def test_core_and_fakes_import_no_model_library():
    code = (
        "import sys; import worker.core, worker.kinds.prompts, tests.support.fakes; "
        "print(sorted(m for m in ('torch', 'transformers', 'open_clip', 'sentence_transformers', "
        "'diffusers', 'numpy') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "line",
    ["1. **0.1898**: A caterpillar in a pond.", "Caption 2: 0.1898: A caterpillar in a pond.",
     "3. 0.1898: Caption: A caterpillar in a pond."],
)
def test_parse_strips_stacked_score_and_label_prefixes(line):
    # Seen from the embedded 0.5B model: prefixes in any order, scores in bold.
    assert parse_candidates(line, max_words=15) == ["A caterpillar in a pond."]
