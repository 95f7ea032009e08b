"""The embedded scorer's eyes on the bundled real photos (worker.models.sight), and what the scorer
says it sees. Real weights; the face and text models run in about a second per photo."""

from __future__ import annotations

import pytest

from worker.media import decode_image
from worker.media.samples import sample_path
from worker.models import load_scorer
from worker.models.sight import FaceFinder, Sighting, TextReader, dominant_colours

pytestmark = pytest.mark.slow


def photo(name: str):
    return decode_image(sample_path(name).read_bytes())


@pytest.fixture(scope="module")
def faces() -> FaceFinder:
    return FaceFinder()


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader()


def test_the_astronaut_has_one_face_and_the_others_none(faces):
    (face,) = faces(photo("astronaut"))
    x, y, width, height = face.box
    assert 150 < x < 250 and 50 < y < 150 and 60 < width < 140  # her face, left of the centre, near the top
    assert Sighting(512, 512, faces=[face]).people_phrase() == "a photo of a person"
    for name in ("chelsea", "coffee", "rocket", "horse", "page"):
        assert faces(photo(name)) == [], name


def test_people_phrases_count_faces_and_tell_a_portrait():
    from worker.models.sight import Face

    small, big = Face((0, 0, 50, 50), 1.0), Face((0, 0, 300, 300), 1.0)
    assert Sighting(1000, 1000, faces=[big]).people_phrase() == "a close-up portrait of a person"
    assert Sighting(1000, 1000, faces=[small, small]).people_phrase() == "a photo of two people"
    assert Sighting(1000, 1000, faces=[small] * 5).people_phrase() == "a photo of a group of people"
    assert Sighting(1000, 1000).people_phrase() is None


def test_the_page_is_read_and_photos_without_text_have_none(reader):
    lines = reader(photo("page"))
    read = " ".join(line.text for line in lines).lower()
    assert "segmentation" in read and "markers" in read, read
    assert all(line.score >= 0.75 for line in lines)
    assert Sighting(384, 191, text=lines).text_phrase() == "a page of printed text"
    for name in ("chelsea", "coffee", "astronaut"):
        assert reader(photo(name)) == [], name


def test_a_short_text_is_a_sign():
    from worker.models.sight import TextLine

    assert Sighting(10, 10, text=[TextLine("STOP", 0.99)]).text_phrase() == 'a sign that says "STOP"'


def test_colours_coffee_is_brown_and_red_chelsea_gray():
    coffee = dict(dominant_colours(photo("coffee")))
    assert max(coffee, key=coffee.get) == "brown" and coffee.get("red", 0) > 0.1, coffee
    assert sum(coffee.values()) == pytest.approx(1.0)
    chelsea = dict(dominant_colours(photo("chelsea")))
    assert max(chelsea, key=chelsea.get) == "gray", chelsea
    assert Sighting(1, 1, colours=[("brown", 0.6), ("red", 0.2), ("black", 0.15)]).colour_phrase() == \
        "a brown, red and black photo"


def test_the_scorer_says_what_it_sees_and_a_caption_naming_it_scores_higher(mils_home):
    scorer = load_scorer("embedded")
    features = scorer.encode_sample(photo("astronaut"))
    seen = features.seen
    assert set(seen) >= {"labels", "faces", "text", "colours", "width", "height"}
    assert len(seen["labels"]) == 5 and all(0 <= label["p"] <= 1 for label in seen["labels"])
    assert len(seen["faces"]) == 1 and seen["text"] == []
    # ImageNet has no class for people: the face is what moves a caption about her up.
    from worker.models.recogniser_scorer import RecogniserScorer

    blind = RecogniserScorer(scorer.recogniser, scorer.embedder, scorer.labels, reader=scorer.reader)
    captions = ["A smiling woman posing for a portrait.", "A bicycle helmet."]
    person, helmet = scorer.score(features, captions)
    blind_person, blind_helmet = blind.score(blind.encode_sample(photo("astronaut")), captions)
    assert person - helmet > blind_person - blind_helmet + 0.02
    page = scorer.encode_sample(photo("page"))
    assert [line["text"] for line in page.seen["text"]]
