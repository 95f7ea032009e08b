"""Style transfer: an instruction-editing pipeline applies each candidate instruction to the
content image; the edit is scored by how close its style is to the style image (Gram matrices
of CNN activations, as in Gatys et al.) and how much of the content image it keeps (the CNN's
deeper activations). Both distances are returned as the score's parts, so the LLM sees them.

The CNN is the embedded scorer's EfficientNet-Lite0 (real ImageNet weights, offline).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from worker.core import Score
from worker.models.render import Renderer, render_media

# Early blocks carry texture and colour (style); a middle block carries layout and objects.
STYLE_BLOCKS = (0, 2, 4, 7)
CONTENT_BLOCK = 10


def gram(features) -> np.ndarray:
    """(C, H, W) activations -> (C, C) Gram matrix, normalised by the number of positions."""
    c, h, w = features.shape
    flat = features.reshape(c, h * w).float().numpy()
    return flat @ flat.T / (h * w)


class StyleScorer:
    def __init__(self, cnn, editor: Renderer, style_image: Image.Image, content_weight: float) -> None:
        if not hasattr(cnn, "feature_maps"):
            raise ValueError(f"style transfer needs a CNN scorer with feature maps (the embedded one), not {cnn.name}")
        self.cnn = cnn
        self.editor = editor
        self.content_weight = content_weight
        self.name = f"style-gram:{cnn.name}+edit:{editor.spec}"
        self.version = f"{getattr(cnn, 'version', '')}+{editor.spec}"
        self._style = [gram(f) for f in self._maps(style_image, STYLE_BLOCKS)]

    def _maps(self, image: Image.Image, blocks: Sequence[int]) -> list:
        maps = self.cnn.feature_maps(image, blocks)
        return [maps[b] for b in blocks]

    def encode_sample(self, content_image: Image.Image) -> np.ndarray:
        return self._maps(content_image, (CONTENT_BLOCK,))[0].float().numpy()

    def distances(self, content: np.ndarray, edited: Image.Image) -> tuple[float, float]:
        """(style distance, content distance), each relative to the reference's own size."""
        maps = self.cnn.feature_maps(edited, (*STYLE_BLOCKS, CONTENT_BLOCK))
        style = float(np.mean([np.sum((gram(maps[b]) - g) ** 2) / np.sum(g ** 2)
                               for b, g in zip(STYLE_BLOCKS, self._style)]))
        own = maps[CONTENT_BLOCK].float().numpy()
        content_distance = float(np.sum((own - content) ** 2) / np.sum(content ** 2))
        return style, content_distance

    def score(self, content: np.ndarray, instructions: Sequence[str]) -> list[Score]:
        """Per instruction: minus the weighted sum of the distances, with both as details and
        the edit as what it made."""
        out = []
        for png in self.editor.render(instructions):
            style, content_distance = self.distances(content, Image.open(io.BytesIO(png)).convert("RGB"))
            out.append(Score(-(style + self.content_weight * content_distance),
                             {"style": style, "content": content_distance}, made=render_media(png)))
        return out

    score_pool = score
