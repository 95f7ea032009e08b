"""Real photos shipped inside installed wheels (scikit-image, scikit-learn): the bundled
samples of `mils caption --sample`, and the embedded scorer's background set."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

SAMPLES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut.png"), "chelsea": ("skimage", "chelsea.png"),
    "coffee": ("skimage", "coffee.png"), "rocket": ("skimage", "rocket.jpg"),
    "camera": ("skimage", "camera.png"), "motorcycle": ("skimage", "motorcycle_left.png"),
    "horse": ("skimage", "horse.png"), "coins": ("skimage", "coins.png"),
    "moon": ("skimage", "moon.png"), "hubble": ("skimage", "hubble_deep_field.jpg"),
    "page": ("skimage", "page.png"), "retina": ("skimage", "retina.jpg"),
    "china": ("sklearn", "china.jpg"), "flower": ("sklearn", "flower.jpg"),
}
SKIMAGE_PHOTOS = [name for name, (package, _) in SAMPLES.items() if package == "skimage"]

_PACKAGES = {"skimage": "skimage.data", "sklearn": "sklearn.datasets.images"}


def sample_path(name: str) -> Path:
    package, filename = SAMPLES[name]
    # files() on the data folder does not import scikit-image or scikit-learn themselves.
    return Path(str(importlib.resources.files(_PACKAGES[package]) / filename))


def sample_input(name: str, input_kind: str) -> tuple[bytes, str]:
    """A bundled sample as the input of a task kind: the photo itself, or for a video task a
    3-second pan across it."""
    if input_kind == "audio":
        from worker.media import MediaError

        raise MediaError("the bundled samples are photos; an audio task needs an audio file")
    path = sample_path(name)
    if input_kind == "video":
        from worker.media import decode_image
        from worker.media.video import pan_video

        return pan_video(decode_image(path.read_bytes(), path.name)), f"{name}-pan.mp4"
    return path.read_bytes(), path.name
