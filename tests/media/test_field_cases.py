"""Inputs real users send (tests/data/field_cases, with its README): each file as a test with the
value its README gives, and variations of the same kind of fault built here.

Kinds: media as a viewer shows it (EXIF orientation, 16/32-bit greyscale, transparency, CMYK),
pixel budgets (thin strips), time in a video (no duration in the header, the frame on screen at t,
the display matrix), what a stream is (cover art, a single still), candidate identity in any
language, and any list format an LLM answers in (tests/core/test_parsing.py has more of those).
The scores of the real embedded scorer are in the `slow` tests at the end.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.support.media import recording
from worker.core import Settings, bootstrap, normalize
from worker.kinds import TASK_KINDS, JobInput
from worker.kinds.image import check_image
from worker.media import MAX_ASPECT, MediaError, decode_image
from worker.media.audio import audio_media
from worker.media.samples import sample_path
from worker.media.video import probe_video, sample_frames

CASES = Path(__file__).resolve().parents[1] / "data" / "field_cases"


def case(name: str) -> bytes:
    return (CASES / name).read_bytes()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def encoded(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


# --------------------------------------------------------------------------- images as a viewer shows them


def test_exif_orientation_6_is_decoded_upright_like_its_control():
    photo, info = decode_image(case("exif_orientation6.jpg")), check_image(case("exif_orientation6.jpg"), "x.jpg")[1]
    control = decode_image(case("exif_upright_control.png"))
    assert info == {"width": 640, "height": 427} and photo.size == (640, 427)
    assert np.array_equal(pixels(photo), pixels(control))


# Orientation -> what PIL does to show it; the stored picture is the upright one undone.
UNDO = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", sorted(UNDO))
def test_every_exif_orientation_is_shown_upright(orientation):
    upright = decode_image(case("exif_upright_control.png")).crop((0, 0, 300, 200))
    stored = upright.transpose(UNDO[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(stored, exif=exif)
    assert check_image(data, "o.png")[1] == {"width": 300, "height": 200}
    assert np.array_equal(pixels(decode_image(data)), pixels(upright))


def test_16_bit_greyscale_is_the_same_picture_as_its_8_bit_copy():
    grey16, grey8 = decode_image(case("gray16.png")), decode_image(case("gray8.png"))
    assert np.array_equal(pixels(grey16), pixels(grey8))
    assert 20 < pixels(grey16).mean() < 235  # not the all-white picture of a clipped conversion


@pytest.mark.parametrize("make", ["uint16 tiff", "int32 tiff", "float32 tiff"])
def test_other_wide_greyscale_formats_decode_to_the_8_bit_picture(make):
    grey8 = np.asarray(Image.open(io.BytesIO(case("gray8.png"))), dtype=np.float64)
    if make == "uint16 tiff":
        data = encoded(Image.fromarray((grey8 * 257).astype(np.uint16)), "TIFF")
    elif make == "int32 tiff":  # 32-bit integers holding 16-bit values, as some decoders give
        data = encoded(Image.fromarray((grey8 * 257).astype(np.int32), "I"), "TIFF")
    else:  # 32-bit float in [0, 1]
        data = encoded(Image.fromarray((grey8 / 255).astype(np.float32), "F"), "TIFF")
    assert np.abs(pixels(decode_image(data))[..., 0] - grey8).max() <= 1


def test_transparency_is_composited_on_a_light_background():
    drawing, control = decode_image(case("silhouette_rgba.png")), decode_image(case("silhouette_on_white.png"))
    assert np.array_equal(pixels(drawing), pixels(control))
    assert pixels(drawing).mean() > 128  # mostly the white background, not black


def _on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4] / 255
    return np.rint(rgba[..., :3] * alpha + 255 * (1 - alpha))


@pytest.mark.parametrize("mode", ["LA", "P", "RGB+tRNS", "GIF"])
def test_other_transparent_formats_show_what_a_viewer_shows(mode):
    rgba = Image.open(io.BytesIO(case("silhouette_rgba.png"))).convert("RGBA")
    if mode == "LA":
        source = rgba.convert("LA")
        data = encoded(source)
        expected = _on_white(np.asarray(source.convert("RGBA"), dtype=np.float64))
    else:
        # Palette or colour-key transparency: the transparent pixels are one colour made invisible.
        flat = Image.new("RGB", rgba.size, (0, 255, 0))
        flat.paste(rgba.convert("RGB"), mask=rgba.getchannel("A").point(lambda a: 255 if a > 127 else 0))
        if mode == "RGB+tRNS":
            data = encoded(flat, transparency=(0, 255, 0))
        else:
            palette = flat.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
            key = palette.getpixel((0, 0))  # a corner: the background
            data = encoded(palette, "GIF" if mode == "GIF" else "PNG", transparency=key)
        expected = np.where((np.asarray(flat) == (0, 255, 0)).all(axis=-1, keepdims=True), 255, np.asarray(flat))
    got = pixels(decode_image(data)).astype(np.float64)
    assert np.abs(got - expected).mean() < 2.0, mode
    assert not ((got == (0, 255, 0)).all(axis=-1)).any() and not (got.sum(axis=-1) == 0).all()


def test_cmyk_is_converted_like_pil_shows_it():
    rgb = decode_image(case("gray8.png")).resize((120, 80))
    data = encoded(rgb.convert("CMYK"), "JPEG", quality=95)
    assert np.abs(pixels(decode_image(data)) - pixels(rgb)).mean() < 4


# --------------------------------------------------------------------------- pixel budgets


def test_the_thin_strip_is_refused_at_submission_with_a_reason():
    with pytest.raises(MediaError, match=r"200000x1 pixels is longer than 20:1"):
        check_image(case("strip_200000x1.png"), "strip_200000x1.png")


@pytest.mark.parametrize("size, accepted", [((1, 100_000), False), ((5_000, 200), False),
                                            ((200, 4_000), True), ((4_000, 200), True)])
def test_aspect_ratios_beyond_the_budget_are_refused_and_panoramas_accepted(size, accepted):
    data = encoded(Image.new("L", size, 90))
    assert max(size) / min(size) <= MAX_ASPECT or not accepted
    if accepted:
        assert check_image(data, "wide.png")[1] == {"width": size[0], "height": size[1]}
    else:
        with pytest.raises(MediaError, match="longer than 20:1"):
            check_image(data, "thin.png")


def test_a_video_of_thin_frames_is_refused_at_submission():
    data = _video([Image.new("RGB", (2000, 16), c) for c in COLOURS[:2]], fmt="webm")
    with pytest.raises(MediaError, match="2000x16 frames are longer than 20:1"):
        TASK_KINDS["video-caption"].check_input(data, "thin.webm")


def test_the_strip_fails_in_the_cli_with_one_line(tmp_path):
    from tests.support.services import assert_one_error_line, run_embedded

    strip = tmp_path / "strip.png"
    strip.write_bytes(case("strip_200000x1.png"))
    out = run_embedded("caption", str(strip), "--llm", "py:tests.support.fakes:worker_generator",
                       "--scorer", "py:tests.support.fakes:worker_scorer", home=tmp_path / "home", timeout=120)
    assert_one_error_line(out, r"longer than 20:1")


# --------------------------------------------------------------------------- time in a video


def test_a_webm_without_a_duration_is_measured_and_sampled_like_its_control():
    recorded, control = case("mediarecorder_noduration.webm"), case("same_with_duration.webm")
    assert probe_video(recorded, "r.webm").duration == pytest.approx(4.0, abs=0.01)
    assert probe_video(control, "c.webm").duration == pytest.approx(4.0, abs=0.01)
    frames, expected = sample_frames(recorded, "r.webm", 8), sample_frames(control, "c.webm", 8)
    assert [pixels(f).mean() for f in frames] == [pixels(f).mean() for f in expected]
    assert sum(pixels(f).mean() < 5 for f in frames) == 1  # only the first sample is in the black 0.5 s
    info = TASK_KINDS["video-caption"].check_input(recorded, "r.webm")[1]
    subject = TASK_KINDS["video-caption"].subject(JobInput(recorded, "r.webm", {}, Settings(), info=info))
    assert subject == {"subject": "a 4-second video"}


COLOURS = [(220, 30, 30), (30, 220, 30), (30, 30, 220), (230, 230, 230)]


def _video(frames: list[Image.Image], fps: int = 1, rotation: int | None = None, fmt: str = "mp4") -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        stream = container.add_stream("libx264" if fmt == "mp4" else "libvpx", rate=fps,
                                      options={"threads": "1"} if fmt == "mp4" else {})
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_the_frame_sampled_at_t_is_the_frame_on_screen_at_t(fmt):
    # One second per colour: at 0.5 s the first is on screen, at 1.5 s the second, and so on.
    data = _video([Image.new("RGB", (64, 48), c) for c in COLOURS], fmt=fmt)
    frames = sample_frames(data, f"v.{fmt}", 4)
    shown = [tuple(int(v) for v in pixels(f).reshape(-1, 3).mean(axis=0)) for f in frames]
    for got, colour in zip(shown, COLOURS, strict=True):
        assert np.abs(np.subtract(got, colour)).max() < 20, (shown, COLOURS)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_a_rotated_phone_video_is_sampled_and_sized_as_a_player_shows_it(rotation):
    upright = decode_image(sample_path("chelsea").read_bytes()).resize((96, 64))
    undo = {90: Image.Transpose.ROTATE_270, -90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180}
    data = _video([upright.transpose(undo[rotation])] * 4, fps=2, rotation=rotation)
    info = probe_video(data, "phone.mp4")
    assert (info.width, info.height) == (96, 64)
    frame = sample_frames(data, "phone.mp4", 1)[0]
    assert frame.size == (96, 64) and np.abs(pixels(frame) - pixels(upright)).mean() < 8


# --------------------------------------------------------------------------- what a stream is


def test_cover_art_is_not_a_video_but_the_file_is_a_recording():
    data = case("cover_art.m4a")
    media, info = audio_media(data, "cover_art.m4a")
    assert media.media_type == "audio/mp4" and info.duration == pytest.approx(3.04, abs=0.05)
    with pytest.raises(MediaError, match="attached picture \\(cover art\\), not a video"):
        TASK_KINDS["video-caption"].check_input(data, "cover_art.m4a")


def test_a_single_still_is_refused_for_video_and_two_frames_are_a_video():
    photo = decode_image(sample_path("coffee").read_bytes()).resize((64, 48))
    with pytest.raises(MediaError, match="a single still picture, not a video"):
        probe_video(_video([photo]), "still.mp4")
    assert probe_video(_video([photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]), "two.mp4").duration > 0


def test_a_recording_with_a_video_track_is_both_a_video_and_audio():
    """The same bytes can serve two tasks (the web test checks each job serves its own type)."""
    data = video_with_sound()
    assert TASK_KINDS["video-caption"].check_input(data, "both.webm")[0].media_type == "video/webm"
    assert TASK_KINDS["audio-caption"].check_input(data, "both.webm")[0].media_type == "audio/webm"


def video_with_sound() -> bytes:
    """A 2-second WebM with a VP8 picture and a Vorbis/Opus tone."""
    buffer = io.BytesIO()
    tone = av.open(io.BytesIO(recording(2.0, rate=48_000)))
    with av.open(buffer, "w", format="webm") as container:
        video = container.add_stream("libvpx", rate=4)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("libopus", rate=48_000, layout="mono")
        for i in range(8):
            container.mux(video.encode(av.VideoFrame.from_image(Image.new("RGB", (64, 48), COLOURS[i % 4]))))
        container.mux(video.encode())
        for frame in tone.decode(audio=0):
            frame.pts = None
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return buffer.getvalue()


# --------------------------------------------------------------------------- any language


def test_a_chinese_prompt_keeps_its_bare_framing_and_chinese_lines_are_distinct_candidates():
    from tests.support.fakes import WordOverlapScorer
    from worker.core import parse_candidates

    kind = TASK_KINDS["text-to-image"]
    media, info = kind.check_input(case("prompt_chinese.txt"), "prompt_chinese.txt")
    prompt = info["prompt"]
    job = JobInput(media.data, media.name, {}, Settings(top_k=3), info=info)
    pool = kind.initial_pool(job)
    scorer = WordOverlapScorer()
    step0 = bootstrap(pool, scorer, scorer.encode_sample("一只红狐狸"), Settings(top_k=3))
    assert prompt in [c.text for c in step0.candidates]
    assert len(step0.candidates) == len(set(pool)) == 10
    answer = case("answer_chinese_list.txt").decode()
    lines = parse_candidates(answer, max_words=30)
    assert len(lines) == 5 and len({normalize(line) for line in lines}) == 5
    assert lines[0] == "黎明时分，一只红狐狸卧在雪地里，金色的晨光"


@pytest.mark.parametrize("lines", [
    ["Кошка лежит на полосатом ковре", "Кошка сидит на деревянном столе"],
    ["고양이가 양탄자 위에 누워 있다", "고양이가 나무 탁자 위에 앉아 있다"],
    ["قطة نائمة على سجادة مخططة", "قطة تجلس على طاولة خشبية"],
    ["A tabby cat 🐱 on a striped rug", "A tabby cat on a wooden table 🌞"],
    ["Ein Kätzchen auf dem Teppich", "Ein Kätzchen auf dem Tisch"],
])
def test_lines_in_any_script_are_candidates_and_never_collide(lines):
    from worker.core import parse_candidates

    found = parse_candidates("\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1)), max_words=20)
    assert found == lines
    assert len({normalize(line) for line in lines}) == len(lines) and all(normalize(line) for line in lines)
    assert normalize(lines[0].upper()) == normalize(lines[0])  # case does not make a new candidate


# --------------------------------------------------------------------------- the real embedded scorer


def _step0_best(task: str, data: bytes, name: str, **options):
    from worker.models import load_scorer

    kind = TASK_KINDS[task]
    media, info = kind.check_input(data, name)
    job = JobInput(media.data, name, kind.job_options(options), Settings(top_k=3), info=info)
    scorer = kind.adapt_scorer(load_scorer("embedded"), job)
    result = bootstrap(kind.initial_pool(job), scorer, scorer.encode_sample(kind.decode(job)), Settings(top_k=3))
    return result.best


@pytest.mark.slow
# Step 0 of the embedded scorer as it is since it has its eyes (the recognisers): the case and its control must agree,
# and both must score what they scored then.
@pytest.mark.parametrize("task, file, control, caption, score", [
    ("image-caption", "exif_orientation6.jpg", "exif_upright_control.png", "There is a rocket above the Earth.", 0.1747),
    ("image-caption", "gray16.png", "gray8.png", "There is a tabby cat on a rug.", 0.3657),
    ("image-caption", "silhouette_rgba.png", "silhouette_on_white.png", "A bulldog next to a golden retriever.", 0.1925),
    ("video-caption", "mediarecorder_noduration.webm", "same_with_duration.webm", "Footage of a tabby cat on a rug.", 0.2626),
])
def test_the_embedded_scorer_sees_each_case_like_its_control(task, file, control, caption, score):
    got, expected = _step0_best(task, case(file), file), _step0_best(task, case(control), control)
    assert got.score == pytest.approx(expected.score, abs=0.005)
    assert expected.score == pytest.approx(score, abs=0.005)
    if caption is not None:
        assert got.text == expected.text == caption
