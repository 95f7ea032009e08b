"""Text-to-image prompt rewriting: the candidates are prompts; each is rendered with a fixed seed
and the picture scored against the user's ORIGINAL prompt by an image-text scorer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.core import Message, Scored, Scorer, SettingsError
from worker.kinds.base import EMBEDDED, PAPER, JobInput, Option, TaskKind
from worker.kinds.prompts import PROMPT_WRITER, answer_rules, scored_lines
from worker.media import Media, MediaError
from worker.models import check_renderer_spec


@dataclass(frozen=True)
class PromptRewriteTemplate:
    """Text-to-image prompt rewriting: the scored texts are prompts, judged by the picture a
    text-to-image model makes from them against the user's original description."""

    original: str = ""  # set per job (KIND.subject)
    system: str = PROMPT_WRITER

    def messages(self, examples: Sequence[Scored], n: int, max_words: int) -> list[Message]:
        user = (
            f'We want a picture that matches this description: "{self.original}".\n'
            "Each prompt below was given to a text-to-image model, and a judge scored the picture "
            "it made against the description; a higher score means a better match.\n\n"
            f"Prompts, best first (score: prompt):\n{scored_lines(examples)}\n\n"
            f"Write {n} new prompts that would make pictures scoring higher than all of these. Keep "
            "what the best ones get right, add concrete visual details and try different wordings. "
            + answer_rules("prompt", n, f"at most {max_words} words")
        )
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


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


def render_scorer(scorer: Scorer, job: JobInput) -> Scorer:
    from worker.models.render import Renderer, RenderScorer

    options = job.options
    renderer = Renderer(options["renderer"], seed=job.settings.seed, size=options["size"],
                        steps=options["render_steps"], guidance=options["guidance"])
    return RenderScorer(scorer, renderer)


def _multiple_of_8(size: int) -> None:
    if size % 8:
        raise SettingsError(f"size must be a multiple of 8 (the latent grid), not {size}")


# The options of every kind whose candidates are rendered (text-to-image, arithmetic).
RENDER_OPTIONS = {
    "renderer": Option(None, "the text-to-image pipeline, diffusers:ID_OR_PATH (no weights are offline here)",
                       type=str, validate=check_renderer_spec, names_model=True),
    "size": Option(512, "width and height of the renders in pixels, a multiple of 8", low=16, high=2048,
                   validate=_multiple_of_8),
    "render_steps": Option(30, "denoising steps per render", low=1, high=200),
    "guidance": Option(7.5, "classifier-free guidance scale", type=float, low=0.0, high=50.0),
}


KIND = TaskKind(
    name="text-to-image",
    input_kind="text",
    template=PromptRewriteTemplate(),
    pool_file="",
    check_input=_check_prompt,
    decode=lambda job: job.data.decode("utf-8"),
    paper_settings=PAPER.replace(max_words=40),
    embedded_settings=EMBEDDED.replace(max_words=30),
    options=RENDER_OPTIONS,
    adapt_scorer=render_scorer,
    pool_from_input=_prompt_pool,
    output="prompt",
    subject=lambda job: {"original": job.info.get("prompt", "")},
)
