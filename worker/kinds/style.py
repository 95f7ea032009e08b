"""Style transfer: the candidates are editing instructions, applied to the photo by an
instruction-editing pipeline and scored by their style distance to a style image and their
content distance to the photo (the embedded scorer's CNN)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.core import Message, Scored, Scorer
from worker.kinds.base import EMBEDDED, PAPER, JobInput, Option, TaskKind
from worker.kinds.image import check_image
from worker.kinds.prompts import answer_rules
from worker.media import decode_image
from worker.models import check_renderer_spec


@dataclass(frozen=True)
class StyleTemplate:
    """Style transfer: the scored texts are editing instructions; each score is shown with its
    two parts, the style distance and the content distance (lower is better for both)."""

    system: str = (
        "You write short instructions for an image-editing model that restyle a photo. You name "
        "the medium, the technique, the colours and the texture. You never explain yourself."
    )

    def messages(self, examples: Sequence[Scored], n: int, max_words: int) -> list[Message]:
        def line(c: Scored) -> str:
            parts = dict(c.details)
            return (f"{c.score:.4f} (style {parts.get('style', float('nan')):.4f}, "
                    f"content {parts.get('content', float('nan')):.4f}): {c.text}")

        lines = "\n".join(line(c) for c in examples)
        user = (
            "We want to restyle a photo so that it looks like a reference artwork you cannot see, "
            "while keeping what the photo shows. An image-editing model applied each instruction "
            "below to the photo. A judge measured the style distance (how far the result's colours "
            "and textures are from the artwork's) and the content distance (how much of the photo's "
            "layout and objects was lost); lower is better for both, and the score is minus their "
            "weighted sum, so a higher score is better.\n\n"
            f"Instructions, best first (score (style, content): instruction):\n{lines}\n\n"
            f"Write {n} new instructions that would score higher than all of these: move the style "
            "toward what the best ones do, and keep the content distance low. "
            + answer_rules("instruction", n, f"at most {max_words} words", article="an")
        )
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


def _style_scorer(scorer: Scorer, job: JobInput) -> Scorer:
    from worker.models.render import Renderer
    from worker.models.style import StyleScorer

    options = job.options
    content = _fit(decode_image(job.data, job.name), options["size"])
    editor = Renderer(options["editor"], seed=job.settings.seed, size=options["size"], steps=options["render_steps"],
                      guidance=options["guidance"], image=content, image_guidance=options["image_guidance"])
    style = decode_image(job.attachments["style"], "style image")
    return StyleScorer(scorer, editor, style, options["content_weight"])


def _fit(image, size: int):
    """The image scaled so its longer side is `size`, both sides a multiple of 8 (the latent grid)."""
    scale = size / max(image.size)
    width, height = (max(8, round(side * scale / 8) * 8) for side in image.size)
    return image.resize((width, height))


STYLE_OPTIONS = {
    "editor": Option(None, "the instruction-editing pipeline, diffusers:ID_OR_PATH (e.g. an InstructPix2Pix "
                           "checkpoint; no weights are offline here)", type=str, validate=check_renderer_spec, names_model=True),
    "size": Option(512, "the longer side of the edited image in pixels", low=16, high=2048),
    "render_steps": Option(30, "denoising steps per edit", low=1, high=200),
    "guidance": Option(7.5, "text guidance scale", type=float, low=0.0, high=50.0),
    "image_guidance": Option(1.5, "image guidance scale (how closely an edit follows the photo)", type=float,
                             low=0.0, high=50.0),
    "content_weight": Option(1.0, "weight of the content distance against the style distance", type=float,
                             low=0.0, high=100.0),
}


KIND = TaskKind(
    name="style-transfer",
    input_kind="image",
    template=StyleTemplate(),
    pool_file="style_instruction_pool.txt",
    check_input=check_image,
    decode=lambda job: decode_image(job.data, job.name),
    paper_settings=PAPER.replace(max_words=20),
    embedded_settings=EMBEDDED.replace(max_words=20),
    options=STYLE_OPTIONS,
    # Stored like any input; the job's options name it by hash (style_sha256).
    attachments={"style": "a style image"},
    adapt_scorer=_style_scorer,
    output="instruction",
    scorer_needs="feature maps",
)
