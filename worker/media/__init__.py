"""Decoding and checking input media. Errors are `MediaError` with a message for people.

An image is decoded as a viewer shows it, by `decode_image` alone (the CLI, the API and the worker
all call it): EXIF orientation applied; 16- and 32-bit greyscale scaled to 8 bits; transparency
(alpha, LA, palette or tRNS) composited on a white background; CMYK and other modes converted to RGB.

Pixel budget: a file is at most MAX_FILE_BYTES, an image at most MAX_IMAGE_PIXELS and at most
MAX_ASPECT:1 (a video's frames too), so a scorer that scales the short side to 224 px gets at most
224 x 4,480 pixels. Decoding adds at most about 12.5 bytes per pixel, 0.5 GB for the largest accepted
picture (measured on 40-megapixel pictures by benchmarks/decode_memory.py; see BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

# Larger inputs are refused before decoding: a guard against decompression bombs.
MAX_IMAGE_PIXELS = 40_000_000
MAX_FILE_BYTES = 50 * 1024 * 1024
# Thinner images are refused at submission: scorers scale the short side to their input size, so a
# 200,000 x 1 strip would become 44,800,000 x 224 pixels. 20:1 admits any panorama a camera makes.
MAX_ASPECT = 20
# What a transparent picture is shown on (a viewer's light background).
BACKGROUND = (255, 255, 255)


class MediaError(ValueError):
    """The input file cannot be used; the message says why."""


@dataclass(frozen=True)
class Media:
    data: bytes
    media_type: str  # e.g. "image/png"
    name: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def open_av(data: bytes, name: str, what: str):
    """A PyAV container over `data`, or a MediaError saying it is not `what` ("a video", "audio")
    in a format we can read. Callers then check the container format (see media.video/audio)."""
    import av

    try:
        return av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError) as exc:  # not a container FFmpeg knows
        raise MediaError(f"{name}: not {what} in a format we can read ({exc.__class__.__name__})") from None


def read_media_file(path: str | Path) -> bytes:
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(f"{path}: the file is empty")
    if size > MAX_FILE_BYTES:
        raise MediaError(f"{path}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit")
    return path.read_bytes()


def decode_image(data: bytes, name: str = "input") -> Image.Image:
    """The image as a viewer shows it, in RGB (see the module's docstring), or a `MediaError`
    naming what is wrong."""
    return as_viewed(_open_checked(data, name))


def as_viewed(image: Image.Image) -> Image.Image:
    """An opened image as a viewer shows it: upright by its EXIF orientation, 8-bit RGB, any
    transparency composited on BACKGROUND."""
    import numpy as np

    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        key = image.info.get("transparency")  # a colour-key (tRNS) grey value, lost by the conversion
        opaque = np.asarray(image) != key if isinstance(key, int) else None
        image = _to_8_bit(image)
        if opaque is not None:
            image.putalpha(Image.fromarray(opaque.astype(np.uint8) * 255, "L"))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        shown = Image.new("RGB", rgba.size, BACKGROUND)
        shown.paste(rgba, mask=rgba.getchannel("A"))  # the same pixels as alpha_composite, in less memory
        return shown
    return image.convert("RGB")


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer or float greyscale as 8-bit "L" (PIL's own conversion clips at 255,
    which turns a 16-bit picture white). Integers are scaled by their type's range (a 32-bit image
    holding 16-bit values, as some decoders give, by 16 bits); floats in [0, 1] by 255. One
    float32 copy, scaled in place: 4 bytes per pixel beside the image."""
    import numpy as np

    values = np.array(image, dtype=np.float32)  # a copy of its own: scaled in place below
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16"):
        scale = 65535 / 255
    elif image.mode == "F":
        scale = 1 / 255 if top <= 1.0 else 1.0
    else:
        scale = 1.0 if top <= 255 else 65535 / 255 if top <= 65535 else (2**32 - 1) / 255
    values /= scale
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return Image.fromarray(values.astype(np.uint8), "L")


def _open_checked(data: bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise MediaError(
                    f"{name}: {width}x{height} pixels is over the {MAX_IMAGE_PIXELS:,}-pixel limit"
                )
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise MediaError(f"{name}: {width}x{height} pixels is longer than {MAX_ASPECT}:1 (scaled "
                                 "for a scorer it would not fit in memory); crop it to the part to describe")
            image.load()  # decodes now, so a truncated file fails here and not mid-job
    except UnidentifiedImageError:
        raise MediaError(f"{name}: not an image in a format we can read") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise MediaError(f"{name}: image dimensions are too large") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, MediaError):
            raise
        raise MediaError(f"{name}: the image is truncated or corrupt ({exc})") from None
    return image


# Formats a browser can show and PIL decodes safely; anything else is refused by content,
# whatever the file is called.
ALLOWED_IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp",
                         "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff"}


def image_media(data: bytes, name: str) -> Media:
    """Check image bytes (size, format by decoding, pixel count) and wrap them as job input."""
    if not data:
        raise MediaError(f"{name}: the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise MediaError(f"{name}: {len(data)} bytes is over the {MAX_FILE_BYTES}-byte limit")
    image = _open_checked(data, name)
    if image.format not in ALLOWED_IMAGE_FORMATS:
        raise MediaError(f"{name}: {image.format} images are not accepted; "
                         f"use one of {', '.join(sorted(ALLOWED_IMAGE_FORMATS))}")
    return Media(data=data, media_type=ALLOWED_IMAGE_FORMATS[image.format], name=name)


def load_image_file(path: str | Path) -> Media:
    """Read and check an image file; returns its bytes with type and name."""
    return image_media(read_media_file(path), Path(path).name)
