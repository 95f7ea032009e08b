"""The submit forms (Flask-WTF: CSRF token, field checks, messages next to the fields).

The settings' fields are made from their declarations (worker.core.settings), the task options'
from the kinds' (worker.kinds): a field per option name, shown (by static/submit.js) only for the
kinds that have it.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, MultipleFileField
from wtforms import FloatField, IntegerField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import NumberRange, Optional

from worker.core.settings import Setting, shown_on
from worker.kinds import TASK_KINDS, Option, all_options
from worker.kinds.user_files import POOL_FILE_HELP, PROMPT_FILE_HELP, USER_FILE_TASKS
from worker.media.samples import SAMPLES
from worker.models import scorer_modality
from worker.models.registry import Registry

_IMAGE = TASK_KINDS["image-caption"]
EMBEDDED, PAPER = _IMAGE.embedded_settings, _IMAGE.paper_settings


def _sample_choices() -> list[SelectChoice]:
    return [SelectChoice("", "(none)")] + [SelectChoice(s) for s in sorted(SAMPLES)]


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def option_field(name: str, option: Option):
    """The form field of a task option: its type, bounds, default and help from the declaration."""
    description = option.help[:1].upper() + option.help[1:] + "."
    if option.choices:
        return SelectField(_label(name), choices=[SelectChoice(c) for c in option.choices], default=option.default,
                           description=description)
    if option.type is str:
        return StringField(_label(name), validators=[Optional()], default=option.default, description=description)
    bounds = [NumberRange(option.low, option.high)] if option.low is not None or option.high is not None else []
    field_type = IntegerField if option.type is int else FloatField
    return field_type(_label(name), validators=[Optional(), *bounds], default=option.default, description=description)


def setting_field(setting: Setting, *, batch: bool):
    """The form field of a setting: its label, bounds and wording from the declaration, the paper's
    and embedded defaults of image captioning named in the wording. The job form starts it as the
    declaration says; the batch form empty (the task's defaults, or an existing batch's own)."""
    where = "batch_form" if batch else "form"
    description = setting.wording(where).format(paper=getattr(PAPER, setting.name),
                                                embedded=getattr(EMBEDDED, setting.name))
    default = None
    if not batch and setting.form_default == "embedded":
        default = getattr(EMBEDDED, setting.name)
    elif not batch and (setting.form_default == "declared" or setting.show_default):
        default = setting.default
    low, high = setting.inclusive_low, setting.number_high
    bounds = [NumberRange(low, high)] if low is not None or high is not None else []
    field_type, render_kw = (IntegerField, None) if setting.type is int else (FloatField, {"step": "0.05"})
    return field_type(setting.label or _label(setting.name), validators=[Optional(), *bounds], default=default,
                      description=description, render_kw=render_kw)


def user_file_fields(form: type) -> None:
    """The prompt file and pool file uploads (worker.kinds.user_files) of a form, and the tasks
    that take them (the page shows the uploads for those)."""
    form.prompt_file = FileField("Prompt file", description=PROMPT_FILE_HELP)
    form.pool_file = FileField("Pool file", description=POOL_FILE_HELP)
    form.user_file_tasks = " ".join(USER_FILE_TASKS)


class SubmitForm(FlaskForm):
    task = SelectField("Task", choices=[SelectChoice(name) for name in TASK_KINDS], default="image-caption")
    image = FileField("Input file", description="An image (PNG, JPEG, WebP, GIF, BMP, TIFF; 40 megapixels at most) "
                                                "or, for a video task, a video (MP4, WebM, MKV, AVI; 10 minutes at most), or for an audio "
                                                "task a recording (WAV, MP3, FLAC, OGG, M4A; 5 minutes at most). "
                                                "50 MB at most.")
    sample = SelectField("…or a bundled sample photo (a video task pans across it)", choices=_sample_choices(),
                         default="")
    llm_name = SelectField("Generator (LLM)", default="embedded", validate_choice=False,
                           description="A model this server offers. The defaults above are the embedded model's; "
                                       "leave fields empty for the paper's.")
    llm = StringField("…or a generator spec", validators=[Optional()],
                      description="Instead of the choice above: openai:MODEL@BASE_URL (an OpenAI-compatible "
                                  "server such as vLLM), gguf:PATH, a Hugging Face id or path, or py:MODULE:FACTORY.")
    scorer_name = SelectField("Scorer", default="embedded", validate_choice=False,
                              description="A model this server offers.")
    scorer = StringField("…or a scorer spec", validators=[Optional()],
                         description="Instead of the choice above: open_clip:ARCH[@PRETRAINED], "
                                     "clap:ID_OR_PATH (audio), or py:MODULE:FACTORY.")

    prompt = TextAreaField("Prompt (text to image)", validators=[Optional()],
                           description="The description the picture should match; candidate prompts are "
                                       "rendered and scored against it.")
    parts = MultipleFileField("Parts (arithmetic)",
                              description="Images and sound recordings to combine; each is captioned by its own job.")
    text = TextAreaField("Text parts (arithmetic)", validators=[Optional()],
                         description="More parts as text, one per line.")
    audio_scorer_name = SelectField("Audio scorer (arithmetic)", default="", validate_choice=False,
                                    description="For sound parts: an audio-text scorer this server offers.")
    audio_scorer = StringField("…or an audio scorer spec", validators=[Optional()],
                               description="For sound parts: clap:ID_OR_PATH.")

    def settings_fields(self) -> list:
        """The settings' fields, in the order the surfaces list them."""
        return [self[setting.name] for setting in shown_on("form")]

    def option_fields(self) -> list[tuple[object, list[str]]]:
        """(field, kinds that have it) of every task option, in declaration order."""
        return [(self[name], kinds) for name, (_, kinds) in all_options().items()]

    def attachment_fields(self) -> list[tuple[object, object, str]]:
        """(upload field, sample field, kind) of every kind's attachments (e.g. the style image)."""
        return [(self[f"{name}_file"], self[f"{name}_sample"], kind.name)
                for kind in TASK_KINDS.values() for name in kind.attachments]


user_file_fields(SubmitForm)
for _setting in shown_on("form"):
    setattr(SubmitForm, _setting.name, setting_field(_setting, batch=False))
for _name, (_option, _kinds) in all_options().items():
    setattr(SubmitForm, _name, option_field(_name, _option))
for _kind in TASK_KINDS.values():
    for _name, _what in _kind.attachments.items():
        setattr(SubmitForm, f"{_name}_file", FileField(_label(_name) + " image",
                                                       description=f"{_what[:1].upper() + _what[1:]} ({_kind.name})."))
        setattr(SubmitForm, f"{_name}_sample", SelectField(f"…or a bundled photo as the {_name}", default="",
                                                           choices=_sample_choices()))


def offer_models(form: FlaskForm, models: Registry) -> None:
    """Fill the form's model drop-downs with the registry's names (and descriptions); a drop-down
    that may be left unset (the batch's own models, no audio scorer) starts with an empty choice."""
    def choices(role: str, unset: str | None = None, modality: str | None = None) -> list[SelectChoice]:
        offered = [SelectChoice(e.name, f"{e.name}: {e.description}" if e.description else e.name)
                   for e in models.of(role) if modality is None or scorer_modality(e.spec) != modality]
        return ([SelectChoice("", unset)] if unset else []) + offered

    batch = isinstance(form, BatchForm)
    unset = "the batch's own, else embedded" if batch else None
    form.llm_name.choices = choices("generator", unset)
    form.scorer_name.choices = choices("scorer", unset)
    if not batch:
        form.audio_scorer_name.choices = choices("scorer", "(none)", modality="image")


BATCH_TASKS = ("image-caption", "video-caption", "audio-caption")


class BatchForm(FlaskForm):
    """A batch from an uploaded archive of media (a manifest inside or not) or a manifest alone.
    Settings left empty are the task's defaults (an existing batch keeps its own)."""

    name = StringField("Batch name", description="Letters, digits, '.', '_', '-'. Submitting to an existing batch "
                                                 "adds only the items it lacks.")
    task = SelectField("Task", choices=[SelectChoice(name) for name in BATCH_TASKS], default="image-caption")
    archive = FileField("Archive of the media", description="A .zip or .tar(.gz) of images (or videos, recordings). "
                                                            "A manifest at its root (manifest.csv, .jsonl, or a COCO "
                                                            "captions .json) names the items and their references; "
                                                            "without one every media file is an item.")
    manifest = FileField("…or a manifest alone",
                         description="A .csv (columns path, id, reference...), .jsonl, or an annotation file (COCO "
                                     "captions, Karpathy's dataset_*.json, MSR-VTT's *_videodatainfo.json, Clotho's "
                                     "captions .csv) naming files in the server's dataset folder (MILS_DATASET_ROOT).")
    media_folder = StringField("Media folder on the server", validators=[Optional()],
                               description="For a manifest alone: the folder under the dataset folder its paths are "
                                           "relative to (e.g. coco for Karpathy's COCO file, msrvtt/TestVideo); "
                                           "default the dataset folder itself.")
    split = StringField("Split", validators=[Optional()],
                        description="Only this split's entries (Karpathy: train, val, test, restval; MSR-VTT: train, "
                                    "validate, test), chosen before any media is read.")
    subset = IntegerField("Subset", validators=[Optional(), NumberRange(1)],
                          description="A seeded random sample of this many of the (split's) entries.")
    subset_seed = IntegerField("Subset seed", validators=[Optional()],
                               description="The subset's own seed (default 0; not the jobs' seed): the same seed "
                                           "gives the same sample.")
    path_column = StringField("Path column", validators=[Optional()],
                              description="A CSV or JSON Lines manifest's column of media paths (default path).")
    key_column = StringField("Id column", validators=[Optional()],
                             description="Its column of item ids (default id, else the path).")
    reference_columns = StringField("Reference columns", validators=[Optional()],
                                    description="Its columns of reference captions, comma-separated, patterns allowed "
                                                "(e.g. caption_*; default reference...). Clotho's captions CSVs are "
                                                "recognised without these.")
    llm_name = SelectField("Generator (LLM)", default="", validate_choice=False,
                           description="A model this server offers; default the batch's own, else 'embedded'.")
    llm = StringField("…or a generator spec", description="Instead of the choice above: e.g. "
                                                         "openai:MODEL@BASE_URL for a vLLM server.")
    scorer_name = SelectField("Scorer", default="", validate_choice=False,
                              description="A model this server offers; default the batch's own, else 'embedded'.")
    scorer = StringField("…or a scorer spec", description="Instead of the choice above: e.g. open_clip:ViT-B-32@openai.")

    def settings_fields(self) -> list:
        return [self[setting.name] for setting in shown_on("form")]

    def option_fields(self) -> list[tuple[object, list[str]]]:
        return [(self[name], [k for k in kinds if k in BATCH_TASKS])
                for name, (_, kinds) in all_options().items() if any(k in BATCH_TASKS for k in kinds)]


user_file_fields(BatchForm)
for _setting in shown_on("form"):
    setattr(BatchForm, _setting.name, setting_field(_setting, batch=True))
for _name, (_option, _kinds) in all_options().items():
    if any(k in BATCH_TASKS for k in _kinds):
        setattr(BatchForm, _name, option_field(_name, _option))


class VariantForm(FlaskForm):
    """"Run a variant" on a batch's page: a new batch over its items (worker.batches.variant_of).
    The page fills the fields with the batch's own values; an emptied field keeps them too."""

    name = StringField("New batch name", description="A batch that does not exist yet.")
    llm = StringField("Generator (LLM)")
    scorer = StringField("Scorer")

    def settings_fields(self) -> list:
        return [self[setting.name] for setting in shown_on("form")]


for _setting in shown_on("form"):
    setattr(VariantForm, _setting.name, setting_field(_setting, batch=True))
