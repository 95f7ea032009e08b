"""Audio input: checked at submission (a stream, its length, its sample rate, not silent) and
decoded in the worker to mono float32 samples at the rate the scorer wants (PyAV resampling)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.media import Media, MediaError, open_av

MAX_AUDIO_SECONDS = 300.0
MIN_AUDIO_SECONDS = 0.5
MIN_SAMPLE_RATE = 8_000  # below telephone quality there is too little left to describe
SILENCE_PEAK = 1e-3  # of full scale: a recording whose loudest sample is below this is silent
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg", "aac": "audio/aac",
               "mov,mp4,m4a,3gp,3g2,mj2": "audio/mp4", "matroska,webm": "audio/webm"}


@dataclass(frozen=True)
class AudioInfo:
    duration: float  # seconds
    sample_rate: int
    channels: int
    codec: str
    media_type: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _open(data: bytes, name: str):
    container = open_av(data, name, "audio")
    if container.format.name not in AUDIO_TYPES and not container.format.name.endswith("_pipe"):
        # Only real media containers: FFmpeg's playlists and concat lists would read other files.
        container.close()
        raise MediaError(f"{name}: {container.format.name} is not an accepted audio format "
                         "(WAV, MP3, FLAC, OGG, M4A, WebM)")
    if not container.streams.audio or container.format.name not in AUDIO_TYPES:
        container.close()
        raise MediaError(f"{name}: the file has no audio stream")
    return container


def decode_audio(data: bytes, name: str, sample_rate: int) -> np.ndarray:
    """The whole recording as mono float32 samples in [-1, 1] at `sample_rate`. Decoding stops
    past MAX_AUDIO_SECONDS: a small file of a very long, low-bitrate recording would otherwise
    fill the memory before its length is known."""
    import av

    container = _open(data, name)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks, count, limit = [], 0, int(MAX_AUDIO_SECONDS * sample_rate)
    try:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                count += len(chunks[-1])
            if count > limit:
                raise MediaError(f"{name}: longer than the {MAX_AUDIO_SECONDS:.0f}-second limit")
        for out in resampler.resample(None):  # what the resampler still holds
            chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        raise MediaError(f"{name}: the audio is corrupt ({exc})") from None
    finally:
        container.close()
    if not chunks:
        raise MediaError(f"{name}: the audio stream has no samples")
    return np.concatenate(chunks).astype(np.float32)


def probe_audio(data: bytes, name: str) -> AudioInfo:
    """Check a recording: it decodes, is MIN_AUDIO_SECONDS to MAX_AUDIO_SECONDS long, has a sample rate of
    at least MIN_SAMPLE_RATE (higher rates are resampled for the scorer), and is not silent."""
    container = _open(data, name)
    try:
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        codec = stream.codec_context.name
        media_type = AUDIO_TYPES[container.format.name]
        declared = float(container.duration / 1_000_000) if container.duration else 0.0
    finally:
        container.close()
    if declared > MAX_AUDIO_SECONDS:  # refused before decoding anything
        raise MediaError(f"{name}: {declared:.0f} s is over the {MAX_AUDIO_SECONDS:.0f}-second limit")
    if not rate or rate < MIN_SAMPLE_RATE:
        raise MediaError(f"{name}: a sample rate of {rate} Hz is below the {MIN_SAMPLE_RATE} Hz minimum")
    samples = decode_audio(data, name, rate)
    duration = len(samples) / rate
    if duration > MAX_AUDIO_SECONDS:
        raise MediaError(f"{name}: {duration:.0f} s is over the {MAX_AUDIO_SECONDS:.0f}-second limit")
    if duration < MIN_AUDIO_SECONDS:
        raise MediaError(f"{name}: {duration:.2f} s is too short to describe (at least {MIN_AUDIO_SECONDS} s)")
    if float(np.abs(samples).max()) < SILENCE_PEAK:
        raise MediaError(f"{name}: the recording is silent")
    return AudioInfo(duration=round(duration, 3), sample_rate=rate, channels=channels, codec=codec,
                     media_type=media_type)


def audio_media(data: bytes, name: str) -> tuple[Media, AudioInfo]:
    info = probe_audio(data, name)
    return Media(data=data, media_type=info.media_type, name=name), info


@dataclass(frozen=True)
class AudioInput:
    """An audio job's sample as the scorer gets it: the stored bytes, decoded at whatever rate
    the scorer's model was trained on."""

    data: bytes
    name: str
    clip_seconds: float

    def samples(self, sample_rate: int) -> np.ndarray:
        return decode_audio(self.data, self.name, sample_rate)

    def clips(self, sample_rate: int) -> list[np.ndarray]:
        """The recording cut into consecutive clips of `clip_seconds` (the last may be shorter,
        a tail under a second is dropped when there are other clips)."""
        samples = self.samples(sample_rate)
        size = int(self.clip_seconds * sample_rate)
        clips = [samples[i:i + size] for i in range(0, len(samples), size)]
        if len(clips) > 1 and len(clips[-1]) < sample_rate:
            clips.pop()
        return clips
