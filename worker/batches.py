"""Batches: MILS over a dataset. One job per item, all of one task with one set of settings and
models, submitted together, watched, cancelled or resumed together, exported and evaluated.

    submit_batch(sessions, name, dataset, ...)    store (and queue) the items a batch lacks
    variant_of(sessions, like, name, ...)         a new batch over another's items, some settings changed
    cancel_batch, resume_batch                    the lifecycle of every job of a batch (and more steps)
    results_coco / results_csv / results_jsonl    the final captions, streamed
    evaluate_batch(sessions, name, references)    caption metrics, final and per step, stored

Submitting is resumable: each item is stored with its job in chunks, one transaction each, and
marked queued once its first step goes to the broker. A batch has at most `max_in_flight` jobs
(MILS_BATCH_IN_FLIGHT) on the queue or running at once; the others are held, and each job that
finishes lets the next one in (`release`; the workers' reaper pass tops up too), so one big batch
never fills the queue ahead of everyone else. Its jobs run at the batch's priority (low unless
given). Submitting the same dataset to the same batch
again skips the items it has, finishes the queueing of any the last submission stored but did not
queue, and tries again the items that could not be read. A bad item never stops the others.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.core import Settings, SettingsError
from worker.datasets import Dataset, Item
from worker.evaluation import METRICS, caption_metrics, spice_unavailable
from worker.kinds import get_kind
from worker import config, jobs
from worker.media import MediaError
from worker.queue import BrokerError, priority_value
from worker.store.batches import (RESULT_COSTS, active_job_ids, cost_by_step, batch_of, batches_holding, best_texts_by_step, check_name,
                                  get_batch, held_items, in_flight, item_states, jobs_to_resume, next_position, references_of,
                                  results)
from worker.store.jobs import JobError, StoredMedia, create_job, get_job
from worker.store.queries import csv_chunks, json_array
from worker.store.schema import Batch, BatchEvaluation, BatchItem, Job, JobStatus
from worker.store.tokens import check_quota
from worker.kinds.user_files import check_task
from worker.submission import UserFiles, checked_settings, job_request, store_job, task_input

log = logging.getLogger(__name__)

BATCH_TASKS = ("image-caption", "video-caption", "audio-caption")
# Items are read and checked outside any transaction, then stored this many at a time (or fewer,
# when their bytes pass CHUNK_BYTES): a crash loses at most one chunk's work, and the database is
# never held while files are decoded.
CHUNK_ITEMS = 50
CHUNK_BYTES = 64 * 1024 * 1024


@dataclass
class SubmitReport:
    name: str
    created: bool  # the batch is new
    added: int = 0  # items stored now (queued, or held until the batch has room)
    already: int = 0  # items of the dataset the batch already had as jobs
    requeued: int = 0  # items stored by an earlier submission that never reached the broker
    rejected: list[dict] = field(default_factory=list)  # {"key", "source", "line", "error"} per bad item
    dataset: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _given_differs(batch: Batch, task, generator, scorer, settings, options, files: UserFiles) -> list[str]:
    differs = []
    for what, given, stored in (("prompt", files.prompt_sha256, batch.prompt_sha256),
                                ("pool", files.pool_sha256, batch.pool_sha256)):
        if given is not None and given != stored:
            has = f"the {what} file sha256 {stored[:12]}" if stored else f"the task's own {what}"
            differs.append(f"{has}, not the {what} file given (sha256 {given[:12]})")
    for what, given, stored in (("task", task, batch.task), ("generator", generator, batch.generator),
                                ("scorer", scorer, batch.scorer)):
        if given is not None and given != stored:
            differs.append(f"{what} {stored!r}, not {given!r}")
    differs += [f"{name}={batch.settings.get(name)!r}, not {value!r}" for name, value in settings.items()
                if batch.settings.get(name) != value]
    differs += [f"{name}={batch.options.get(name)!r}, not {value!r}" for name, value in options.items()
                if batch.options.get(name) != value]
    return differs


def _batch_for(session: Session, name: str, task, generator, scorer, overrides, options,
               priority=None, max_in_flight=None, files: UserFiles = UserFiles(),
               names: Mapping[str, str | None] | None = None, token_id: int | None = None) -> tuple[Batch, bool]:
    """The batch called `name`, made now if new (the settings checked as for one job). An existing
    batch keeps its settings: anything given must agree with them; its priority and limit on jobs
    in flight (which change no result) take the values given."""
    if max_in_flight is not None and max_in_flight < 1:
        raise SettingsError(f"max_in_flight must be at least 1, not {max_in_flight}")
    try:
        priority = None if priority is None else priority_value(priority)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    given_settings = {k: v for k, v in (overrides or {}).items() if v is not None}
    given_options = {k: v for k, v in (options or {}).items() if v is not None}
    try:
        batch = get_batch(session, name)
    except JobError:
        batch = None
    if batch is not None:
        if given_options:
            given_options = {k: v for k, v in get_kind(batch.task).job_options(given_options).items()
                             if k in given_options}
        differs = _given_differs(batch, task, generator, scorer, given_settings, given_options, files)
        if differs:
            raise SettingsError(f"batch {name!r} runs with {'; '.join(differs)}: submit to it without those "
                                "options, or give the batch a new name")
        batch.priority = batch.priority if priority is None else priority
        batch.max_in_flight = max_in_flight or batch.max_in_flight
        return batch, False
    task = task or "image-caption"
    if task not in BATCH_TASKS:
        raise SettingsError(f"a batch runs one of {', '.join(BATCH_TASKS)} (one input file per item), not {task!r}")
    generator, scorer = generator or "embedded", scorer or "embedded"
    settings, checked = checked_settings(task, generator, scorer, given_settings, given_options)
    check_task(task, prompt=files.prompt_sha256 is not None, pool=files.pool_sha256 is not None)
    files.store(session)
    batch = Batch(name=check_name(name), task=task, settings=settings.to_dict(), generator=generator, scorer=scorer,
                  generator_name=(names or {}).get("generator"), scorer_name=(names or {}).get("scorer"),
                  options=checked, sources={"submissions": []}, max_in_flight=max_in_flight,
                  priority=PRIORITY_DEFAULT if priority is None else priority,
                  prompt_sha256=files.prompt_sha256, pool_sha256=files.pool_sha256, token_id=token_id)
    try:
        with session.begin_nested():
            session.add(batch)
    except IntegrityError:  # another submission made a batch of this name meanwhile
        raise JobError(f"batch {name!r} was just made by another submission: submit again to add to it") from None
    return batch, True


def submit_batch(sessions: sessionmaker[Session], name: str, dataset: Dataset, *, task: str | None = None,
                 generator: str | None = None, scorer: str | None = None,
                 overrides: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
                 priority: str | int | None = None, max_in_flight: int | None = None,
                 files: UserFiles = UserFiles(), on_item: Callable[[], None] | None = None,
                 names: Mapping[str, str | None] | None = None, token_id: int | None = None) -> SubmitReport:
    """Add the dataset's items the batch `name` lacks (making the batch if new) and queue them, as
    many as its limit on jobs in flight allows (the rest follow as jobs finish). Settings, models,
    options and the prompt and pool files (`files`, worker.submission.user_files) not given are the
    batch's (a new one: the task's defaults; priority low). `names`: the registry's names of the
    generator and scorer specs (worker.models.registry.resolve), kept by a new batch and its jobs.
    `token_id`: the API token that submits (the owner of a new batch and of the jobs added; None:
    the CLI).
    Raises SettingsError / ModelLoadError / JobError before anything is stored, and QuotaExceeded
    when the items to add would take the token over MILS_TOKEN_MAX_ACTIVE (the whole submission is
    refused); BrokerError when the broker refused steps (the items stay stored; `mils batch
    resume` queues them)."""
    with sessions.begin() as session:
        batch, created = _batch_for(session, name, task, generator, scorer, overrides, options, priority,
                                    max_in_flight, files, names, token_id)
        batch.sources = {"submissions": [*batch.sources.get("submissions", []), dataset.describe()]}
        batch_id, kind = batch.id, get_kind(batch.task)
        template = dict(task=batch.task, generator=batch.generator, scorer=batch.scorer,
                        generator_name=batch.generator_name, scorer_name=batch.scorer_name,
                        overrides=dict(batch.settings), options=dict(batch.options), priority=batch.priority,
                        files=UserFiles(batch.prompt_sha256, batch.pool_sha256))  # stored with the batch
        known = item_states(session, batch_id)
        position = next_position(session, batch_id)
        adding = sum(1 for item in dataset.items if known.get(item.key, (None, None))[1] is None)
        check_quota(session, token_id, adding, config.token_max_active())
    report = SubmitReport(name, created, dataset=dataset.describe())
    broker = _Broker(sessions, batch_id)
    report.requeued = len(broker.release())

    pending: list[tuple[Item, Any]] = []  # (item, checked media and info, or the MediaError)
    pending_bytes = 0
    new_references: list[tuple[int, list[str]]] = []  # (item id, references) of items already in it

    def store_chunk(session: Session) -> list[tuple[int, int, str]]:
        nonlocal position
        stored = []
        for item, checked in pending:
            state = known.get(item.key)
            if state is None:
                row = BatchItem(batch_id=batch_id, item_key=item.key, position=position, source=item.source)
                position += 1
                session.add(row)
            else:  # an item that could not be read before: locked, so two submissions never both make its job
                row = session.get(BatchItem, state[0], with_for_update=True, populate_existing=True)
                if row.job_id is not None:
                    report.already += 1
                    continue
            row.source = item.source
            row.references = list(item.references) or row.references
            if isinstance(checked, MediaError):
                row.error = str(checked)
                report.rejected.append({"key": item.key, "source": item.source, "line": item.line,
                                        "error": str(checked)})
                continue
            media, info = checked
            request = job_request(template["task"], media, info, generator=template["generator"],
                                  scorer=template["scorer"], overrides=template["overrides"],
                                  options=template["options"], files=template["files"],
                                  generator_name=template["generator_name"], scorer_name=template["scorer_name"])
            job, _ = store_job(session, request, priority=template["priority"], held=True,  # let in by `release`
                               token_id=token_id)
            row.job_id, row.error = job.id, None
            session.flush()
            stored.append(job.id)
        return stored

    def flush() -> None:
        nonlocal pending_bytes
        try:
            with sessions.begin() as session:
                stored = store_chunk(session)
                if new_references:
                    session.execute(update(BatchItem), [{"id": i, "references": r} for i, r in new_references])
        except IntegrityError:
            raise JobError(f"another submission is adding the same items to batch {name!r} right now; "
                           "submit again when it is done (the items stored so far are kept)") from None
        report.added += len(stored)
        broker.release()
        pending.clear()
        new_references.clear()
        pending_bytes = 0

    for item in dataset.items:
        state = known.get(item.key)
        if state is not None and state[1] is not None:  # already a job of this batch
            report.already += 1
            if item.references and list(item.references) != state[2]:
                new_references.append((state[0], list(item.references)))
                if len(new_references) >= 1000:
                    flush()
        else:
            try:
                data = item.read()
                checked: Any = task_input(kind, data=data, name=posixpath.basename(item.source))
                pending_bytes += len(data)
            except MediaError as exc:
                checked = exc
            pending.append((item, checked))
            if len(pending) >= CHUNK_ITEMS or pending_bytes >= CHUNK_BYTES:
                flush()
        if on_item:
            on_item()
    if pending or new_references:
        flush()
    broker.raise_refused(name)
    return report


# --------------------------------------------------------------------------- variants


def described_settings(batch: Batch) -> dict:
    """What makes a batch's results what they are: task, models, settings, options, prompt and pool."""
    return {"task": batch.task, "generator": batch.generator, "scorer": batch.scorer,
            "settings": dict(batch.settings), "options": dict(batch.options or {}),
            "prompt_sha256": batch.prompt_sha256, "pool_sha256": batch.pool_sha256}


def field_value(batch: dict, path: str) -> Any:
    """A described batch's value of the field `path`: "scorer", or "settings.temperature" (None when unset)."""
    group, _, key = path.partition(".")
    return batch[group].get(key) if key else batch[group]


def setting_differences(batches: list[dict]) -> list[str]:
    """The fields (`described_settings`) whose values are not the same in every batch
    ("settings.temperature", "scorer", ...)."""
    fields = ["task", "generator", "scorer", "prompt_sha256", "pool_sha256"]
    for group in ("settings", "options"):
        fields += sorted({f"{group}.{key}" for b in batches for key in b[group]})
    return [f for f in fields if len({repr(field_value(b, f)) for b in batches}) > 1]


@dataclass
class VariantReport:
    name: str
    like: str
    items: int  # items with a job, queued or held for room
    rejected: int  # the old batch's unreadable items, kept as such (no job)
    queued: int  # jobs on the queue now (the rest follow as jobs finish)
    changes: dict[str, list] = field(default_factory=dict)  # field -> [the old batch's value, this one's]
    note: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def variant_of(sessions: sessionmaker[Session], like: str, name: str, *, task: str | None = None,
               generator: str | None = None, scorer: str | None = None,
               overrides: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
               priority: str | int | None = None, max_in_flight: int | None = None,
               files: UserFiles = UserFiles(), names: Mapping[str, str | None] | None = None,
               token_id: int | None = None) -> VariantReport:
    """A new batch `name` over the items of batch `like` (the same keys, references and stored
    inputs, by content hash: nothing is read or uploaded again) with `like`'s task, models,
    settings, options, prompt and pool files, priority and limit on jobs in flight, but for those
    given. Stored in one transaction (all or nothing), then queued as its limit allows. A variant
    that changes nothing is made too, with a note: a replicate (another --seed draws again).
    `names`, `token_id` as for `submit_batch` (the registry's names of the models given; the
    token that submits, owner of the variant, its quota counting the items).
    UnknownBatch for `like`; JobError when `name` exists (a variant is always a new batch);
    SettingsError / ModelLoadError for what is given; QuotaExceeded as for `submit_batch`;
    BrokerError when the broker refused steps (stored; `mils batch resume` queues them)."""
    given_settings = {k: v for k, v in (overrides or {}).items() if v is not None}
    given_options = {k: v for k, v in (options or {}).items() if v is not None}
    with sessions.begin() as session:
        old = get_batch(session, like)
        if session.scalar(select(Batch.id).where(Batch.name == name)) is not None:
            raise JobError(f"batch {name!r} already exists; a variant is a new batch: give it a new name")
        if task is not None and task != old.task:
            raise SettingsError(f"batch {like!r} runs {old.task}; a variant of it runs the same task, not {task!r}")
        files = UserFiles(files.prompt_sha256 or old.prompt_sha256, files.pool_sha256 or old.pool_sha256,
                          files.prompt, files.pool)
        names = dict(names or {})
        kept = {"generator": old.generator_name if generator is None else names.get("generator"),
                "scorer": old.scorer_name if scorer is None else names.get("scorer")}
        batch, _ = _batch_for(session, name, old.task, generator or old.generator, scorer or old.scorer,
                              {**old.settings, **given_settings}, {**(old.options or {}), **given_options},
                              old.priority if priority is None else priority, max_in_flight or old.max_in_flight,
                              files, kept, token_id)
        batch.sources = {"submissions": list(old.sources.get("submissions", [])), "like": old.name}
        settings = Settings.from_dict(batch.settings)
        items = rejected = 0
        rows = session.execute(select(BatchItem, Job).outerjoin(Job, Job.id == BatchItem.job_id)
                               .where(BatchItem.batch_id == old.id).order_by(BatchItem.position)).all()
        check_quota(session, token_id, sum(job is not None for _, job in rows), config.token_max_active())
        for item, job in rows:
            copy = BatchItem(batch_id=batch.id, item_key=item.item_key, position=item.position, source=item.source,
                             references=item.references, error=item.error)
            if job is None:
                copy.error = item.error or f"its job in batch {like!r} was deleted"
                rejected += 1
            else:
                media_type = job.input_media_type or job.input.media_type
                new_job = create_job(session, task=batch.task, settings=settings, generator=batch.generator,
                                     scorer=batch.scorer, media=StoredMedia(job.input_sha256, media_type, job.input_name),
                                     options=dict(batch.options), input_info=dict(job.input_info or {}),
                                     priority=batch.priority, prompt_sha256=batch.prompt_sha256,
                                     pool_sha256=batch.pool_sha256, generator_name=batch.generator_name,
                                     scorer_name=batch.scorer_name, token_id=token_id)
                jobs.submitted(session, new_job, held=True)  # let in by `release`
                copy.job_id = new_job.id
                items += 1
            session.add(copy)
        before, after = described_settings(old), described_settings(batch)
        changes = {f: [field_value(before, f), field_value(after, f)] for f in setting_differences([before, after])}
        batch_id = batch.id
    note = None
    if not changes:
        note = (f"nothing differs from batch {like!r}: a replicate (the same seed and deterministic models give "
                "the same captions; give another --seed to draw again)")
    broker = _Broker(sessions, batch_id)
    queued = len(broker.release())
    broker.raise_refused(name)
    return VariantReport(name, like, items, rejected, queued, changes, note)


PRIORITY_DEFAULT = -1  # a batch's jobs run at low priority unless it is given: single jobs go first


class _Broker:
    """Lets a batch's held jobs onto the broker (`release`). After its first refusal it stops
    trying (each try waits out the client's retries): a submission goes on storing the rest, and
    `raise_refused` says how many wait for `mils batch resume`."""

    def __init__(self, sessions: sessionmaker[Session], batch_id: int) -> None:
        self.sessions, self.batch_id = sessions, batch_id
        self.refused = False

    def release(self) -> list[int]:
        if self.refused:
            return []
        try:
            return release(self.sessions, self.batch_id)
        except BrokerError:
            self.refused = True
            return []

    def raise_refused(self, name: str) -> None:
        if not self.refused:
            return
        with self.sessions() as session:
            held = held_items(session, self.batch_id)
        if held:
            raise BrokerError(f"batch {name!r}: {len(held)} job(s) are stored but the broker did not take "
                              f"them; run `mils batch resume {name}` when it is back", held[-1][1].id)


def release(sessions: sessionmaker[Session], batch_id: int) -> list[int]:
    """Put the batch's held jobs on the queue, in the order they were submitted, while fewer than
    its limit (Batch.max_in_flight, else MILS_BATCH_IN_FLIGHT) are queued or running; returns their
    ids. The batch's row is locked meanwhile, so two workers finishing jobs at once never let in
    more than the limit. Marked queued first and sent after the commit; a crash in between leaves
    a queued job without a message, which the reaper finds (worker.lifecycle.find_lost).
    BrokerError when the broker refused (those not sent are held again)."""
    with sessions.begin() as session:
        batch = session.get(Batch, batch_id, with_for_update=True)
        if batch is None:
            return []
        room = (batch.max_in_flight or config.batch_in_flight()) - in_flight(session, batch_id)
        if room <= 0:
            return []
        messages = []
        for item, job in held_items(session, batch_id, room):
            item.queued = True
            messages += jobs.let_in(session, job)
    try:
        jobs.send(messages, stop_at_first_refusal=True)
    except BrokerError as exc:
        _hold_again(sessions, [item.job_id for item in exc.refused])
        raise
    return [item.job_id for item in messages]


def _hold_again(sessions: sessionmaker[Session], job_ids: list[int]) -> None:
    with sessions.begin() as session:
        for item in session.scalars(select(BatchItem).where(BatchItem.job_id.in_(job_ids))):
            item.queued = False
            jobs.hold_again(session, session.get(Job, item.job_id))


def release_after(sessions: sessionmaker[Session], job_id: int) -> None:
    """The job finished (or failed): if it is a batch's, let the batch's next held jobs in. Never
    raises: the workers' reaper pass (`release_all`) tops batches up if this did not."""
    try:
        with sessions() as session:
            batch_id = batch_of(session, job_id)
        if batch_id is not None:
            release(sessions, batch_id)
    except Exception as exc:  # the broker or database is down: the reaper pass tries again
        log.warning("job %s finished; its batch's next jobs wait for the reaper pass: %s", job_id, exc)


def release_all(sessions: sessionmaker[Session]) -> int:
    """`release` every batch with held jobs; returns how many jobs went on the queue."""
    with sessions() as session:
        holding = batches_holding(session)
    released = 0
    for batch_id in holding:
        try:
            released += len(release(sessions, batch_id))
        except BrokerError as exc:
            log.warning("%s", exc)
            break
    return released


# --------------------------------------------------------------------------- lifecycle


def cancel_batch(sessions: sessionmaker[Session], name: str, *, chunk: int = 500, token_id: int | None = None) -> int:
    """Ask every unfinished job of the batch to stop after its step in flight; returns how many.
    `chunk` jobs per transaction: a big batch's rows are never all locked at once, away from the
    workers that commit steps. A job that finishes meanwhile is left as it is. `token_id`: the
    API token that asks (None: the CLI), named in each job's events."""
    with sessions() as session:
        batch_id = get_batch(session, name).id
        ids = active_job_ids(session, batch_id, (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.INTERRUPTED))
    cancelled = 0
    for start in range(0, len(ids), chunk):
        with sessions.begin() as session:
            for job_id in ids[start:start + chunk]:
                try:
                    jobs.cancel(session, get_job(session, job_id, for_update=True), token_id=token_id)
                    cancelled += 1
                except JobError:  # it finished since the list was read: nothing to stop
                    pass
    return cancelled


def resume_batch(sessions: sessionmaker[Session], name: str, *, steps: int | None = None, chunk: int = 500,
                 token_id: int | None = None) -> int:
    """Resume every cancelled, failed or interrupted job of the batch (held, then let in under
    the batch's limit like new ones), and queue what its limit allows of the jobs held (e.g. by a
    submission cut short); returns how many jobs it resumed or queued. `steps`: the batch runs
    that many steps from now on (more than it has, and none of its jobs queued or running:
    JobError otherwise), and its succeeded jobs go on too, each from its last committed step
    (worker.jobs.continue_to). Any job with fewer steps than its batch is continued, so a
    continuation cut short is finished by resuming again. `token_id` as for `cancel_batch`.
    BrokerError when the broker is down."""
    with sessions.begin() as session:
        batch = session.get(Batch, get_batch(session, name).id, with_for_update=True)
        if steps is not None:
            longer = jobs.more_steps(batch.settings, steps, f"batch {name!r}")
            busy = active_job_ids(session, batch.id, (JobStatus.QUEUED, JobStatus.RUNNING))
            if busy:
                raise JobError(f"batch {name!r} has {len(busy)} job(s) queued or running; continue it to more "
                               "steps once they are done (or cancel it first)")
            batch.settings = {**batch.settings, "steps": longer.steps}  # a new dict: JSON columns track assignment
        batch_id, target = batch.id, batch.settings["steps"]
        ids = jobs_to_resume(session, batch_id, target)
    resumed: set[int] = set()
    for start in range(0, len(ids), chunk):
        with sessions.begin() as session:
            for job_id in ids[start:start + chunk]:
                job = get_job(session, job_id, for_update=True)
                try:
                    jobs.resume(session, job, held=True, steps=target if job.settings["steps"] < target else None,
                                token_id=token_id)
                except JobError:  # resumed, running or finished meanwhile
                    continue
                resumed.add(job_id)
                session.execute(update(BatchItem).where(BatchItem.job_id == job_id).values(queued=False))
    broker = _Broker(sessions, batch_id)
    resumed.update(broker.release())
    broker.raise_refused(name)
    return len(resumed)


# --------------------------------------------------------------------------- results

RESULT_FORMATS = ("coco", "csv", "jsonl")
RESULT_FIELDS = ["key", "source", "job_id", "status", "output", "score", "error", "prompt_sha256", "pool_sha256",
                 *RESULT_COSTS]
_COCO_ID = re.compile(r"^(0|[1-9][0-9]{0,17})$")


def coco_image_id(key: str) -> int | str:
    """A key that is a plain whole number is an int in the COCO results (COCO's image ids are);
    any other key (a path) stays a string."""
    return int(key) if _COCO_ID.match(key) else key


def results_coco(rows: Iterator[dict]) -> Iterator[str]:
    """The COCO results format, `[{"image_id": ..., "caption": ...}]`, of the succeeded items."""
    return json_array(({"image_id": coco_image_id(row["key"]), "caption": row["output"]} for row in rows
                       if row["status"] == JobStatus.SUCCEEDED.value), ensure_ascii=False)


def results_csv(rows: Iterator[dict], flush_every: int = 500) -> Iterator[str]:
    """Every item (the unfinished and the rejected too) with its status and output, as CSV."""
    return csv_chunks(rows, RESULT_FIELDS, flush_every)


def results_jsonl(rows: Iterator[dict]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def export_results(session: Session, name: str, fmt: str) -> Iterator[str]:
    """The batch's results in `fmt` (coco, csv, jsonl), streamed. Unknown batch: UnknownBatch."""
    if fmt not in RESULT_FORMATS:
        raise SettingsError(f"format must be one of {', '.join(RESULT_FORMATS)}, not {fmt!r}")
    batch = get_batch(session, name)
    write = {"coco": results_coco, "csv": results_csv, "jsonl": results_jsonl}[fmt]
    return write(results(session, batch.id))


# --------------------------------------------------------------------------- evaluation


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]


def match_references(references: Dataset, keys: Iterable[str]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """The reference captions of each of a batch's item keys, and how many keys matched each way.
    A key takes the reference entry of the same key; failing that (a batch of a folder, whose keys
    are paths, against an annotation file keyed by image id), the one whose path is the key, else
    whose file name is the key's file name, else whose file name without its suffix (or key) is
    the key's file name without its suffix; each only where one entry, and one of the keys, has it."""
    entries = [item for item in references.items if item.references]
    by_key = {item.key: list(item.references) for item in entries}
    ways: list[tuple[str, Callable[[str], str], dict[str, list]]] = [
        ("path", posixpath.normpath, {}),
        ("file name", posixpath.basename, {}),
        ("file name without suffix", _stem, {}),
    ]
    for _, name_of, index in ways:
        for item in entries:
            names = {name_of(item.source)} | ({item.key} if name_of is _stem else set())
            for name in names:
                index.setdefault(name, []).append(item)
    keys = list(keys)
    matched: dict[str, list[str]] = {}
    counts = {"key": 0, **{way: 0 for way, _, _ in ways}}
    left = []
    for key in keys:
        if key in by_key:
            matched[key] = by_key[key]
            counts["key"] += 1
        else:
            left.append(key)
    for way, name_of, index in ways:
        names = [name_of(key) for key in left]
        shared = {name for name, n in Counter(names).items() if n > 1}
        still = []
        for key, name in zip(left, names):
            found = index.get(name, [])
            if len(found) == 1 and name not in shared:
                matched[key] = list(found[0].references)
                counts[way] += 1
            else:
                still.append(key)
        left = still
    return matched, {way: n for way, n in counts.items() if n}


def captions_by_step(session: Session, batch_id: int, steps: int) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """The batch's succeeded jobs' captions: (final {key: text}, {step: {key: best text after
    that step}}); a job that stopped early keeps its last best in the later steps."""
    by_step: dict[int, dict[str, str]] = {step: {} for step in range(steps + 1)}
    final: dict[str, str] = {}
    last_key, last_text, last_step = None, None, -1

    def close_item() -> None:
        for later in range(last_step + 1, steps + 1):  # stopped early: its best stays
            by_step[later][last_key] = last_text
        final[last_key] = last_text

    for key, step, text in best_texts_by_step(session, batch_id):
        if key != last_key and last_key is not None:
            close_item()
            last_step = -1
        last_key, last_text, last_step = key, text, step
        by_step[step][key] = text
    if last_key is not None:
        close_item()
    return final, by_step


def batch_references(session: Session, batch: Batch, references: Dataset | None) -> tuple[dict, dict | None]:
    """The reference captions of the batch's items: its own (references None), or those of the
    dataset `references` matched to its items (match_references). Returns (key -> references,
    how many matched each way, or None); JobError when there are none."""
    matched_by = None
    if references is None:
        refs = references_of(session, batch.id)
    else:
        all_keys = session.scalars(select(BatchItem.item_key).where(BatchItem.batch_id == batch.id)).all()
        refs, matched_by = match_references(references, all_keys)
        if not refs:
            with_refs = [item.key for item in references.items if item.references][:3]
            raise JobError(f"{references.name}: none of its entries with reference captions matches an item of "
                           f"batch {batch.name!r} by key, path or file name (its keys are like "
                           f"{', '.join(repr(k) for k in with_refs) or 'nothing'}; the batch's like "
                           f"{', '.join(repr(k) for k in all_keys[:3])})")
    if not refs:
        raise JobError(f"batch {batch.name!r} has no reference captions: give --references FILE (a COCO captions, "
                       "Karpathy split, MSR-VTT or Clotho file, or a CSV/JSONL manifest with reference columns)")
    return refs, matched_by


def evaluate_batch(sessions: sessionmaker[Session], name: str, references: Dataset | None = None) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (SPICE when it can run) of the batch's succeeded jobs
    against `references` (a dataset with references, e.g. a COCO captions file; default: the
    references submitted with the items): of the final captions, and of the best caption after
    each step (a job that stopped early keeps its last best). Stored with the batch; returns
    {"final": {...}, "per_step": [{"step", ...}], "spice": None or why it was skipped, ...}."""
    with sessions() as session:
        batch = get_batch(session, name)
        batch_id, steps = batch.id, batch.settings["steps"]
        final, by_step = captions_by_step(session, batch_id, steps)
        refs, matched_by = batch_references(session, batch, references)
    computed = caption_metrics(refs, {"final": final, **by_step})
    with sessions() as session:
        spent = cost_by_step(session, batch_id) or {}
    last: dict | None = None
    per_step = []
    for step in range(steps + 1):  # each step's metrics beside what an item had cost by then
        last = spent.get(step, last)
        per_step.append({"step": step, **computed[step], "cost_per_item": last})
    metrics = {
        "final": computed["final"],
        "per_step": per_step,
        "metrics": list(METRICS) + (["SPICE"] if "SPICE" in computed["final"] else []),
        "spice": spice_unavailable(),
        "references": "the batch's own" if references is None else references.name,
    }
    if matched_by is not None:
        metrics["matched_by"] = matched_by  # how the batch's items found their references
    with sessions.begin() as session:
        session.add(BatchEvaluation(batch_id=batch_id, references=metrics["references"][:500],
                                    items=computed["final"]["items"], metrics=metrics))
    return metrics
