"""Generate the initial video-caption pool from the image-caption pool.

Writes ``worker/data/video_caption_pool.txt``: each line of
``worker/data/image_caption_pool.txt`` turned into a caption of a short video by one of the
framings below, chosen by a fixed ``random.Random(2501)``. Deterministic: re-running gives a
byte-identical file. Run from the repository root::

    python scripts/make_video_pool.py
"""

from __future__ import annotations

import random
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "worker" / "data"
FRAMINGS = [
    "A video of {c}.",
    "A short clip of {c}.",
    "Footage of {c}.",
    "A slow camera pan across {c}.",
    "A handheld video of {c}.",
    "A close-up video of {c}.",
    "A time-lapse of {c}.",
    "{C}, filmed in a single steady shot.",
    "{C}, as the camera moves slowly.",
]


# Image-only openings that make no sense inside a video caption ("Footage of there is a cat").
DROP_PREFIXES = ("there is ", "there are ", "this is ")


def framed(caption: str, rng: random.Random) -> str:
    c = caption.rstrip(".")
    for prefix in DROP_PREFIXES:
        if c.lower().startswith(prefix):
            c = c[len(prefix):]
    c = c[0].lower() + c[1:]
    framing = rng.choice(FRAMINGS)
    return framing.format(c=c, C=c[0].upper() + c[1:])


def main() -> None:
    rng = random.Random(2501)
    captions = (DATA / "image_caption_pool.txt").read_text("utf-8").splitlines()
    lines = [framed(c, rng) for c in captions if c.strip()]
    (DATA / "video_caption_pool.txt").write_text("\n".join(lines) + "\n", "utf-8")
    print(f"wrote {len(lines)} captions")


if __name__ == "__main__":
    main()
