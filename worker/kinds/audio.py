"""Audio captioning: the recording is decoded and cut into clips an audio-text scorer (CLAP) embeds."""

from __future__ import annotations

from worker.kinds.base import EMBEDDED, PAPER, JobInput, Option, TaskKind
from worker.kinds.prompts import CaptionTemplate
from worker.media import Media

# The subject is set per job from the recording's length ("a 7-second sound recording").
AUDIO_CAPTION = CaptionTemplate(
    subject="a sound recording",
    system=(
        "You write short, literal descriptions of sound recordings. You name what makes each "
        "sound, what it does and where it seems to be. You never explain yourself."
    ),
)


def check_audio(data: bytes, name: str) -> tuple[Media, dict]:
    """Audio bytes checked by decoding them; returns the media and what it is (input_info)."""
    from worker.media.audio import audio_media

    media, info = audio_media(data, name)
    return media, info.to_dict()


def _decode_audio(job: JobInput):
    from worker.media.audio import AudioInput

    return AudioInput(job.data, job.name, job.options["clip_seconds"])


def _audio_subject(job: JobInput) -> dict[str, str]:
    return {"subject": f"a {max(job.info.get('duration') or 0, 1):.0f}-second sound recording"}


KIND = TaskKind(
    name="audio-caption",
    input_kind="audio",
    template=AUDIO_CAPTION,
    pool_file="audio_caption_pool.txt",
    check_input=check_audio,
    decode=_decode_audio,
    # The paper asks for audio captions under 20 words.
    paper_settings=PAPER.replace(max_words=19),
    embedded_settings=EMBEDDED.replace(max_words=19),
    options={"clip_seconds": Option(10, "seconds per clip; a longer recording's clips are averaged",
                                    low=1, high=30)},
    subject=_audio_subject,
    scorer_needs="audio",
)
