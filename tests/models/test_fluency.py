"""The fluency guard (worker.models.fluency) on made-up good and degenerate captions, with the
tests' word-overlap scorer (a tiny deterministic fake) as the scorer it guards."""

from __future__ import annotations

import pytest

from worker import core
from worker.core import Score
from worker.kinds import job_settings
from worker.kinds.base import EMBEDDED_FLUENCY
from worker.models.fluency import FluencyGuard, defects, with_fluency
from tests.support.fakes import WordOverlapScorer

GOOD = [
    "There is a tabby cat on a rug.",
    "A cup of espresso on a red saucer with a small metal spoon.",
    "An astronaut in an orange space suit next to an American flag.",
    "Two cats and three dogs on a St. Bernard's rug.",  # a title's dot is no sentence end
    'A shop sign that reads "Open".',
    "A bowl of soup (tomato) on a wooden table.",
]
DEGENERATE = {
    "There is a cat by cat.": "repeats",
    "(photo of a bicycle helmet against a bicycle helmet against a volleyball)": "repeats",
    "Four small jellyfish at the surface of the water. This is a good mention.": "sentences",
    "0100: A bicycle helmet on a table.": "stray",
    "0.1898: A caterpillar on a leaf.": "stray",
    "A weathered street lamp near sunset]": "stray",
    'A cat on a "rug.': "stray",
}


@pytest.mark.parametrize("text", GOOD)
def test_well_formed_captions_have_no_defect(text):
    assert defects(text) == {"repeats": 0, "sentences": 0, "stray": 0}


@pytest.mark.parametrize("text, kind", DEGENERATE.items())
def test_each_kind_of_degenerate_caption_is_counted(text, kind):
    found = defects(text)
    assert found[kind] >= 1, found
    assert sum(found.values()) == found[kind]  # and nothing else is blamed


def test_plurals_count_as_the_same_word():
    assert defects("A cat among cats.")["repeats"] == 1
    assert defects("A glass of water and a grass field.")["repeats"] == 0


def test_the_guard_takes_weight_per_defect_and_keeps_the_parts():
    guard = FluencyGuard(WordOverlapScorer(), weight=0.2)
    features = guard.encode_sample("a tabby cat on a rug")
    good, repeated = guard.score(features, ["a tabby cat on a rug", "a tabby cat on a cat rug"])
    assert isinstance(good, Score) and good.details["match"] == pytest.approx(good.value)
    assert repeated.details["repeats"] == 1.0
    assert repeated.value == pytest.approx(repeated.details["match"] - 0.2)
    assert good.value > repeated.value  # the degenerate one matched the target as well, and loses
    # The pool is scored the same way (as plain floats: step 0 is kept compactly).
    pool = guard.score_pool(features, ["a tabby cat on a rug", "a tabby cat on a cat rug"])
    assert pool == pytest.approx([good.value, repeated.value])


def test_the_guard_keeps_the_wrapped_scores_own_parts():
    class TwoPartScorer(WordOverlapScorer):
        def score(self, features, texts):
            return [Score(v, {"style": 0.5}) for v in super().score(features, texts)]

    (scored,) = FluencyGuard(TwoPartScorer(), weight=1.0).score(("cat",), ["cat cat"])
    assert scored.details["style"] == 0.5 and scored.details["repeats"] == 1.0


def test_a_guarded_job_never_lets_a_degenerate_caption_win():
    """The core loop with a scorer that a repeated word fools: unguarded the repeat wins,
    guarded the well-formed caption stays best."""

    class RepeatLover(WordOverlapScorer):
        def _score(self, features, texts):
            return [len(t.split()) * 0.01 + t.lower().count("cat") * 0.1 for t in texts]

    settings = core.Settings(steps=1, top_k=2, candidates=2)
    pool = ["A tabby cat on a rug.", "A cat cat cat by cat."]
    plain = core.bootstrap(pool, RepeatLover(), ("x",), settings)
    assert plain.best.text == "A cat cat cat by cat."
    guarded = core.bootstrap(pool, with_fluency(RepeatLover(), 0.15), ("x",), settings)
    assert guarded.best.text == "A tabby cat on a rug."


def test_defaults_on_for_the_embedded_scorers_captions_only():
    assert job_settings("image-caption", "embedded", "embedded").fluency_weight == EMBEDDED_FLUENCY
    assert job_settings("video-caption", "embedded", "embedded").fluency_weight == EMBEDDED_FLUENCY
    # CLIP-class scorers stay paper-faithful, and may opt in.
    assert job_settings("image-caption", "embedded", "open_clip:ViT-B-32@openai").fluency_weight == 0.0
    assert job_settings("image-caption", "m", "open_clip:ViT-B-32@openai", fluency_weight=0.3).fluency_weight == 0.3
    # The user's 0 turns it off; prompts and instructions are not captions.
    assert job_settings("image-caption", "embedded", "embedded", fluency_weight=0.0).fluency_weight == 0.0
    assert job_settings("text-to-image", "embedded", "embedded").fluency_weight == 0.0
    with pytest.raises(core.SettingsError, match="fluency_weight"):
        job_settings("image-caption", "embedded", "embedded", fluency_weight=-1)


def test_the_guard_takes_scorers_that_answer_with_parts_or_renders():
    """Style and render scorers answer Score objects (with what they made) for the pool too."""

    class RenderingScorer(WordOverlapScorer):
        def score(self, features, texts):
            return [Score(v, {"style": 0.5}, made=f"render of {t}") for t, v in zip(texts, super().score(features, texts))]

        score_pool = score

    guard = FluencyGuard(RenderingScorer(), weight=0.5)
    pool = guard.score_pool(("cat",), ["a cat", "a cat cat"])
    assert [p.made for p in pool] == ["render of a cat", "render of a cat cat"]
    assert pool[1].value == pytest.approx(pool[1].details["match"] - 0.5) and pool[1].details["style"] == 0.5
    (pair,) = FluencyGuard(WordOverlapScorer(), 1.0)._guarded(["cat cat"], [(0.7, {"content": 0.1})])
    assert pair.value == pytest.approx(-0.3) and pair.details["content"] == 0.1


def test_numbers_people_write_are_not_scores():
    assert defects("A 1967 Ford at 10:30 with 1,000 balloons and a 3.5 m pole.") == \
        {"repeats": 0, "sentences": 0, "stray": 0}
    assert defects("Mrs. Smith walks her dog.")["sentences"] == 0
    assert defects("3: A cat on a mat.")["stray"] == 1


def test_the_guard_can_be_copied():
    import copy

    guard = FluencyGuard(WordOverlapScorer(), 0.1)
    assert copy.copy(guard).weight == 0.1
