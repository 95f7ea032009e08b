"""The kinds of job MILS runs. A kind is a prompt template, an initial pool, how its input is
checked (at submission) and decoded (in the worker), how the job's scorer is applied to it,
its own options, and default settings; the optimizer core and the store are the same for all."""

from __future__ import annotations

import dataclasses
import functools
import json
import importlib.resources
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.core import Scorer, Settings, SettingsError
from worker.media import Media, MediaError, decode_image, image_media, read_media_file
from worker.models import ModelLoadError, check_renderer_spec
from worker.core.optimizer import PromptTemplate
from worker.templates import (AUDIO_CAPTION, IMAGE_CAPTION, VIDEO_CAPTION, ArithmeticTemplate, PromptRewriteTemplate,
                              StyleTemplate)


@dataclass(frozen=True)
class Option:
    """A task option: its type and default (None: it must be given), and its choices or bounds."""

    default: Any
    help: str
    type: type = int
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    validate: Callable[[Any], None] | None = None  # raises with a message when the value is wrong

    def check(self, name: str, value: Any) -> Any:
        value = self._typed(name, value)
        if self.validate is not None:
            self.validate(value)
        return value

    def _typed(self, name: str, value: Any) -> Any:
        if self.choices:
            if value not in self.choices:
                raise SettingsError(f"{name} must be one of {', '.join(self.choices)}, not {value!r}")
            return value
        if self.type is str:
            text = str(value).strip()
            if not text:
                raise SettingsError(f"{name} must not be empty")
            return text
        try:
            number = self.type(value)
            if self.type is int and number != float(value):
                raise ValueError
        except (TypeError, ValueError):
            kind = "a whole number" if self.type is int else "a number"
            raise SettingsError(f"{name} must be {kind}, not {value!r}") from None
        if not (self.low is None or number >= self.low) or not (self.high is None or number <= self.high):
            raise SettingsError(f"{name} must be between {self.low} and {self.high}, not {number}")
        return number


@dataclass(frozen=True)
class JobInput:
    """What a kind's worker-side functions get: the stored input and the job's choices."""

    data: bytes
    name: str
    options: Mapping[str, Any]
    settings: Settings
    # Other stored media the options name by hash (option "style_sha256" -> its bytes).
    attachments: Mapping[str, bytes] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)  # what the input is (jobs.input_info)
    # The results of the jobs this one is built on, in order (cross-modal arithmetic).
    parent_texts: tuple[str, ...] = ()


def _same_scorer(scorer: Scorer, _job: JobInput) -> Scorer:
    return scorer


def _needs_an_image_scorer(spec: str) -> None:
    if spec.startswith("clap:"):
        raise ModelLoadError(f"{spec!r} is an audio-text scorer; this task scores pictures "
                             "(--scorer embedded or open_clip:ARCH[@PRETRAINED])")


@dataclass(frozen=True)
class TaskKind:
    name: str
    input_kind: str  # "image" | "video" | "audio" | "text" | "parts": what the CLI, the form and the API accept
    template: PromptTemplate
    pool_file: str  # in worker/data ("" when the pool comes from the input, pool_from_input)
    # At submission: check the input bytes; returns the stored media and what it is (input_info).
    check_input: Callable[[bytes, str], tuple[Media, dict]]
    # In the worker: the job's input -> what the scorer encodes.
    decode: Callable[[JobInput], Any]
    # The paper's settings, for real models on a GPU.
    paper_settings: Settings
    # What the embedded offline models can do on 2 CPU cores in minutes (see README).
    embedded_settings: Settings
    options: Mapping[str, Option] = field(default_factory=dict)
    # The job's scorer (by its spec) made fit for this input, e.g. applied frame by frame.
    adapt_scorer: Callable[[Scorer, JobInput], Scorer] = _same_scorer
    # The initial pool from the input (e.g. plain rewrites of a prompt), instead of pool_file.
    pool_from_input: Callable[[JobInput], Sequence[str]] | None = None
    # Fields of the template set from the job's input (e.g. subject="a 12-second video").
    subject: Callable[[JobInput], dict[str, Any]] | None = None
    # What the result is called (the CLI's --json key).
    output: str = "caption"
    # Refuses (ModelLoadError) a scorer spec this kind cannot use, before a job is stored.
    check_scorer: Callable[[str], None] = _needs_an_image_scorer

    @functools.cached_property
    def pool(self) -> tuple[str, ...]:
        text = (importlib.resources.files("worker") / "data" / self.pool_file).read_text("utf-8")
        return tuple(line.strip() for line in text.splitlines() if line.strip())

    def initial_pool(self, job: JobInput) -> Sequence[str]:
        return self.pool if self.pool_from_input is None else self.pool_from_input(job)

    def template_for(self, job: JobInput) -> PromptTemplate:
        if self.subject is None:
            return self.template
        return dataclasses.replace(self.template, **self.subject(job))

    def job_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The kind's options with what the user gave (None = not given), checked."""
        unknown = sorted(k for k, v in given.items() if v is not None and k not in self.options)
        if unknown:
            raise SettingsError(f"{self.name} has no option {', '.join(unknown)}")
        options = {}
        for name, option in self.options.items():
            if given.get(name) is not None:
                options[name] = option.check(name, given[name])
            elif option.default is None:
                raise SettingsError(f"{self.name} needs {option.help}")
            else:
                options[name] = option.default
        return options

    def load_file(self, path: str | Path) -> tuple[Media, dict]:
        return self.check_input(read_media_file(path), Path(path).name)


# --------------------------------------------------------------------------- image


def _check_image(data: bytes, name: str) -> tuple[Media, dict]:
    media = image_media(data, name)
    image = decode_image(data, name)
    return media, {"width": image.width, "height": image.height}


# --------------------------------------------------------------------------- video


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


# --------------------------------------------------------------------------- audio


def _check_audio(data: bytes, name: str) -> tuple[Media, dict]:
    from worker.media.audio import audio_media

    media, info = audio_media(data, name)
    return media, info.to_dict()


def _decode_audio(job: JobInput):
    from worker.media.audio import AudioInput

    return AudioInput(job.data, job.name, job.options["clip_seconds"])


def _needs_an_audio_scorer(spec: str) -> None:
    if not spec.startswith(("clap:", "py:")):
        raise ModelLoadError(
            "audio-caption needs an audio-text scorer: --scorer clap:ID_OR_PATH (e.g. "
            "clap:laion/clap-htsat-unfused); the embedded and open_clip scorers see images only, "
            "and no CLAP weights are installed offline (see README)")


def _audio_subject(job: JobInput) -> dict[str, str]:
    return {"subject": f"a {max(job.info.get('duration') or 0, 1):.0f}-second sound recording"}


# --------------------------------------------------------------------------- text to image

MAX_PROMPT_CHARS = 1000


def _check_prompt(data: bytes, name: str) -> tuple[Media, dict]:
    try:
        prompt = " ".join(data.decode("utf-8").split())
    except UnicodeDecodeError:
        raise MediaError(f"{name}: the prompt is not UTF-8 text") from None
    if len(prompt) < 3:
        raise MediaError(f"{name}: the prompt is empty or too short")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise MediaError(f"{name}: {len(prompt)} characters is over the {MAX_PROMPT_CHARS}-character limit")
    data = prompt.encode()
    return Media(data=data, media_type="text/plain; charset=utf-8", name=name), {"prompt": prompt}


# Plain rewrites of the original prompt: step 0's pool (every one is rendered, so it is small).
PROMPT_FRAMINGS = ["{p}", "A photo of {p}", "{p}, highly detailed", "{p}, professional photograph, sharp focus",
                   "A painting of {p}", "{p}, cinematic lighting", "A close-up of {p}", "{p}, wide shot",
                   "A digital illustration of {p}", "{p}, natural light, 35mm photo"]


def _prompt_pool(job: JobInput) -> list[str]:
    p = job.data.decode("utf-8").rstrip(" .")
    lowered = p[0].lower() + p[1:] if p[:1].isupper() and not p[1:2].isupper() else p
    return [f.format(p=lowered if not f.startswith("{p}") else p) for f in PROMPT_FRAMINGS]


def _render_scorer(scorer: Scorer, job: JobInput) -> Scorer:
    from worker.models.render import Renderer, RenderScorer

    options = job.options
    renderer = Renderer(options["renderer"], seed=job.settings.seed, size=options["size"],
                        steps=options["render_steps"], guidance=options["guidance"])
    return RenderScorer(scorer, renderer)


def _multiple_of_8(size: int) -> None:
    if size % 8:
        raise SettingsError(f"size must be a multiple of 8 (the latent grid), not {size}")


RENDER_OPTIONS = {
    "renderer": Option(None, "the text-to-image pipeline, diffusers:ID_OR_PATH (no weights are offline here)",
                       type=str, validate=check_renderer_spec),
    "size": Option(512, "width and height of the renders in pixels, a multiple of 8", low=16, high=2048,
                   validate=_multiple_of_8),
    "render_steps": Option(30, "denoising steps per render", low=1, high=200),
    "guidance": Option(7.5, "classifier-free guidance scale", type=float, low=0.0, high=50.0),
}

# --------------------------------------------------------------------------- style transfer


def _style_scorer(scorer: Scorer, job: JobInput) -> Scorer:
    from worker.models.render import Renderer
    from worker.models.style import StyleScorer

    options = job.options
    content = _fit(decode_image(job.data, job.name), options["size"])
    editor = Renderer(options["editor"], seed=job.settings.seed, size=options["size"], steps=options["render_steps"],
                      guidance=options["guidance"], image=content, image_guidance=options["image_guidance"])
    style = decode_image(job.attachments["style"], "style image")
    return StyleScorer(scorer, editor, style, options["content_weight"])


def _fit(image, size: int):
    """The image scaled so its longer side is `size`, both sides a multiple of 8 (the latent grid)."""
    scale = size / max(image.size)
    width, height = (max(8, round(side * scale / 8) * 8) for side in image.size)
    return image.resize((width, height))


def _needs_the_cnn_scorer(spec: str) -> None:
    if spec != "embedded" and not spec.startswith("py:"):
        raise ModelLoadError("style-transfer measures style and content with the embedded scorer's CNN "
                             "(EfficientNet-Lite0 activations): use --scorer embedded")


STYLE_OPTIONS = {
    "editor": Option(None, "the instruction-editing pipeline, diffusers:ID_OR_PATH (e.g. an InstructPix2Pix "
                           "checkpoint; no weights are offline here)", type=str, validate=check_renderer_spec),
    # Set at submission from the style image, which is stored like any input.
    "style_sha256": Option(None, "a style image (the CLI's --style, the API's style_file)", type=str),
    "size": Option(512, "the longer side of the edited image in pixels", low=16, high=2048),
    "render_steps": Option(30, "denoising steps per edit", low=1, high=200),
    "guidance": Option(7.5, "text guidance scale", type=float, low=0.0, high=50.0),
    "image_guidance": Option(1.5, "image guidance scale (how closely an edit follows the photo)", type=float,
                             low=0.0, high=50.0),
    "content_weight": Option(1.0, "weight of the content distance against the style distance", type=float,
                             low=0.0, high=100.0),
}

# --------------------------------------------------------------------------- cross-modal arithmetic


def _check_manifest(data: bytes, name: str) -> tuple[Media, dict]:
    """The input of an arithmetic job: which parts it combines, in order (see worker.arithmetic)."""
    try:
        manifest = json.loads(data)
        parts = manifest["parts"]
        if len(parts) < 2 or not all(("job" in p) != ("text" in p) for p in parts):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise MediaError(f"{name}: not an arithmetic manifest ({{'parts': [{{'job': ID}} or {{'text': ...}}, ...]}})") from None
    return Media(data=data, media_type="application/json", name=name), {"parts": parts}


def _part_texts(job: JobInput) -> list[str]:
    """Every part as text, in order: the parent jobs' results and the literal texts."""
    results = iter(job.parent_texts)
    return [next(results) if "job" in part else part["text"] for part in json.loads(job.data)["parts"]]


def _combinations(job: JobInput) -> list[str]:
    texts = [t.rstrip(" .") for t in _part_texts(job)]
    lowered = [t[:1].lower() + t[1:] for t in texts]
    return [" and ".join(texts), ", ".join(texts), "A picture of " + " and ".join(lowered),
            texts[0] + ", with " + " and ".join(lowered[1:]), "One scene showing " + ", ".join(lowered),
            " ".join(texts), texts[0] + " in a scene with " + " and ".join(lowered[1:])]


PAPER = Settings(steps=10, top_k=50, candidates=50, temperature=0.5, top_p=0.9)
EMBEDDED = Settings(steps=5, top_k=8, candidates=15, temperature=0.7, top_p=0.9, max_words=15,
                    max_generation_rounds=2)

TASK_KINDS: dict[str, TaskKind] = {
    "image-caption": TaskKind(
        name="image-caption",
        input_kind="image",
        template=IMAGE_CAPTION,
        pool_file="image_caption_pool.txt",
        check_input=_check_image,
        decode=lambda job: decode_image(job.data, job.name),
        paper_settings=PAPER,
        embedded_settings=EMBEDDED,
    ),
    "video-caption": TaskKind(
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
    ),
    "audio-caption": TaskKind(
        name="audio-caption",
        input_kind="audio",
        template=AUDIO_CAPTION,
        pool_file="audio_caption_pool.txt",
        check_input=_check_audio,
        decode=_decode_audio,
        # The paper asks for audio captions under 20 words.
        paper_settings=PAPER.replace(max_words=19),
        embedded_settings=EMBEDDED.replace(max_words=19),
        options={"clip_seconds": Option(10, "seconds per clip; a longer recording's clips are averaged",
                                        low=1, high=30)},
        subject=_audio_subject,
        check_scorer=_needs_an_audio_scorer,
    ),
    "text-to-image": TaskKind(
        name="text-to-image",
        input_kind="text",
        template=PromptRewriteTemplate(),
        pool_file="",
        check_input=_check_prompt,
        decode=lambda job: job.data.decode("utf-8"),
        paper_settings=PAPER.replace(max_words=40),
        embedded_settings=EMBEDDED.replace(max_words=30),
        options=RENDER_OPTIONS,
        adapt_scorer=_render_scorer,
        pool_from_input=_prompt_pool,
        output="prompt",
        subject=lambda job: {"original": job.info.get("prompt", "")},
    ),
    "style-transfer": TaskKind(
        name="style-transfer",
        input_kind="image",
        template=StyleTemplate(),
        pool_file="style_instruction_pool.txt",
        check_input=_check_image,
        decode=lambda job: decode_image(job.data, job.name),
        paper_settings=PAPER.replace(max_words=20),
        embedded_settings=EMBEDDED.replace(max_words=20),
        options=STYLE_OPTIONS,
        adapt_scorer=_style_scorer,
        output="instruction",
        check_scorer=_needs_the_cnn_scorer,
    ),
    "arithmetic": TaskKind(
        name="arithmetic",
        input_kind="parts",
        template=ArithmeticTemplate(),
        pool_file="",
        check_input=_check_manifest,
        decode=_part_texts,
        paper_settings=PAPER.replace(max_words=40),
        embedded_settings=EMBEDDED.replace(max_words=30),
        options=RENDER_OPTIONS,
        adapt_scorer=_render_scorer,
        pool_from_input=_combinations,
        subject=lambda job: {"parts": tuple(_part_texts(job))},
        output="prompt",
    ),
}


def default_settings(task: str, generator: str) -> Settings:
    kind = TASK_KINDS[task]
    return kind.embedded_settings if generator == "embedded" else kind.paper_settings


def job_settings(task: str, generator: str, **overrides: Any) -> Settings:
    """The task's defaults for this generator with what the user set (None = not set);
    raises SettingsError for values out of range."""
    settings = default_settings(task, generator).replace(
        **{name: value for name, value in overrides.items() if value is not None})
    if settings.prompts_per_step > settings.candidates:
        settings = settings.replace(prompts_per_step=settings.candidates)
    return settings
