"""What the embedded scorer sees in a photo besides ImageNet's classes: faces, text and colours.

Each eye runs on weights (or no weights) that ship inside an installed package; nothing is
downloaded. What they see becomes short phrases ("a photo of two people", "a page of printed
text", 'a sign that says "..."', "a brown and red photo") that the scorer embeds beside the recogniser's labels
(worker.models.recogniser_scorer), and a plain record of it that the job page and the API show.

- Faces: dlib's HOG frontal-face detector (Dalal & Triggs 2005 features, a linear SVM; compiled
  into dlib itself, so there is no model file; package `dlib-bin`, Boost licence). Chosen over
  OpenCV's Haar cascades (weaker, and absent from opencv-python 5's main module) and MediaPipe
  (its last wheel with face models, 0.10.21, needs numpy < 2). It finds frontal faces only: the
  astronaut's, not the cameraman's turned to his camera.
- Text: RapidOCR (PP-OCRv4 detector and recogniser as ONNX inside `rapidocr-onnxruntime`,
  Apache-2.0).
- Colours: the pixels' dominant colours (PIL's median cut), each named by the nearest of English's
  eleven basic colour terms (Berlin & Kay 1969) in CIELAB (scikit-image), each term at the colour
  people gave that name in the xkcd colour survey (Munroe 2010, public domain). CSS's values
  (webcolors) were tried first and misname photos' reds: CSS "brown" is a dark red, so the red
  scooter came out pink and brown.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

# Berlin & Kay's basic colour terms, at the xkcd colour survey's sRGB for each name.
BASIC_COLOURS = {"black": "#000000", "white": "#ffffff", "gray": "#929591", "red": "#e50000", "orange": "#f97306",
                 "yellow": "#ffff14", "green": "#15b01a", "blue": "#0343df", "purple": "#7e1e9c", "pink": "#ff81c0",
                 "brown": "#653700"}
FACE_THRESHOLD = 0.5  # dlib's SVM margin: on the bundled photos real faces score >= 1.1, false ones <= 0.15
TEXT_THRESHOLD = 0.75  # RapidOCR's line confidence below which a line is taken for texture
PAGE_LETTERS = 40  # this many letters read or more: a page of text, not a sign or a label
MAX_SIDE = 800  # faces and text are looked for in the photo scaled to at most this many pixels


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height in the photo's pixels
    score: float  # the detector's margin; higher is surer


@dataclass(frozen=True)
class TextLine:
    text: str
    score: float  # the recogniser's confidence, 0..1


@dataclass
class Sighting:
    """What the scorer's eyes found in one photo (labels: ImageNet class, probability)."""

    width: int
    height: int
    labels: list[tuple[str, float]] = field(default_factory=list)
    faces: list[Face] = field(default_factory=list)
    text: list[TextLine] = field(default_factory=list)
    colours: list[tuple[str, float]] = field(default_factory=list)  # name, share of the pixels

    def people_phrase(self) -> str | None:
        if not self.faces:
            return None
        if len(self.faces) == 1:
            face = self.faces[0]
            close = face.box[2] * face.box[3] >= 0.08 * self.width * self.height
            return "a close-up portrait of a person" if close else "a photo of a person"
        return "a photo of two people" if len(self.faces) == 2 else "a photo of a group of people"

    def text_phrase(self) -> str | None:
        """A page says it is a page: quoting it made its own captions rank lower (the words
        read run together and name what the page is about only by chance; BENCHMARKS.md)."""
        words = " ".join(line.text for line in self.text).split()
        if not words:
            return None
        if sum(ch.isalpha() for ch in "".join(words)) >= PAGE_LETTERS:
            return "a page of printed text"
        return f'a sign that says "{" ".join(words[:6])}"'

    def colour_phrase(self) -> str | None:
        names = [name for name, share in self.colours if share >= 0.1][:3]
        if not names:
            return None
        return f"a {names[0]} photo" if len(names) == 1 else f"a {', '.join(names[:-1])} and {names[-1]} photo"

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["labels"] = [{"label": label, "p": round(p, 4)} for label, p in self.labels]
        record["colours"] = [{"name": name, "share": round(share, 3)} for name, share in self.colours]
        return record


class FaceFinder:
    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()

    def __call__(self, image: Image.Image) -> list[Face]:
        small, scale = _at_most(image, MAX_SIDE)
        rects, scores, _ = self.detector.run(np.asarray(small.convert("RGB")), 1, FACE_THRESHOLD)
        faces = [Face((round(r.left() / scale), round(r.top() / scale), round(r.width() / scale),
                       round(r.height() / scale)), round(float(s), 3)) for r, s in zip(rects, scores)]
        return sorted(faces, key=lambda f: -f.score)


class TextReader:
    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.ocr = RapidOCR()

    def __call__(self, image: Image.Image) -> list[TextLine]:
        small, _ = _at_most(image, MAX_SIDE)
        bgr = np.ascontiguousarray(np.asarray(small.convert("RGB"))[:, :, ::-1])
        found, _ = self.ocr(bgr)
        lines = []
        for _box, text, score in found or []:
            text = re.sub(r"\s+", " ", str(text)).strip()
            if float(score) >= TEXT_THRESHOLD and sum(ch.isalpha() for ch in text) >= 2:
                lines.append(TextLine(text, round(float(score), 3)))
        return lines


def dominant_colours(image: Image.Image, n: int = 8) -> list[tuple[str, float]]:
    """The photo's colours by share of its pixels, each named by the nearest basic colour term
    (CIELAB distance); shares of one name are added up. [(name, share 0..1)], largest first."""
    from skimage.color import rgb2lab

    small = image.convert("RGB").resize((96, 96))
    palette_image = small.quantize(colors=n, method=Image.Quantize.MEDIANCUT)
    palette = np.array(palette_image.getpalette()[: 3 * n], dtype=np.float64).reshape(-1, 3) / 255
    counts = np.bincount(np.asarray(palette_image).ravel(), minlength=n)[:n]
    names = list(BASIC_COLOURS)
    terms = np.array([[int(code[i:i + 2], 16) for i in (1, 3, 5)] for code in BASIC_COLOURS.values()]) / 255
    distance = np.linalg.norm(rgb2lab(palette[:, None, :]) - rgb2lab(terms[None, :, :]), axis=-1)  # (n, 11)
    shares: dict[str, float] = {}
    for index, count in enumerate(counts):
        if count:
            name = names[int(distance[index].argmin())]
            shares[name] = shares.get(name, 0.0) + float(count / counts.sum())
    return sorted(shares.items(), key=lambda item: -item[1])


def settings() -> list:
    """Every setting that changes what the eyes report (part of the scorer's cache keys)."""
    return [FACE_THRESHOLD, TEXT_THRESHOLD, PAGE_LETTERS, MAX_SIDE, BASIC_COLOURS]


def _at_most(image: Image.Image, side: int) -> tuple[Image.Image, float]:
    scale = min(1.0, side / max(image.size))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))  # a 2000x1 strip stays 1 high
    return image.resize(size, Image.BICUBIC), scale
