"""Media made for tests: recordings synthesised with PyAV."""

from __future__ import annotations

import io

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
