"""Any list format an LLM answers in becomes clean candidates (worker.core.parsing), and what is
not a candidate is counted by reason. The field cases (tests/data/field_cases) are the markdown
table and the JSON array a chat model gave; the rest are variations of the same kinds."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.core import parse_answer, parse_candidates

CASES = Path(__file__).resolve().parents[1] / "data" / "field_cases"
FIVE = ["A tabby cat resting on a striped rug", "A gray cat lying on a carpet indoors",
        "A close-up of a tabby cat looking up", "A sleepy cat curled up on the floor",
        "A striped cat staring at the camera"]


@pytest.mark.parametrize("name", ["answer_markdown_table.txt", "answer_json_array.txt"])
def test_the_field_cases_give_five_clean_captions(name):
    parsed = parse_answer((CASES / name).read_text(), max_words=20)
    assert parsed.candidates == FIVE and not parsed.rejected


@pytest.mark.parametrize("answer", [
    '["A tabby cat resting on a striped rug", "A gray cat lying on a carpet indoors"]',  # unfenced, one line
    'Sure! Here you go:\n```\n[\n  {"caption": "A tabby cat resting on a striped rug"},\n'
    '  {"caption": "A gray cat lying on a carpet indoors"}\n]\n```',  # objects, in a plain fence
    "| Score | Caption |\n|:-----:|:--------|\n| 0.91 | A tabby cat resting on a striped rug |\n"
    "| 0.88 | A gray cat lying on a carpet indoors |",  # another table, with scores
    "1) A tabby cat resting on a striped rug\n2) A gray cat lying on a carpet indoors",
    "(1) A tabby cat resting on a striped rug\n(2) A gray cat lying on a carpet indoors",
    "1 - A tabby cat resting on a striped rug\n2 - A gray cat lying on a carpet indoors",
    "• A tabby cat resting on a striped rug\n• A gray cat lying on a carpet indoors",
    "➤ A tabby cat resting on a striped rug\n➤ A gray cat lying on a carpet indoors",
    "１．A tabby cat resting on a striped rug\n２．A gray cat lying on a carpet indoors",
    '1. "A tabby cat resting on a striped rug",\n2. "A gray cat lying on a carpet indoors",',
    "1. (A tabby cat resting on a striped rug)\n2. A gray cat lying on a carpet indoors]",
    "1. 0100: A tabby cat resting on a striped rug\n2. [0.41] A gray cat lying on a carpet indoors",
    "1. A tabby cat resting on a striped rug. This is a good mention.\n"
    "2. A gray cat lying on a carpet indoors\nThese captions should score higher.",
])
def test_any_list_format_gives_the_same_clean_candidates(answer):
    found = parse_candidates(answer, max_words=20)
    # The captions' own words and nothing else (a caption may keep its full stop).
    assert [line.rstrip(".") for line in found] == FIVE[:2], found


def test_leftovers_of_the_prompt_and_comments_are_rejected_and_counted():
    answer = ("Here are five new captions:\n"
              "1. A tabby cat resting on a striped rug\n"
              "2. This is a good mention.\n"
              "3. A tabby cat resting on a striped rug!\n"
              "4. Cat\n"
              "5. " + " ".join(["word"] * 30) + "\n"
              "I hope these help.")
    parsed = parse_answer(answer, max_words=20)
    assert parsed.candidates == FIVE[:1]
    assert parsed.rejected == {"outside the list": 2, "comment": 1, "repeated": 1, "too short": 1, "too long": 1}


def test_numbers_that_belong_to_the_caption_are_kept():
    for line in ["3-year-old boy on a bike", "10:30 clock on a tower wall", "3.5 mm lens on a table",
                 "2 cats on a sofa"]:
        assert parse_candidates(line, max_words=20) == [line]


def test_chinese_words_are_counted_two_characters_a_word():
    assert parse_candidates("1. 一只猫", max_words=20) == ["一只猫"]  # two words
    assert parse_candidates("1. 猫", max_words=20) == []  # one
    assert parse_candidates("1. " + "猫" * 41, max_words=20) == []  # 21 words


@pytest.mark.parametrize("line", [
    "This is a great white shark swimming in the ocean", "Note card pinned to a corkboard",
    "Sure-footed goat on a cliff", "Okay sign made with a hand", "Here is a dog on a beach",
    "Make it look like Van Gogh. Note the swirling brushstrokes.",
    # (Not "2001: A Space Odyssey poster": 3 to 5 digits and a colon are taken for an echoed score, as
    # the embedded LLM writes them: "3088: An tripod next to the mirror.")
    "A cozy cabin in the snow. It is a perfect winter evening.",
    ".45 caliber bullet on a table", "3.5-inch floppy disk on a desk", "3 - piece suit on a hanger",
    "The caption above a painting in a museum", "# 1 jersey hanging in a locker room",
])
def test_descriptions_that_look_like_markup_or_comments_are_kept_whole(line):
    assert parse_candidates(f"A cat on a rug\n{line}\nA dog on a mat", max_words=20)[1] == line
    assert parse_candidates(f"1. A cat on a rug\n2. {line}", max_words=20)[1] == line


def test_one_item_like_line_does_not_make_the_answer_a_list_and_a_keyword_list_is_not_the_answer():
    assert parse_candidates("# Captions\nA cat on a rug\nA dog on a mat", max_words=20) == ["A cat on a rug",
                                                                                        "A dog on a mat"]
    answer = '1. A cat on a rug\n2. A dog on a mat\nKeywords: ["cat", "rug"]'
    assert parse_candidates(answer, max_words=20) == ["A cat on a rug", "A dog on a mat"]


def test_words_keep_their_combining_marks():
    from worker.core import normalize

    assert normalize("दिन") != normalize("दीन")  # Hindi: two words that differ by a vowel sign
    assert parse_candidates("1. बिल्ली एक धारीदार कालीन पर सो रही है", max_words=8) == [
        "बिल्ली एक धारीदार कालीन पर सो रही है"]


# Answers the embedded LLM gave in the 12 skimage photos' default runs (benchmarks/malformed_candidates.py).
@pytest.mark.parametrize("line, clean", [
    ("3088: An tripod next to the mirror.", "An tripod next to the mirror."),
    ("A tripod at the mirror with a lamp. (Score: 0.409)", "A tripod at the mirror with a lamp."),
    ("A tripod with an old man using an lamp and a camera. Score=0.459)",
     "A tripod with an old man using an lamp and a camera."),
    ("| Scored Caption (negative): 0.2222: A parked scooter with the orange in the background |",
     "A parked scooter with the orange in the background"),
    ("| Scoredccaption: 0.0223: A parked scooter with two black motorcycles |",
     "A parked scooter with two black motorcycles"),
    ("-, 0.1773: A computer screen in an upper table.", "A computer screen in an upper table."),
    (". 0.1800, 0 .1799: a computer screen in a desk.", "a computer screen in a desk."),
    ("（best): A cropped photo of a city square at sunset.", "A cropped photo of a city square at sunset."),
    ('Caption": "A dog next to a golden retriever",', "A dog next to a golden retriever"),
    ("Four small jellyfish in a pool. This is a very well fit.", "Four small jellyfish in a pool."),
    ("A golf ball in one photo studio. This is even better than 0.2208.", "A golf ball in one photo studio."),
    ("An espresso at a kitchen counter,", "An espresso at a kitchen counter"),
    ("2.2548 (parked scooter on white street)", "parked scooter on white street"),
    ("Four small jelly(fish near the surface of the water.", "Four small jellyfish near the surface of the water."),
])
def test_what_the_embedded_llm_wrote_comes_out_clean(line, clean):
    assert parse_candidates(line, max_words=20) == [clean]


@pytest.mark.parametrize("line", [
    "| Best Score: 13 |", "Score: 0.663", "### 1.1871", "[List 1]", "| Scoredcc-caption", "1.4381 (Scored)",
    "Scored captions: 0.1994, 0.1866, 0.1768", "The Labrador is the best description, with 0.998.",
    "The Husky is best described as a Husky, with a score of 2.2835.",
    "The scores are based on the best descriptions for the given images.",
])
def test_what_the_embedded_llm_wrote_about_its_answer_is_not_a_candidate(line):
    parsed = parse_answer(line, max_words=20)
    assert parsed.candidates == [] and sum(parsed.rejected.values()) == 1


def test_the_ascii_shortcut_of_normalize_gives_the_same_keys():
    """normalize reads an ASCII text with one regular expression: the keys are those of the
    Unicode path (every ASCII character, alone and in random strings)."""
    import random

    from worker.core.parsing import _normalize_unicode, normalize

    chars = [chr(i) for i in range(128)]
    assert [normalize(c) for c in chars] == [_normalize_unicode(c) for c in chars]
    rng = random.Random(0)
    for _ in range(20_000):
        text = "".join(rng.choice(chars) for _ in range(rng.randrange(0, 16)))
        assert normalize(text) == _normalize_unicode(text), repr(text)
