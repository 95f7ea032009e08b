"""A new job from a web request (the form or the API): fields and uploads parsed into
worker.submission, which checks, stores and queues it."""

from __future__ import annotations

from collections.abc import Mapping

from flask import current_app
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.utils import secure_filename

from web import auth
from web.db import session_factory
from web.params import float_arg, int_arg, refuse_nul, refuse_repeated
from worker import config, submission
from worker.batches import SubmitReport, VariantReport, submit_batch, variant_of
from worker.datasets import SUBSET_SEED, Columns, ManifestError, Selection, open_archive, open_manifest
from worker.core.settings import shown_on
from worker.kinds import TASK_KINDS, TaskKind, all_options, get_kind
from worker.kinds.arithmetic import part_from_file, part_from_text
from worker.kinds.user_files import MAX_POOL_BYTES, MAX_PROMPT_BYTES, USER_FILE_TASKS
from worker.media import MAX_FILE_BYTES, Media, MediaError
from worker.models.registry import resolve
from worker.store.queries import QueryError


def settings_from(fields: Mapping[str, str], *, batch: bool = False) -> dict:
    """The settings declared for the API (worker.core.settings), parsed from a submission's fields;
    unset ones are None (the task's default), except that a new job's seed (a setting every task
    defaults alike) is its declared default. Whole numbers are checked against their bounds here
    (QueryError, "steps must be between 1 and 1000, not 0"); every value is checked again, bounds
    and all, when the job's Settings are made (SettingsError)."""
    parsed = {}
    for setting in shown_on("api"):
        unset = setting.default if setting.show_default and not batch else None
        if setting.type is int and setting.inclusive_low is not None:
            value = int_arg(fields, setting.name, low=setting.inclusive_low, high=setting.number_high)
        elif setting.type is int:
            value = int_arg(fields, setting.name)
        else:
            value = float_arg(fields, setting.name)
        parsed[setting.name] = unset if value is None else value
    return parsed


def model_from(fields: Mapping[str, str], field: str, role: str, default: str | None = None
               ) -> tuple[str | None, str | None]:
    """(registry name, spec) of the model a submission names in `field` (a name, or a raw spec
    where this request may send one: web.auth.raw_specs_allowed), or the form's drop-down
    `FIELD_name` when the field is empty, else `default`; (None, None) when none of them is given.
    ModelLoadError (400) for a raw spec this request may not send."""
    given = (fields.get(field) or "").strip() or (fields.get(f"{field}_name") or "").strip() or default
    if not given:
        return None, None
    return resolve(role, given, raw_allowed=auth.raw_specs_allowed(), shared=auth.auth_enabled(),
                   models=current_app.config["MODELS"])


def options_from(kind: TaskKind, fields: Mapping[str, str], *, others: str) -> dict:
    """The task options sent (as text; the kind checks and types them). Another kind's option:
    `others="refuse"` lets the kind refuse it (the API), "ignore" drops it (the form shows every
    kind's fields). An option naming a model (a renderer, an editor) takes a registry name too
    and gives its spec (`model_from`)."""
    sent = {name: fields.get(name, "").strip() or None for name in all_options()}
    sent = {k: v for k, v in sent.items() if others == "refuse" or k in kind.options}
    for name, (option, _) in all_options().items():
        if option.names_model and sent.get(name):
            sent[name] = model_from(sent, name, name)[1]
    return sent


def uploaded_name(upload: FileStorage | None) -> str | None:
    """The name of an upload that was sent (a file input left empty sends one without a name)."""
    return upload.filename if upload is not None and upload.filename else None


def uploaded(upload: FileStorage | None, label: str) -> tuple[bytes, str] | None:
    """An upload's bytes and its name made safe (only a label, never a path); None when none was sent."""
    if upload is None or not upload.filename:
        return None
    data = upload.stream.read(MAX_FILE_BYTES + 1)
    name = secure_filename(upload.filename or "") or label
    if not data:
        raise MediaError(f"{name}: the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise MediaError(f"{name}: over the {MAX_FILE_BYTES}-byte limit")
    return data, name


def _check_fields(fields: MultiDict, others: str, multi: tuple[str, ...] = ()) -> None:
    """A NUL character in any field is a 400; so is, through the API (`others="refuse"`), a field
    sent twice but those in `multi` (the form's fields are the page's own)."""
    refuse_nul(fields.items(multi=True), "form field")
    if others == "refuse":
        refuse_repeated(fields, multi)


def refuse_text_for_uploads(fields: Mapping[str, str], names: list[str]) -> None:
    """A field that takes an upload sent as text instead (`curl -F file=photo.png`, without the @)
    is a QueryError naming it, rather than no upload at all."""
    for name in names:
        if name in fields:
            raise QueryError(f"{name} must be a file upload (curl -F '{name}=@PATH'), not a text field")


def user_files_from(task: str, files: MultiDict, *, others: str = "refuse") -> submission.UserFiles:
    """The `prompt_file` and `pool_file` uploads, read no further than their limits and checked
    for `task` (worker.submission.user_files; SettingsError names what is wrong). For a task that
    takes none, `others="ignore"` drops them (the form keeps a file chosen before the task changed)."""
    if others == "ignore" and task not in USER_FILE_TASKS:
        return submission.UserFiles()
    given = {}
    for name, limit in (("prompt", MAX_PROMPT_BYTES), ("pool", MAX_POOL_BYTES)):
        upload = files.get(f"{name}_file")
        if upload is not None and upload.filename:
            given[name] = (upload.stream.read(limit + 1), secure_filename(upload.filename) or f"{name}.txt")
    return submission.user_files(task, **given)


def _input(kind: TaskKind, fields: Mapping[str, str], files: MultiDict, file_field: str) -> tuple[Media, dict]:
    """The input of a one-input kind: the prompt of a text kind (an upload is ignored), else the
    upload or the bundled sample, exactly one of them."""
    sample = fields.get("sample") or None
    if kind.input_kind == "text":
        if not (fields.get("prompt") or "").strip():
            raise QueryError(f"{kind.name} needs a prompt (the text the picture should match)")
        return submission.task_input(kind, prompt=fields["prompt"])
    upload = uploaded(files.get(file_field), "upload")
    if (upload is not None) == bool(sample):
        raise QueryError(f"send an {kind.input_kind} file or the name of a bundled sample (one of them)")
    if sample:
        return submission.task_input(kind, sample=sample)
    return submission.task_input(kind, data=upload[0], name=upload[1])


def _attachments(kind: TaskKind, fields: Mapping[str, str], files: MultiDict) -> dict[str, Media]:
    """The kind's attachments (e.g. a style image): `NAME_file` uploads or `NAME_sample` samples."""
    found = {}
    for name in kind.attachments:
        upload, sample = uploaded(files.get(f"{name}_file"), name), fields.get(f"{name}_sample") or None
        if upload and sample:
            raise QueryError(f"send a {name} image file or a bundled sample as the {name} (one of them)")
        if upload or sample:
            found[name] = submission.attachment(data=upload[0], name=upload[1]) if upload else \
                submission.attachment(sample=sample)
    return found


def submit_from(fields: MultiDict, files: MultiDict, *, file_field: str, others: str,
                token_id: int | None = None) -> int:
    """Parse a submission and submit it as the API token `token_id` (its owner); returns the job id
    (an arithmetic job's own id; its parents are queued with it). Errors: QueryError, MediaError,
    SettingsError, ModelLoadError (400, nothing stored), QuotaExceeded (429, nothing stored),
    BrokerError (503, stored and not queued)."""
    _check_fields(fields, others, multi=("text",))
    kind = get_kind(fields.get("task") or "image-caption")
    refuse_text_for_uploads(fields, [file_field, "parts", "prompt_file", "pool_file",
                                     *(f"{name}_file" for other in TASK_KINDS.values() for name in other.attachments)])
    if others == "refuse" and kind.input_kind in ("text", "parts") and (uploaded_name(files.get(file_field))
                                                                        or fields.get("sample")):
        takes = "a prompt" if kind.input_kind == "text" else "parts and text lines"
        raise QueryError(f"{kind.name} takes {takes}, not a {file_field} or a sample")
    llm_name, llm = model_from(fields, "llm", "generator", "embedded")
    scorer_name, scorer = model_from(fields, "scorer", "scorer", "embedded")
    user_files = user_files_from(kind.name, files, others=others)
    if kind.name == "arithmetic":
        audio_name, audio_scorer = model_from(fields, "audio_scorer", "scorer")
        parts = [part_from_file(*sent) for upload in files.getlist("parts") if (sent := uploaded(upload, "part"))]
        parts += [part_from_text(line) for text in fields.getlist("text") for line in text.splitlines() if line.strip()]
        request = submission.arithmetic_request(
            parts, generator=llm, scorer=scorer, audio_scorer=audio_scorer,
            overrides=settings_from(fields), options=options_from(kind, fields, others="ignore"),
            names={"generator": llm_name, "scorer": scorer_name, "audio_scorer": audio_name})
        return submission.submit_arithmetic(session_factory(), request, token_id=token_id)[0]
    media, info = _input(kind, fields, files, file_field)
    request = submission.job_request(kind.name, media, info, generator=llm, scorer=scorer,
                                     overrides=settings_from(fields), options=options_from(kind, fields, others=others),
                                     attachments=_attachments(kind, fields, files),
                                     files=user_files, generator_name=llm_name, scorer_name=scorer_name)
    return submission.submit(session_factory(), request, priority=(fields.get("priority") or "").strip() or None,
                             token_id=token_id)


def existing_task(name: str) -> str | None:
    """The task of the batch called `name`, if there is one (adding to it reads its kind of media)."""
    from web.db import get_session
    from worker.store.batches import get_batch
    from worker.store.jobs import JobError

    try:
        return get_batch(get_session(), name).task
    except JobError:
        return None


def submit_batch_from(fields: MultiDict, files: MultiDict, *, others: str, token_id: int | None = None) -> SubmitReport:
    """Parse a batch submission: a `name`, an `archive` (zip, tar: media, a manifest inside or not)
    or a `manifest` alone (naming files under MILS_DATASET_ROOT, relative to its `media_folder`
    there), which items (`split`, `subset`, `subset_seed`), which columns (`path_column`,
    `key_column`, `reference_columns`), and the settings; submit the items the batch lacks. A bad
    item is reported in the result; a malformed manifest or archive, an unknown split, or a media
    folder outside MILS_DATASET_ROOT is a ManifestError (400, nothing stored). `token_id`: the API
    token that submits (see worker.batches.submit_batch)."""
    _check_fields(fields, others)
    name = (fields.get("name") or "").strip()
    if not name:
        raise QueryError("a batch needs a name (letters, digits, '.', '_', '-')")
    task = (fields.get("task") or "").strip() or None
    kind = get_kind(task or existing_task(name) or "image-caption")
    refuse_text_for_uploads(fields, ["archive", "manifest", "prompt_file", "pool_file"])
    llm_name, llm = model_from(fields, "llm", "generator")  # None: the batch's own (a new one: embedded)
    scorer_name, scorer = model_from(fields, "scorer", "scorer")
    archive, manifest = files.get("archive"), files.get("manifest")
    archive = archive if archive is not None and archive.filename else None
    manifest = manifest if manifest is not None and manifest.filename else None
    if (archive is None) == (manifest is None):
        raise QueryError("send an archive of the media (zip or tar, a manifest inside or not) or a manifest "
                         "naming files on the server (one of them)")
    user_files = user_files_from(kind.name, files)  # checked before the dataset is read
    label = secure_filename((archive or manifest).filename or "") or "upload"
    selection, columns = _selection(fields), Columns.parse(fields.get("path_column"), fields.get("key_column"),
                                                           fields.get("reference_columns"))
    media_folder = (fields.get("media_folder") or "").strip() or None
    if archive is not None:
        if media_folder:
            raise QueryError("media_folder names a folder on the server for a manifest sent alone; an archive "
                             "holds its own media")
        dataset = open_archive(archive.stream, label, kind.input_kind, selection=selection, columns=columns)
    else:
        data = manifest.stream.read()
        if not data:
            raise ManifestError(f"{label}: the file is empty")
        dataset = open_manifest(data, label, config.dataset_root(), kind.input_kind, media_folder=media_folder,
                                selection=selection, columns=columns)
    return submit_batch(session_factory(), name, dataset, task=task,
                        generator=llm, scorer=scorer, names={"generator": llm_name, "scorer": scorer_name},
                        overrides=settings_from(fields, batch=True), options=options_from(kind, fields, others=others),
                        priority=(fields.get("priority") or "").strip() or None,
                        max_in_flight=_whole_number(fields.get("max_in_flight"), "max_in_flight"), files=user_files,
                        token_id=token_id)


DATASET_FIELDS = ("media_folder", "split", "subset", "subset_seed", "path_column", "key_column", "reference_columns")


def variant_from(fields: MultiDict, files: MultiDict, *, others: str, token_id: int | None = None) -> VariantReport:
    """Parse a variant of the batch named by `like` (worker.batches.variant_of): a new `name`, and
    the settings, options, models (`llm`, `scorer`), priority, max_in_flight and prompt and pool
    files to change; anything not sent is that batch's. An archive, a manifest or a field choosing
    a dataset's items is refused (QueryError, 400): a variant takes that batch's items. Models are
    registry names, or raw specs where this request may send them (`model_from`); `token_id`: the
    API token that submits (the variant's owner)."""
    _check_fields(fields, others)
    name, like = (fields.get("name") or "").strip(), (fields.get("like") or "").strip()
    if not name:
        raise QueryError("a batch needs a name (letters, digits, '.', '_', '-')")
    sent = [k for k in ("archive", "manifest") if files.get(k) is not None and files[k].filename]
    sent += [k for k in DATASET_FIELDS if (fields.get(k) or "").strip()]
    if sent:
        raise QueryError(f"a variant takes the items of batch {like!r}: send no {', '.join(sent)}")
    refuse_text_for_uploads(fields, ["prompt_file", "pool_file"])
    task = (fields.get("task") or "").strip() or None
    kind = get_kind(task or existing_task(like) or "image-caption")
    llm_name, llm = model_from(fields, "llm", "generator")  # None: the batch's own
    scorer_name, scorer = model_from(fields, "scorer", "scorer")
    return variant_of(session_factory(), like, name, task=task, generator=llm, scorer=scorer,
                      names={"generator": llm_name, "scorer": scorer_name}, token_id=token_id,
                      overrides=settings_from(fields, batch=True), options=options_from(kind, fields, others=others),
                      priority=(fields.get("priority") or "").strip() or None,
                      max_in_flight=_whole_number(fields.get("max_in_flight"), "max_in_flight"),
                      files=user_files_from(kind.name, files, others=others))


def _selection(fields: Mapping[str, str]) -> Selection:
    subset = _whole_number(fields.get("subset"), "subset")
    seed = _whole_number(fields.get("subset_seed"), "subset_seed")
    if subset is not None and subset < 1:
        raise QueryError(f"subset must be at least 1, not {subset}")
    return Selection((fields.get("split") or "").strip() or None, subset, SUBSET_SEED if seed is None else seed)


def _whole_number(value: str | None, name: str) -> int | None:
    if value is None or not str(value).strip():
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise QueryError(f"{name} must be a whole number, not {value!r}") from None
