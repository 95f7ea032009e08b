"""Video captioning: checking and decoding videos (PyAV), frames sampled evenly, the frame
scorer's two modes, the video prompt, and the job going through the CLI and the API.

Videos are made here with PyAV: solid grey frames whose level is their index (so a decoded
frame says which one it is), and pans across real photos. The scorers are tiny
deterministic fakes; tests/models/test_real_models.py runs a video job on the embedded models.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from tests.support.services import assert_one_error_line, run_embedded

from worker.core import Scored, SettingsError
from worker.media import MediaError
from worker.media.video import MAX_VIDEO_SECONDS, pan_video, probe_video, sample_frames
from worker.models.frames import FrameScorer
from worker.media.samples import sample_path
from worker.kinds import TASK_KINDS, JobInput

ROOT = Path(__file__).resolve().parents[2]
VIDEO = TASK_KINDS["video-caption"]


def grey_video(levels: Sequence[int], fps: int = 12, size: int = 32, codec: str = "libx264",
               fmt: str = "mp4") -> bytes:
    """One solid grey frame per level, in order."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for level in levels:
            frame = av.VideoFrame.from_image(Image.new("RGB", (size, size), (level,) * 3))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def wav_bytes(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        samples = (np.sin(np.arange(int(seconds * rate)) / 10) * 3000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


# --------------------------------------------------------------------------- decoding


def test_probe_reads_length_rate_and_size():
    info = probe_video(grey_video(range(0, 216, 6)), "grey.mp4")  # 36 frames at 12 fps
    assert (info.duration, info.frames, info.fps, info.width, info.height) == (3.0, 36, 12.0, 32, 32)
    assert info.media_type == "video/mp4" and info.codec == "h264"


@pytest.mark.parametrize("count", [1, 4, 9])
def test_frames_are_sampled_at_the_middles_of_equal_spans(count):
    levels = [i * 6 for i in range(36)]  # frame i is grey level 6 i; 3 s at 12 fps
    frames = sample_frames(grey_video(levels), "grey.mp4", count)
    assert len(frames) == count
    got = [round(float(np.asarray(f).mean()) / 6) for f in frames]
    # Span k covers [3k/count, 3(k+1)/count) s; at its middle, (k + 0.5) * 36 / count frames in,
    # the frame on screen is the last one that started at or before it (not the next one).
    want = [int(np.floor((k + 0.5) * 36 / count)) for k in range(count)]
    assert got == want


def test_a_pan_over_a_real_photo_shows_its_left_then_its_right():
    photo = Image.open(sample_path("chelsea")).convert("RGB")
    data = pan_video(photo, seconds=2, fps=10, size=96)
    first, last = sample_frames(data, "pan.mp4", 2)
    small = photo.resize((round(photo.width * 96 / photo.height), 96))
    left, right = np.asarray(small.crop((0, 0, 96, 96)), float), np.asarray(small.crop((small.width - 96, 0, small.width, 96)), float)
    a, b = np.asarray(first, float), np.asarray(last, float)
    # Each sampled frame is closer to its own end of the photo than to the other end.
    assert np.abs(a - left).mean() < np.abs(a - right).mean()
    assert np.abs(b - right).mean() < np.abs(b - left).mean()


BAD_VIDEOS = [
    ("not a video", lambda: b"definitely not a video" * 50, r"not a video in a format we can read"),
    ("truncated", lambda: grey_video(range(0, 216, 6))[:1500], r"not a video in a format we can read|corrupt"),
    ("audio only", lambda: wav_bytes(), r"has no video stream"),
    ("too long", lambda: grey_video([10] * 602, fps=1, size=16), rf"over the {MAX_VIDEO_SECONDS:.0f}-second limit"),
]


@pytest.mark.parametrize("make, message", [b[1:] for b in BAD_VIDEOS], ids=[b[0] for b in BAD_VIDEOS])
def test_bad_videos_are_refused_with_a_reason(make, message):
    with pytest.raises(MediaError, match=message):
        VIDEO.check_input(make(), "input.mp4")


def test_ffmpeg_playlists_cannot_read_other_files(tmp_path, monkeypatch):
    """An 'ffconcat' list names files on the server; only real containers are accepted."""
    (tmp_path / "secret.mp4").write_bytes(grey_video(range(0, 120, 10)))
    monkeypatch.chdir(tmp_path)
    manifest = b"ffconcat version 1.0\nfile secret.mp4\n"
    with pytest.raises(MediaError, match="concat is not an accepted video format"):
        VIDEO.check_input(manifest, "list.txt")
    with pytest.raises(MediaError, match="concat is not an accepted audio format"):
        TASK_KINDS["audio-caption"].check_input(manifest, "list.txt")


def test_a_webm_and_an_animated_gif_are_videos_too():
    webm = grey_video(range(0, 120, 10), codec="libvpx-vp9", fmt="webm")
    media, info = VIDEO.check_input(webm, "clip.webm")
    assert media.media_type == "video/webm" and info["codec"] == "vp9"
    job = JobInput(webm, "clip.webm", {"frames": 3, "frame_mode": "pooled"}, VIDEO.embedded_settings)
    assert len(VIDEO.decode(job)) == 3


# --------------------------------------------------------------------------- scoring frames


class ColourScorer:
    """Tiny deterministic embedding scorer: an image is its unit mean-RGB vector, a text the
    unit sum of the colour words it names. Linear in the sample's feature, like CLIP's cosine."""

    name = "fake-colour-scorer"
    version = "1"
    WORDS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1)}

    def encode_sample(self, image: Image.Image) -> np.ndarray:
        v = np.asarray(image, np.float32).reshape(-1, 3).mean(axis=0)
        return v / np.linalg.norm(v)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            v = sum((np.array(self.WORDS[w], np.float32) for w in text.split() if w in self.WORDS),
                    np.zeros(3, np.float32))
            rows.append(v / max(np.linalg.norm(v), 1e-9))
        return np.stack(rows)

    def pool_embeddings(self, pool: Sequence[str]) -> np.ndarray:
        return self.embed_texts(pool)

    def score(self, features, texts):
        return (self.embed_texts(texts) @ features).tolist()

    score_pool = score


class NotAnEmbedding:
    """The same scores through `score` only (no embed_texts): the frame scorer's general path."""

    name = "fake-colour-scorer-plain"

    def __init__(self) -> None:
        self.inner = ColourScorer()
        self.encode_sample, self.score, self.score_pool = (self.inner.encode_sample, self.inner.score,
                                                           self.inner.score)


def test_per_frame_is_the_mean_of_the_frame_scores_and_pooled_ranks_the_same():
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (255, 0, 0), (0, 0, 255)]]
    texts = ["red", "blue", "red and blue", "green"]
    base = ColourScorer()
    per_frame = FrameScorer(base, "per-frame")
    features = per_frame.encode_sample(frames)
    scores = per_frame.score(features, texts)
    assert scores == pytest.approx([2 / 3, 1 / 3, (2 / 3 + 1 / 3) / np.sqrt(2), 0.0])
    assert per_frame.score_pool(features, texts) == pytest.approx(scores)
    plain = FrameScorer(NotAnEmbedding(), "per-frame")
    assert plain.score(plain.encode_sample(frames), texts) == pytest.approx(scores)

    pooled = FrameScorer(base, "pooled")
    pooled_scores = pooled.score(pooled.encode_sample(frames), texts)
    assert np.argsort(pooled_scores).tolist() == np.argsort(scores).tolist()
    # Pooled: the mean frame (2/3, 0, 1/3) rescaled to a frame's length (1) is what texts meet.
    mean = np.array([2 / 3, 0, 1 / 3])
    assert pooled_scores == pytest.approx((base.embed_texts(texts) @ (mean / np.linalg.norm(mean))).tolist())
    assert per_frame.name != pooled.name  # features are cached per scorer name
    from tests.support.fakes import HiddenCaptionScorer

    with pytest.raises(ValueError, match="pooled frame mode needs sample features that are vectors"):
        FrameScorer(HiddenCaptionScorer("a cat"), "pooled").encode_sample(frames)


def test_the_frame_scorer_passes_on_what_the_image_scorer_saw_in_each_frame():
    from worker.models.recogniser_scorer import SampleVector

    class SeeingColourScorer(ColourScorer):  # its features say what it saw, as the embedded scorer's do
        def encode_sample(self, image):
            vector = super().encode_sample(image).view(SampleVector)
            vector.seen = {"colours": [{"name": "red" if image.getpixel((0, 0))[0] else "blue", "share": 1.0}]}
            return vector

    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    said = {"frames": [{"colours": [{"name": "red", "share": 1.0}]}, {"colours": [{"name": "blue", "share": 1.0}]}]}
    for mode in ("per-frame", "pooled"):
        features = FrameScorer(SeeingColourScorer(), mode).encode_sample(frames)
        assert features.seen == said
    assert FrameScorer(ColourScorer(), "per-frame").encode_sample(frames).seen is None  # a scorer that does not say


def test_unknown_frame_mode_and_bad_frame_counts_are_refused():
    with pytest.raises(SettingsError, match="frame_mode must be one of per-frame, pooled"):
        VIDEO.job_options({"frame_mode": "max"})
    with pytest.raises(SettingsError, match="frames must be between 1 and 64"):
        VIDEO.job_options({"frames": 0})
    with pytest.raises(SettingsError, match="image-caption has no option frames"):
        TASK_KINDS["image-caption"].job_options({"frames": 8})
    assert VIDEO.job_options({}) == {"frames": 8, "frame_mode": "per-frame"}


def test_the_video_prompt_says_how_long_the_video_is_and_asks_for_20_to_25_words():
    template = VIDEO.template_for(JobInput(b"", "v", {}, VIDEO.paper_settings, info={"duration": 12.4}))
    messages = template.messages([Scored("A cat on a rug.", 0.3)], 5, VIDEO.paper_settings.max_words)
    user = messages[-1]["content"]
    assert "a 12-second video" in user and "of 20 to 25 words" in user and "0.3000: A cat on a rug." in user
    assert "video" in messages[0]["content"]
    short = VIDEO.template_for(JobInput(b"", "v", {}, VIDEO.paper_settings, info={"duration": 0.4}))
    assert "a very short video" in short.messages([], 1, 25)[-1]["content"]


# --------------------------------------------------------------------------- through the CLI and the API


FAKES = ["--llm", "py:tests.support.fakes:worker_generator", "--scorer", "py:tests.support.fakes:worker_scorer"]


def test_caption_video_runs_a_video_job_in_process(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(grey_video(range(0, 216, 6)))
    out = run_embedded("caption-video", str(video), "--frames", "4", "--steps", "2",
                       "--candidates", "5", "--top-k", "3", "--json", *FAKES, home=tmp_path / "home", timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [s["step"] for s in result["steps"]] == [0, 1, 2]
    status = run_embedded("status", str(result["job_id"]), "--json", home=tmp_path / "home", timeout=300)
    summary = json.loads(status.stdout)
    assert summary["task"] == "video-caption" and summary["status"] == "succeeded"
    assert summary["settings"]["max_words"] == 25


@pytest.mark.parametrize("args, message", [
    (["caption-video", "--sample", "chelsea", "--frames", "0"], r"frames must be between 1 and 64"),
    (["caption-video", "{png}"], r"photo.png: a still image, not a video"),
    (["caption-video"], r"give an INPUT video file or --sample NAME"),
    (["submit", "--sample", "chelsea", "--frames", "4"], r"--frames is for --task video-caption"),
])
def test_bad_video_commands_fail_with_one_error_line(tmp_path, args, message):
    png = tmp_path / "photo.png"
    Image.new("RGB", (20, 20)).save(png)
    out = run_embedded(*[a.format(png=png) for a in args], *FAKES, home=tmp_path / "home", timeout=300)
    assert_one_error_line(out, message)


def test_the_api_takes_a_video_job_and_refuses_a_corrupt_video(pg, queue_db):
    from web import create_app

    client = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False}).test_client()
    clip = grey_video(range(0, 120, 10))
    made = client.post("/api/jobs", data={"task": "video-caption", "file": (io.BytesIO(clip), "clip.mp4"),
                                          "frames": "3", "frame_mode": "pooled"})
    assert made.status_code == 201, made.get_json()
    job = made.get_json()
    assert job["options"] == {"frames": 3, "frame_mode": "pooled"} and job["input_media_type"] == "video/mp4"
    assert job["input_info"]["duration"] == 1.0 and job["settings"]["max_words"] == 25
    page = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert '<video src="/jobs/' in page
    bad = client.post("/api/jobs", data={"task": "video-caption", "file": (io.BytesIO(clip[:900]), "cut.mp4")})
    assert bad.status_code == 400 and re.search(r"cut.mp4: (not a video|the video is corrupt)",
                                                bad.get_json()["error"]["message"])
    wrong = client.post("/api/jobs", data={"task": "video-caption", "sample": "chelsea", "frame_mode": "max"})
    assert wrong.status_code == 400 and "frame_mode must be one of" in wrong.get_json()["error"]["message"]
    listed = client.get("/api/jobs").get_json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]  # the refused ones left nothing behind