"""Image captioning: the paper's main task. The input is a photo; the candidates are captions."""

from __future__ import annotations

from worker.kinds.base import EMBEDDED, PAPER, TaskKind
from worker.kinds.prompts import CaptionTemplate
from worker.media import Media, decode_image, image_media

IMAGE_CAPTION = CaptionTemplate()


def check_image(data: bytes, name: str) -> tuple[Media, dict]:
    """Image bytes checked by decoding them; returns the media and its size (input_info)."""
    media = image_media(data, name)
    image = decode_image(data, name)
    return media, {"width": image.width, "height": image.height}


KIND = TaskKind(
    name="image-caption",
    input_kind="image",
    template=IMAGE_CAPTION,
    pool_file="image_caption_pool.txt",
    check_input=check_image,
    decode=lambda job: decode_image(job.data, job.name),
    paper_settings=PAPER,
    embedded_settings=EMBEDDED,
)
