"""Video input: checked at submission (container, a moving picture, length, frame size), and
decoded in the worker into frames sampled evenly over its length, as a player shows them (PyAV,
FFmpeg's libraries): turned by the display matrix, the frame on screen at each time."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from worker.media import MAX_ASPECT, MAX_IMAGE_PIXELS, Media, MediaError, open_av
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


def _video_stream(container, name: str):
    """The first stream that is a video: an attached picture (cover art in a music file) is not."""
    import av

    attached = av.stream.Disposition.attached_pic
    streams = [s for s in container.streams.video if not s.disposition & attached]
    if not streams:
        if container.streams.video:
            raise MediaError(f"{name}: its only picture is an attached picture (cover art), not a video; "
                             "caption it as audio")
        raise MediaError(f"{name}: the file has no video stream")
    return streams[0]


def _open(data: bytes, name: str):
    """The container and its video stream; MediaError when it is not a video we read."""
    container = open_av(data, name, "a video")
    fmt = container.format.name
    try:
        if fmt.endswith("_pipe") or fmt == "image2":
            raise MediaError(f"{name}: a still image, not a video (caption it as an image)")
        if fmt not in VIDEO_TYPES and fmt not in AUDIO_TYPES:
            # Only real media containers: FFmpeg's playlists and concat lists would read other files.
            # (A sound file is a real container: it is refused below, for having no video stream.)
            raise MediaError(f"{name}: {fmt} is not an accepted video format (MP4, WebM, MKV, AVI, MPEG, GIF)")
        if fmt not in VIDEO_TYPES:
            raise MediaError(f"{name}: the file has no video stream")
        return container, _video_stream(container, name)
    except MediaError:
        container.close()
        raise


def probe_video(data: bytes, name: str) -> VideoInfo:
    """Check a video (it opens, it has a moving picture, its length and frame size are in bounds,
    its first frames decode) without decoding all of it. The size is the displayed size: a phone
    video stored sideways with a rotation (display matrix) reports the size a player shows."""
    import av

    container, stream = _open(data, name)
    try:
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > MAX_IMAGE_PIXELS:
            raise MediaError(f"{name}: {width}x{height} frames are over the {MAX_IMAGE_PIXELS:,}-pixel limit")
        if min(width, height) and max(width, height) > MAX_ASPECT * min(width, height):
            raise MediaError(f"{name}: {width}x{height} frames are longer than {MAX_ASPECT}:1 (scaled for a "
                             "scorer they would not fit in memory); crop the video")
        duration = _duration(container, stream)
        if duration > MAX_VIDEO_SECONDS:
            raise MediaError(f"{name}: {duration:.0f} s is over the {MAX_VIDEO_SECONDS:.0f}-second limit")
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None:
            raise MediaError(f"{name}: the video has no frame")
        if next(frames, None) is None:
            raise MediaError(f"{name}: a single still picture, not a video (caption it as an image)")
        if _quarter_turns(first) % 2:
            width, height = height, width
        fps = float(stream.average_rate or 0)
        media_type = VIDEO_TYPES[container.format.name]
        return VideoInfo(duration=duration, frames=stream.frames, fps=fps, width=width, height=height,
                         codec=stream.codec_context.name, media_type=media_type)
    except av.error.FFmpegError as exc:  # while measuring or decoding: the file is damaged
        raise MediaError(f"{name}: the video is corrupt ({exc})") from None
    finally:
        container.close()


def _duration(container, stream) -> float:
    """Seconds, from the stream's header, the container's, the frame count, or else (a browser's
    MediaRecorder writes none of them) from the end of the last packet of the stream."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # microseconds (av.time_base)
    if stream.frames and stream.average_rate:
        return stream.frames / float(stream.average_rate)
    start, end = stream.start_time or 0, None
    for packet in container.demux(stream):  # packets only: nothing is decoded
        if packet.pts is not None:
            end = max(end or 0, packet.pts + (packet.duration or 0))
    container.seek(0)
    return float((end - start) * stream.time_base) if end is not None and stream.time_base else 0.0


def _quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns a player applies to the frame (its display matrix)."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


def _as_displayed(frame) -> Image.Image:
    """The frame as a player shows it: RGB, turned by its display matrix."""
    image = frame.to_image().convert("RGB")
    turns = _quarter_turns(frame)
    return image if not turns else image.transpose(_TURNS[turns])


_TURNS = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_270}


def video_media(data: bytes, name: str) -> tuple[Media, VideoInfo]:
    info = probe_video(data, name)
    return Media(data=data, media_type=info.media_type, name=name), info


def sample_frames(data: bytes, name: str, count: int) -> list[Image.Image]:
    """`count` frames as a player shows them, at the middles of `count` equal spans of the video:
    at each time t, the frame on screen at t (the last frame that starts at or before t). One
    seek per frame, so long videos are not decoded whole."""
    import av

    container, stream = _open(data, name)
    try:
        duration = _duration(container, stream)
        times = [duration * (i + 0.5) / count for i in range(count)]
        frames: list[Image.Image] = []
        for target in times:
            frame = _frame_at(container, stream, target)
            if frame is None:
                break
            frames.append(_as_displayed(frame))
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
    """The frame on screen at `seconds`: the last one that starts at or before it (the first frame
    when `seconds` is before every frame). Seeks to the keyframe before it; when the seek lands
    past it or on nothing (a file without an index, as browsers record), reads from the start."""
    start = stream.start_time or 0
    target_pts = start + round(seconds / float(stream.time_base))
    for seek_to in (target_pts, start):
        container.seek(seek_to, stream=stream, backward=True, any_frame=False)
        shown = None
        for frame in container.decode(stream):
            if frame.pts is None:  # no timestamps to go by: the first frame decoded there
                return frame
            if frame.pts > target_pts:
                if shown is None and seek_to != start and frame.pts > start:
                    break  # landed past the time: try again from the start
                return shown if shown is not None else frame
            shown = frame
        else:
            if shown is not None or seek_to == start:
                return shown  # the time is past the last frame
    return None


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
