"""Media made for tests: recordings synthesised with PyAV, zip and tar archives of given members."""

from __future__ import annotations

import io
import tarfile
import zipfile

import av
import numpy as np


def recording(seconds: float = 3.0, rate: int = 16_000, amplitude: int = 3000, fmt: str = "wav",
              codec: str = "pcm_s16le") -> bytes:
    """A mono tone whose pitch rises over the recording."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        t = np.arange(int(seconds * rate)) / rate
        samples = (np.sin(2 * np.pi * (220 + 40 * t) * t) * amplitude).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def make_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def make_tar(members: dict[str, bytes], links: dict[str, str] | None = None, mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def png_media(size: tuple[int, int] = (24, 16), color: tuple[int, int, int] = (200, 120, 40), name: str = "cat.png"):
    """A small flat PNG as worker.media.Media, for jobs stored directly by the store."""
    from PIL import Image

    from worker.media import Media

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return Media(data=buffer.getvalue(), media_type="image/png", name=name)
