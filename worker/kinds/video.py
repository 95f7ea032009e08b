"""Video captioning: frames sampled evenly over the video, each scored by the image scorer."""

from __future__ import annotations

from worker.core import Scorer
from worker.kinds.base import EMBEDDED, PAPER, JobInput, Option, TaskKind
from worker.kinds.prompts import CaptionTemplate
from worker.media import Media

# The subject is set per job from the video's length ("a 12-second video").
VIDEO_CAPTION = CaptionTemplate(
    subject="a video",
    system=(
        "You write concrete, literal captions of short videos. You name who or what is in it, "
        "what happens and where. You never explain yourself."
    ),
    length="of 20 to {max_words} words",
)


def _check_video(data: bytes, name: str) -> tuple[Media, dict]:
    from worker.media.video import video_media

    media, info = video_media(data, name)
    return media, info.to_dict()


def _decode_video(job: JobInput) -> list:
    from worker.media.video import sample_frames

    return sample_frames(job.data, job.name, job.options["frames"])


def _frame_scorer(scorer: Scorer, job: JobInput) -> Scorer:
    from worker.models.frames import FrameScorer

    return FrameScorer(scorer, job.options["frame_mode"])


def _video_subject(job: JobInput) -> dict[str, str]:
    seconds = job.info.get("duration") or 0
    return {"subject": f"a {seconds:.0f}-second video" if seconds >= 1 else "a very short video"}


KIND = TaskKind(
    name="video-caption",
    input_kind="video",
    template=VIDEO_CAPTION,
    pool_file="video_caption_pool.txt",
    check_input=_check_video,
    decode=_decode_video,
    # The paper asks for 20-25 words for videos.
    paper_settings=PAPER.replace(max_words=25),
    embedded_settings=EMBEDDED.replace(max_words=25),
    options={
        "frames": Option(8, "frames sampled evenly over the video", low=1, high=64),
        "frame_mode": Option("per-frame", "per-frame: mean of the frames' scores; pooled: score the "
                             "mean frame feature", choices=("per-frame", "pooled")),
    },
    adapt_scorer=_frame_scorer,
    subject=_video_subject,
)
