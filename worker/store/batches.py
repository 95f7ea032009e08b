"""Batches in the store: create and find a batch, its items, its progress, its results and
evaluations. Every aggregate is one SQL query over the batch's items, so a batch of 100,000 items
is never loaded into memory; lists are paged by keyset like the jobs' (worker.store.queries).

Functions take a Session and never commit (the caller owns the transaction).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from worker.core import SettingsError
from worker.store.jobs import JobError
from worker.store.queries import COST_COUNTS, Page, QueryError, iso, keyset_page, token_name, user_files_of
from worker.store.schema import Batch, BatchEvaluation, BatchItem, Job, JobStatus, Step, utcnow

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Steps per second are measured over the steps committed in this last span (a rate that follows
# the workers as they are now, not the batch's whole life).
RATE_WINDOW_SECONDS = 300


class UnknownBatch(JobError):
    """No batch has this name."""


RESERVED_NAMES = {"new"}  # /batches/new is the form


def check_name(name: str) -> str:
    if name in RESERVED_NAMES:
        raise SettingsError(f"{name!r} is reserved (the web's /batches/{name}); choose another batch name")
    if not NAME.match(name or ""):
        raise SettingsError(f"a batch name is 1 to 100 letters, digits, '.', '_' or '-', starting with a letter "
                       f"or digit, not {name!r}")
    return name


def get_batch(session: Session, name: str) -> Batch:
    batch = session.scalar(select(Batch).where(Batch.name == name))
    if batch is None:
        raise UnknownBatch(f"no batch {name!r}")
    return batch


def item_states(session: Session, batch_id: int) -> dict[str, tuple[int, int | None, list[str] | None]]:
    """key -> (item id, job id, references) of every item: what a new submission must skip."""
    rows = session.execute(select(BatchItem.item_key, BatchItem.id, BatchItem.job_id, BatchItem.references)
                           .where(BatchItem.batch_id == batch_id))
    return {key: (item_id, job_id, references) for key, item_id, job_id, references in rows}


def next_position(session: Session, batch_id: int) -> int:
    last = session.scalar(select(func.max(BatchItem.position)).where(BatchItem.batch_id == batch_id))
    return 0 if last is None else last + 1


# --------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class BatchProgress:
    name: str
    task: str
    items: int  # every item, the unreadable included
    rejected: int  # items that could not be read (no job)
    by_status: dict[str, int]  # jobs per status
    steps_done: int  # committed steps of its jobs, the bootstraps included
    steps_total: int  # every job's bootstrap and optimization steps (fewer run when patience stops one)
    steps_per_second: float | None  # over the last RATE_WINDOW_SECONDS
    eta_seconds: float | None  # the steps left at that rate; None when nothing ran lately
    created_at: Any
    settings: dict
    generator: str
    scorer: str
    generator_name: str | None = None  # the model registry's names of the specs (None: raw specs)
    scorer_name: str | None = None

    @property
    def jobs(self) -> int:
        return sum(self.by_status.values())

    @property
    def done(self) -> int:
        """Jobs that will run no more: succeeded, failed or cancelled."""
        return sum(n for status, n in self.by_status.items() if JobStatus(status).finished)

    @property
    def finished(self) -> bool:
        return self.done == self.jobs

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items()}
        data.update(created_at=iso(self.created_at), jobs=self.jobs, done=self.done, finished=self.finished)
        return data


def format_duration(seconds: float | None) -> str:
    """An ETA for people: "4m05s", "2h10m"; "?" when unknown."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def progress(session: Session, batch: Batch) -> BatchProgress:
    counts = session.execute(
        select(func.count(BatchItem.id), func.count(BatchItem.error))
        .where(BatchItem.batch_id == batch.id)).one()
    by_status = {status.value: n for status, n in session.execute(
        select(Job.status, func.count()).join(BatchItem, BatchItem.job_id == Job.id)
        .where(BatchItem.batch_id == batch.id).group_by(Job.status))}
    since = utcnow() - timedelta(seconds=RATE_WINDOW_SECONDS)
    unfinished = [s for s in JobStatus if not s.finished]
    steps_done, steps_of_unfinished, recent, first_recent = session.execute(
        select(func.count(Step.id), func.count(case((Job.status.in_(unfinished), 1))),
               func.count(case((Step.finished_at >= since, 1))),
               func.min(case((Step.finished_at >= since, Step.finished_at))))
        .join(BatchItem, BatchItem.job_id == Step.job_id).join(Job, Job.id == Step.job_id)
        .where(BatchItem.batch_id == batch.id)).one()
    jobs = sum(by_status.values())
    per_job = batch.settings["steps"] + 1
    steps_total = jobs * per_job
    rate = eta = None
    if recent >= 2 and first_recent is not None:
        first = first_recent if first_recent.tzinfo else first_recent.replace(tzinfo=utcnow().tzinfo)
        span = max((utcnow() - first).total_seconds(), 1.0)
        rate = (recent - 1) / span  # n steps finished at n moments: n - 1 intervals between them
        # Only unfinished jobs run more steps (cancelled, failed or early-stopped ones do not).
        active = sum(n for status, n in by_status.items() if not JobStatus(status).finished)
        eta = max(active * per_job - steps_of_unfinished, 0) / rate if rate > 0 else None
    return BatchProgress(batch.name, batch.task, counts[0], counts[1], by_status, steps_done, steps_total,
                         rate, eta, batch.created_at, dict(batch.settings), batch.generator, batch.scorer,
                         batch.generator_name, batch.scorer_name)


def list_batches(session: Session, *, cursor: str | None = None, limit: int = 50) -> Page:
    """Batches newest first, each with its progress."""
    rows, next_cursor = keyset_page(session, select(Batch), [(Batch.id, True)], cursor, limit,
                              key=lambda row: [row[0].id])
    return Page([progress(session, batch) for (batch,) in rows], next_cursor)


def mean_best_per_step(session: Session, batch_id: int) -> list[dict]:
    """Per step: the mean of the jobs' best scores after it, over the jobs that ran it."""
    rows = session.execute(
        select(Step.step, func.avg(Step.best_score), func.count())
        .join(BatchItem, BatchItem.job_id == Step.job_id).where(BatchItem.batch_id == batch_id)
        .group_by(Step.step).order_by(Step.step))
    return [{"step": step, "mean_best_score": mean, "jobs": n} for step, mean, n in rows]


# --------------------------------------------------------------------------- items and results

ITEM_STATUSES = [s.value for s in JobStatus] + ["rejected"]


def items_page(session: Session, batch_id: int, *, status: str | None = None, cursor: str | None = None,
               limit: int = 50) -> Page:
    """One page of the batch's items in submission order: key, source, job, status, best."""
    query = (select(BatchItem.id, BatchItem.position, BatchItem.item_key, BatchItem.source,
                    func.coalesce(BatchItem.error, Job.error).label("error"), BatchItem.job_id,
                    Job.status, Job.result_score, Job.result_text)
             .outerjoin(Job, Job.id == BatchItem.job_id).where(BatchItem.batch_id == batch_id))
    if status == "rejected":
        query = query.where(BatchItem.job_id.is_(None))
    elif status:
        try:
            query = query.where(Job.status == JobStatus(status))
        except ValueError:
            raise QueryError(f"unknown status {status!r}; known: {', '.join(ITEM_STATUSES)}") from None
    # The id after the position: two submissions at once may give two items one position.
    rows, next_cursor = keyset_page(session, query, [(BatchItem.position, False), (BatchItem.id, False)], cursor,
                                    limit)
    return Page([{"position": r.position, "key": r.item_key, "source": r.source, "job_id": r.job_id,
                  "status": r.status.value if r.status else "rejected", "error": r.error,
                  "best_score": r.result_score, "best_text": r.result_text} for r in rows], next_cursor)


def results(session: Session, batch_id: int, *, batch: int = 1000) -> Iterator[dict]:
    """Every item in submission order with its job's status and final output, the user's prompt
    and pool its job ran with (their sha256; None: the task's own) and what its steps cost so far
    (RESULT_COSTS; None: not recorded, or tokens the engine did not report); streamed."""
    recorded = Step.llm_requests.is_not(None)
    costs = (select(Step.job_id, func.count(Step.llm_requests).label("recorded"),
                    *[func.sum(getattr(Step, name)).label(name) for name in RESULT_COSTS[:3]],
                    *[func.count(getattr(Step, name)).label(f"{name}_n") for name in RESULT_COSTS[1:3]],
                    func.sum(case((recorded, Step.generation_seconds))).label("llm_seconds"),
                    func.sum(case((recorded, Step.scoring_seconds))).label("scoring_seconds"))
             .group_by(Step.job_id).subquery())
    query = (select(BatchItem.item_key, BatchItem.source, BatchItem.job_id, func.coalesce(BatchItem.error, Job.error),
                    Job.status, Job.result_text, Job.result_score, Job.prompt_sha256, Job.pool_sha256, costs)
             .outerjoin(Job, Job.id == BatchItem.job_id).outerjoin(costs, costs.c.job_id == BatchItem.job_id)
             .where(BatchItem.batch_id == batch_id)
             .order_by(BatchItem.position, BatchItem.id).execution_options(yield_per=batch))
    for row in session.execute(query):
        key, source, job_id, error, status, text, score, prompt, pool = row[:9]
        cost = row._mapping
        known = bool(cost["recorded"])
        spent = {name: (cost[name] if known and cost.get(f"{name}_n", cost["recorded"]) == cost["recorded"] else None)
                 for name in RESULT_COSTS[:3]}
        spent |= {name: round(cost[name], 3) if known else None for name in RESULT_COSTS[3:]}
        yield {"key": key, "source": source, "job_id": job_id, "status": status.value if status else "rejected",
               "output": text, "score": score, "error": error, "prompt_sha256": prompt, "pool_sha256": pool, **spent}


# What an item's job cost in the results exports: sums over its steps that recorded a cost.
RESULT_COSTS = ("llm_requests", "prompt_tokens", "completion_tokens", "llm_seconds", "scoring_seconds")


def references_of(session: Session, batch_id: int) -> dict[str, list[str]]:
    """The items' own reference captions (items without any left out)."""
    rows = session.execute(select(BatchItem.item_key, BatchItem.references)
                           .where(BatchItem.batch_id == batch_id, BatchItem.references.is_not(None)))
    return {key: list(refs) for key, refs in rows if refs}


def best_texts_by_step(session: Session, batch_id: int) -> Iterator[tuple[str, int, str]]:
    """(item key, step, best text after that step) of the batch's succeeded jobs, by item and step."""
    query = (select(BatchItem.item_key, Step.step, Step.best_text)
             .join(Job, Job.id == BatchItem.job_id).join(Step, Step.job_id == Job.id)
             .where(BatchItem.batch_id == batch_id, Job.status == JobStatus.SUCCEEDED)
             .order_by(BatchItem.position, Step.step).execution_options(yield_per=1000))
    for key, step, text in session.execute(query):
        yield key, step, text


def latest_evaluation(session: Session, batch_id: int) -> dict | None:
    found = session.scalar(select(BatchEvaluation).where(BatchEvaluation.batch_id == batch_id)
                           .order_by(BatchEvaluation.id.desc()).limit(1))
    if found is None:
        return None
    return {"at": iso(found.created_at), "references": found.references, "items": found.items, **found.metrics}


def active_job_ids(session: Session, batch_id: int, statuses: tuple[JobStatus, ...]) -> list[int]:
    return list(session.scalars(select(Job.id).join(BatchItem, BatchItem.job_id == Job.id)
                                .where(BatchItem.batch_id == batch_id, Job.status.in_(statuses))
                                .order_by(BatchItem.position)))


def jobs_to_resume(session: Session, batch_id: int, steps: int) -> list[int]:
    """The batch's cancelled, failed or interrupted jobs, and its succeeded jobs whose settings have
    fewer than `steps` steps (the batch's, after a continuation), in submission order."""
    stopped = (JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.INTERRUPTED)
    shorter = (Job.status == JobStatus.SUCCEEDED) & (Job.settings["steps"].as_integer() < steps)
    return list(session.scalars(select(Job.id).join(BatchItem, BatchItem.job_id == Job.id)
                                .where(BatchItem.batch_id == batch_id, Job.status.in_(stopped) | shorter)
                                .order_by(BatchItem.position)))


def held_items(session: Session, batch_id: int, limit: int | None = None) -> list[tuple[BatchItem, Job]]:
    """Items whose queued job is not on the queue yet, in the order they were submitted: held back
    by the batch's limit on jobs in flight, or stored by a submission that was cut short."""
    query = (select(BatchItem, Job).join(Job, Job.id == BatchItem.job_id)
             .where(BatchItem.batch_id == batch_id, BatchItem.queued.is_(False), Job.status == JobStatus.QUEUED)
             .order_by(BatchItem.position).limit(limit))
    return [(item, job) for item, job in session.execute(query)]


def in_flight(session: Session, batch_id: int) -> int:
    """Jobs of the batch on the queue or running (its limit counts these)."""
    return session.scalar(select(func.count()).select_from(BatchItem).join(Job, Job.id == BatchItem.job_id)
                          .where(BatchItem.batch_id == batch_id, BatchItem.queued.is_(True),
                                 Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING))))


def batches_holding(session: Session) -> list[int]:
    """Ids of the batches with held items (see held_items)."""
    return list(session.scalars(select(BatchItem.batch_id).join(Job, Job.id == BatchItem.job_id)
                                .where(BatchItem.queued.is_(False), Job.status == JobStatus.QUEUED).distinct()))


def batch_of(session: Session, job_id: int) -> int | None:
    """The id of the batch the job belongs to, or None."""
    return session.scalar(select(BatchItem.batch_id).where(BatchItem.job_id == job_id))


def batch_cost(session: Session, batch_id: int) -> dict | None:
    """What the batch's steps cost so far, added up (as worker.store.queries.cost_totals adds a
    job's) and per item (`per_item`: the totals over the items whose jobs recorded a cost); None
    when none did. Summed in the database: a batch may have thousands of jobs."""
    recorded = Step.llm_requests.is_not(None)
    seconds = {"llm_seconds": Step.generation_seconds, "scoring_seconds": Step.scoring_seconds}
    counts = {name: getattr(Step, name) for name in COST_COUNTS}
    columns = [func.count(Step.id), func.count(func.distinct(Step.job_id)), func.count(func.distinct(Step.worker))]
    columns += [func.sum(c) for c in counts.values()] + [func.count(c) for c in counts.values()]
    columns += [func.sum(case((recorded, c))) for c in seconds.values()]
    row = session.execute(select(*columns).join(BatchItem, BatchItem.job_id == Step.job_id)
                          .where(BatchItem.batch_id == batch_id, recorded)).one()
    steps, items, workers = row[:3]
    if not steps:
        return None
    sums, present = row[3:3 + len(counts)], row[3 + len(counts):3 + 2 * len(counts)]
    totals: dict[str, Any] = {name: (int(total or 0) if n == steps else None)  # a partial sum is no total
                              for name, total, n in zip(counts, sums, present)}
    totals |= {name: round(float(total or 0), 3) for name, total in zip(seconds, row[3 + 2 * len(counts):])}
    per_item = {name: (None if value is None else round(value / items, 3)) for name, value in totals.items()}
    return {"steps": steps, "items": items, "workers": workers, **totals, "per_item": per_item}


def cost_by_step(session: Session, batch_id: int) -> dict[int, dict] | None:
    """What an item of the batch had cost by the end of each step, the mean over its succeeded
    jobs that recorded costs: {step: {"tokens", "llm_requests", "llm_seconds", "scoring_seconds"}},
    cumulative (a job that stopped early costs nothing more). Tokens None where an engine reported
    none. None when no succeeded job recorded its cost. The x axis of "where more steps stop paying"."""
    recorded = Step.llm_requests.is_not(None)
    query = (select(Step.step, func.count(Step.id), func.sum(Step.llm_requests),
                    func.sum(Step.prompt_tokens + Step.completion_tokens), func.count(Step.prompt_tokens + Step.completion_tokens),
                    func.sum(Step.generation_seconds), func.sum(Step.scoring_seconds))
             .join(BatchItem, BatchItem.job_id == Step.job_id).join(Job, Job.id == Step.job_id)
             .where(BatchItem.batch_id == batch_id, Job.status == JobStatus.SUCCEEDED, recorded)
             .group_by(Step.step).order_by(Step.step))
    rows = session.execute(query).all()
    if not rows:
        return None
    jobs = rows[0][1]  # every recorded job has a step 0
    spent, out = {"llm_requests": 0, "tokens": 0, "llm_seconds": 0.0, "scoring_seconds": 0.0}, {}
    for step, n, requests, tokens, with_tokens, llm, scoring in rows:
        spent["llm_requests"] += int(requests or 0)
        spent["tokens"] = None if spent["tokens"] is None or with_tokens < n else spent["tokens"] + int(tokens or 0)
        spent["llm_seconds"] += float(llm or 0)
        spent["scoring_seconds"] += float(scoring or 0)
        out[step] = {name: (None if value is None else round(value / jobs, 3)) for name, value in spent.items()}
    return out


def batch_detail(session: Session, name: str) -> dict:
    """Everything the batch page and `GET /api/batches/<name>` show, as plain data: the progress,
    the mean best score per step, the latest evaluation and what it was made from (its sources;
    `like`: the batch it is a variant of, or None)."""
    batch = get_batch(session, name)
    return {**progress(session, batch).to_dict(), "options": dict(batch.options or {}),
            **user_files_of(session, batch.prompt_sha256, batch.pool_sha256),
            "sources": list((batch.sources or {}).get("submissions", [])),
            "like": (batch.sources or {}).get("like"),  # the batch this one is a variant of
            "score_per_step": mean_best_per_step(session, batch.id),
            "cost": batch_cost(session, batch.id),
            "evaluation": latest_evaluation(session, batch.id), "owner": token_name(session, batch.token_id)}
