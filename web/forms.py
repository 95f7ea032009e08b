"""The submit form (Flask-WTF: CSRF token, field checks, messages next to the fields)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, MultipleFileField
from wtforms import FloatField, IntegerField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import NumberRange, Optional

from worker.core.settings import MAX_CANDIDATES, MAX_STEPS
from worker.samples import SAMPLES
from worker.task_kinds import TASK_KINDS


def _defaults(task: str) -> tuple:
    kind = TASK_KINDS[task]
    return kind.embedded_settings, kind.paper_settings


EMBEDDED, PAPER = _defaults("image-caption")
VIDEO = TASK_KINDS["video-caption"]
AUDIO = TASK_KINDS["audio-caption"]
T2I = TASK_KINDS["text-to-image"]
STYLE = TASK_KINDS["style-transfer"]


class SubmitForm(FlaskForm):
    task = SelectField("Task", choices=[SelectChoice(name) for name in TASK_KINDS], default="image-caption")
    image = FileField("Input file", description="An image (PNG, JPEG, WebP, GIF, BMP, TIFF; 40 megapixels at most) "
                                                "or, for a video task, a video (MP4, WebM, MKV, AVI; 10 minutes at most), or for an audio "
                                                "task a recording (WAV, MP3, FLAC, OGG, M4A; 5 minutes at most). "
                                                "50 MB at most.")
    sample = SelectField("…or a bundled sample photo (a video task pans across it)", choices=[SelectChoice("", "(none)")] + [SelectChoice(s) for s in sorted(SAMPLES)],
                         default="")
    steps = IntegerField("Steps", validators=[Optional(), NumberRange(1, MAX_STEPS)], default=EMBEDDED.steps,
                         description=f"Optimization steps after the bootstrap (paper: {PAPER.steps}).")
    candidates = IntegerField("Candidates per step (N)", validators=[Optional(), NumberRange(1, MAX_CANDIDATES)],
                              default=EMBEDDED.candidates,
                              description=f"New texts the LLM proposes each step (paper: {PAPER.candidates}).")
    top_k = IntegerField("Top K", validators=[Optional(), NumberRange(1, MAX_CANDIDATES)], default=EMBEDDED.top_k,
                         description=f"Best texts kept and shown back to the LLM with their scores (paper: {PAPER.top_k}).")
    seed = IntegerField("Seed", validators=[Optional()], default=0,
                        description="Same seed, same input, same models: the same job, step for step.")
    patience = IntegerField("Patience", validators=[Optional(), NumberRange(min=1)],
                            description="Stop after this many steps without improvement (empty: run every step).")
    epsilon = FloatField("Exploration (epsilon)", validators=[Optional(), NumberRange(0, 1)], default=0.0,
                         description="Chance that a top-K slot shows a random scored text instead (0: greedy).")
    llm = StringField("Generator (LLM)", default="embedded",
                      description="'embedded' (Qwen2.5-Coder-0.5B on the CPU), a Hugging Face id or path, or py:MODULE:FACTORY. "
                                  "The defaults above are the embedded model's; leave fields empty for the paper's.")
    scorer = StringField("Scorer", default="embedded",
                         description="'embedded' (EfficientNet-Lite0 + MiniLM), open_clip:ARCH[@PRETRAINED], "
                                     "clap:ID_OR_PATH (audio), or py:MODULE:FACTORY.")

    frames = IntegerField("Frames (video)", validators=[Optional(), NumberRange(1, 64)],
                          default=VIDEO.options["frames"].default,
                          description=VIDEO.options["frames"].help.capitalize() + ".")
    frame_mode = SelectField("Frame scores (video)", choices=[SelectChoice(c) for c in VIDEO.options["frame_mode"].choices],
                             default=VIDEO.options["frame_mode"].default,
                             description=VIDEO.options["frame_mode"].help.capitalize() + ".")

    clip_seconds = IntegerField("Clip seconds (audio)", validators=[Optional(), NumberRange(1, 30)],
                                default=AUDIO.options["clip_seconds"].default,
                                description=AUDIO.options["clip_seconds"].help.capitalize() + ".")

    prompt = TextAreaField("Prompt (text to image)", validators=[Optional()],
                           description="The description the picture should match; candidate prompts are "
                                       "rendered and scored against it.")
    renderer = StringField("Renderer", validators=[Optional()],
                           description=T2I.options["renderer"].help.capitalize() + ".")
    size = IntegerField("Size", validators=[Optional(), NumberRange(16, 2048)], default=T2I.options["size"].default,
                        description=T2I.options["size"].help.capitalize() + ".")
    render_steps = IntegerField("Render steps", validators=[Optional(), NumberRange(1, 200)],
                                default=T2I.options["render_steps"].default,
                                description=T2I.options["render_steps"].help.capitalize() + ".")
    guidance = FloatField("Guidance", validators=[Optional(), NumberRange(0, 50)], default=T2I.options["guidance"].default,
                          description=T2I.options["guidance"].help.capitalize() + ".")

    style_image = FileField("Style image", description="The artwork whose style the edits should take.")
    style_sample = SelectField("…or a bundled photo as the style", default="",
                               choices=[SelectChoice("", "(none)")] + [SelectChoice(s) for s in sorted(SAMPLES)])
    editor = StringField("Editor", validators=[Optional()],
                         description=STYLE.options["editor"].help.capitalize() + ".")
    image_guidance = FloatField("Image guidance", validators=[Optional(), NumberRange(0, 50)],
                                default=STYLE.options["image_guidance"].default,
                                description=STYLE.options["image_guidance"].help.capitalize() + ".")
    content_weight = FloatField("Content weight", validators=[Optional(), NumberRange(0, 100)],
                                default=STYLE.options["content_weight"].default,
                                description=STYLE.options["content_weight"].help.capitalize() + ".")

    parts = MultipleFileField("Parts (arithmetic)",
                              description="Images and sound recordings to combine; each is captioned by its own job.")
    text = TextAreaField("Text parts (arithmetic)", validators=[Optional()],
                         description="More parts as text, one per line.")
    audio_scorer = StringField("Audio scorer (arithmetic)", validators=[Optional()],
                               description="For sound parts: clap:ID_OR_PATH.")

    def options_for(self, kind) -> dict:
        """The kind's own options from the form (the form shows every kind's; others are ignored;
        the style image comes as an attachment)."""
        return {name: getattr(self, name).data for name in kind.options if hasattr(self, name)}

    def overrides(self) -> dict:
        return {name: getattr(self, name).data
                for name in ("steps", "candidates", "top_k", "seed", "patience", "epsilon")}
