"""Video input: checked at submission (container, stream, length, frame size), and decoded
in the worker into frames sampled evenly over its length (PyAV, FFmpeg's libraries)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from worker.media import MAX_IMAGE_PIXELS, Media, MediaError, open_av
from worker.media.audio import AUDIO_TYPES

MAX_VIDEO_SECONDS = 600.0
# Container format names (as FFmpeg reports them) -> the media type we store and serve.
VIDEO_TYPES = {"mov,mp4,m4a,3gp,3g2,mj2": "video/mp4", "matroska,webm": "video/webm",
               "avi": "video/x-msvideo", "mpeg": "video/mpeg", "gif": "image/gif"}


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds
    frames: int  # as the container says (0: unknown)
    fps: float
    width: int
    height: int
    codec: str
    media_type: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _open(data: bytes, name: str):
    container = open_av(data, name, "a video")
    fmt = container.format.name
    if fmt.endswith("_pipe") or fmt == "image2":
        container.close()  # FFmpeg reads a PNG or JPEG as a one-frame "video"
        raise MediaError(f"{name}: a still image, not a video (caption it as an image)")
    if fmt not in VIDEO_TYPES and fmt not in AUDIO_TYPES:
        # Only real media containers: FFmpeg's playlists and concat lists would read other files.
        # (A sound file is a real container: it is refused below, for having no video stream.)
        container.close()
        raise MediaError(f"{name}: {fmt} is not an accepted video format (MP4, WebM, MKV, AVI, MPEG, GIF)")
    if not container.streams.video or fmt not in VIDEO_TYPES:
        container.close()
        raise MediaError(f"{name}: the file has no video stream")
    return container


def probe_video(data: bytes, name: str) -> VideoInfo:
    """Check a video (it opens, its length and frame size are in bounds, its first frame
    decodes) without decoding all of it."""
    import av

    container = _open(data, name)
    try:
        stream = container.streams.video[0]
        duration = _duration(container, stream)
        if duration > MAX_VIDEO_SECONDS:
            raise MediaError(f"{name}: {duration:.0f} s is over the {MAX_VIDEO_SECONDS:.0f}-second limit")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > MAX_IMAGE_PIXELS:
            raise MediaError(f"{name}: {width}x{height} frames are over the {MAX_IMAGE_PIXELS:,}-pixel limit")
        try:
            next(container.decode(stream))
        except StopIteration:
            raise MediaError(f"{name}: the video has no frame") from None
        except av.error.FFmpegError as exc:
            raise MediaError(f"{name}: the video is corrupt ({exc})") from None
        fps = float(stream.average_rate or 0)
        media_type = VIDEO_TYPES[container.format.name]
        return VideoInfo(duration=duration, frames=stream.frames, fps=fps, width=width, height=height,
                         codec=stream.codec_context.name, media_type=media_type)
    finally:
        container.close()


def _duration(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # microseconds (av.time_base)
    if stream.frames and stream.average_rate:
        return stream.frames / float(stream.average_rate)
    return 0.0


def video_media(data: bytes, name: str) -> tuple[Media, VideoInfo]:
    info = probe_video(data, name)
    return Media(data=data, media_type=info.media_type, name=name), info


def sample_frames(data: bytes, name: str, count: int) -> list[Image.Image]:
    """`count` RGB frames at the middles of `count` equal spans of the video: the first frame
    at or after each of those times (one seek per frame, so long videos are not decoded whole)."""
    import av

    container = _open(data, name)
    try:
        stream = container.streams.video[0]
        duration = _duration(container, stream)
        times = [duration * (i + 0.5) / count for i in range(count)]
        frames: list[Image.Image] = []
        for target in times:
            frame = _frame_at(container, stream, target)
            if frame is None:
                break
            frames.append(frame.to_image().convert("RGB"))
        if not frames:
            raise MediaError(f"{name}: no frame could be decoded")
        while len(frames) < count:  # a stream shorter than it claimed: repeat its last frame
            frames.append(frames[-1])
        return frames
    except av.error.FFmpegError as exc:
        raise MediaError(f"{name}: the video is corrupt ({exc})") from None
    finally:
        container.close()


def _frame_at(container, stream, seconds: float):
    start = stream.start_time or 0
    target_pts = start + int(seconds / float(stream.time_base))
    container.seek(target_pts, stream=stream, backward=True, any_frame=False)
    last = None
    for frame in container.decode(stream):
        last = frame
        if frame.pts is None or frame.pts >= target_pts:
            return frame
    return last  # the target was past the last frame


def pan_video(image: Image.Image, *, seconds: float = 3.0, fps: int = 12, size: int = 224) -> bytes:
    """An H.264 MP4 of a camera panning across a photo, left to right: a real-photo video made
    on the spot (the bundled video samples, and the tests)."""
    import av

    image = image.convert("RGB")
    scale = size / min(image.size)
    image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))))
    count = max(2, round(seconds * fps))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"threads": "1"})
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for i in range(count):
            left = round((image.width - size) * i / (count - 1))
            top = round((image.height - size) * i / (count - 1))
            frame = av.VideoFrame.from_image(image.crop((left, top, left + size, top + size)))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()
