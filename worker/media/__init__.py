"""Decoding and checking input media. Errors are `MediaError` with a message for people."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# Larger inputs are refused before decoding: a guard against decompression bombs.
MAX_IMAGE_PIXELS = 40_000_000
MAX_FILE_BYTES = 50 * 1024 * 1024


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
    """A fully decoded RGB image, or a `MediaError` naming what is wrong."""
    return _open_checked(data, name).convert("RGB")


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
