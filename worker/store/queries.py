"""The read side of the store: summaries, lists, steps, top K and the candidate history.

Shared by the CLI, the web pages and the JSON API. Lists are
paged with opaque keyset cursors (the values of the last row seen), so page 1,000 costs what
page 1 costs and no query ever loads a whole history into memory.
"""

from __future__ import annotations

import base64
import csv
import heapq
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from worker.store.jobs import get_job, next_step_number
from worker.store.pools import PoolRow, pool_of_job, pool_rows
from worker.store.schema import (PRIORITY_NAMES, ApiToken, Artifact, Batch, BatchItem, Candidate, Job, JobEvent,
                                 JobLink, JobStatus, Pool, Step, TopEntry)

MAX_PAGE = 1000


class QueryError(ValueError):
    """A malformed filter, sort or cursor (a client error, not a missing job)."""


@dataclass(frozen=True)
class JobSummary:
    id: int
    task: str
    status: str
    steps_done: int  # committed steps, the bootstrap included
    steps_total: int  # the bootstrap plus the optimization steps
    best_score: float | None
    best_text: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    input_name: str | None
    settings: dict
    model_versions: dict
    generator: str
    scorer: str
    cancel_requested: bool
    priority: str = "normal"  # low, normal, high: its place in the queue
    queued_at: datetime | None = None  # since when its next step waits in the queue (status queued)
    worker: str | None = None  # who runs its step now (status running)
    # The user's prompt template and initial pool (their sha256); None: the task's own.
    prompt_sha256: str | None = None
    pool_sha256: str | None = None
    # The model registry's names the specs were chosen by (worker.models.registry); None: raw specs.
    generator_name: str | None = None
    scorer_name: str | None = None

    @property
    def finished(self) -> bool:
        return JobStatus(self.status).finished

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["created_at"] = iso(self.created_at)
        data["finished_at"] = iso(self.finished_at)
        data["queued_at"] = iso(self.queued_at)
        return data


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC. SQLite hands back naive datetimes; every time we store is UTC."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


def summarize(session: Session, job: Job, steps_done: int | None = None) -> JobSummary:
    if steps_done is None:
        steps_done = next_step_number(session, job.id)
    return JobSummary(
        id=job.id, task=job.task, status=job.status.value,
        steps_done=steps_done, steps_total=job.settings["steps"] + 1,
        best_score=job.result_score, best_text=job.result_text, error=job.error,
        created_at=job.created_at, finished_at=job.finished_at, input_name=job.input_name,
        settings=dict(job.settings), model_versions=dict(job.model_versions or {}),
        generator=job.generator, scorer=job.scorer, cancel_requested=job.cancel_requested,
        priority=PRIORITY_NAMES.get(job.priority, str(job.priority)), worker=job.worker,
        queued_at=job.queued_at if job.status == JobStatus.QUEUED else None,
        prompt_sha256=job.prompt_sha256, pool_sha256=job.pool_sha256,
        generator_name=job.generator_name, scorer_name=job.scorer_name,
    )



# --------------------------------------------------------------------------- cursors


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise QueryError("bad cursor: use the next_cursor of a previous page") from None
    if not isinstance(values, list) or len(values) != arity:
        raise QueryError("bad cursor: it belongs to another sort order or endpoint")
    return values


def _after(order: list[tuple[ColumnElement, bool]], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after `values` in `order` ((column, descending) pairs): the keyset predicate
    (a > x) OR (a = x AND b > y) OR ..., with < for descending columns. The redundant bound
    a >= x (a <= x descending) lets the database start an index scan there instead of
    filtering every earlier row (a deep page would otherwise cost more than the first)."""
    clauses = []
    for i, (column, descending) in enumerate(order):
        equal_before = [col == val for (col, _), val in zip(order[:i], values[:i])]
        beyond = column < values[i] if descending else column > values[i]
        clauses.append(and_(*equal_before, beyond))
    first, descending = order[0]
    bound = first <= values[0] if descending else first >= values[0]
    return and_(bound, or_(*clauses))


def _python_order(order: list[tuple[ColumnElement, bool]]):
    """The sort key of a keyset order in Python, for rows with the columns' names as attributes
    (numeric columns: a descending one is negated)."""
    return lambda row: tuple(-getattr(row, col.key) if desc else getattr(row, col.key) for col, desc in order)


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise QueryError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    return limit


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None  # None on the last page


def keyset_page(session: Session, query: Select, order: list[tuple[ColumnElement, bool]],
          cursor: str | None, limit: int, key=None, extra: list[Any] | None = None) -> tuple[list[Any], str | None]:
    """Up to `limit` rows after `cursor`, and the cursor of the next page. `key(row)` gives a
    row's values of the order's columns (default: the row's attributes of the same names).
    `extra`: rows not in the database (a job's pool entries, worker.store.pools) with the
    same attributes, merged in; the order's columns must then be numbers."""
    limit = _check_limit(limit)
    values = decode_cursor(cursor, len(order)) if cursor else None
    if values:
        query = query.where(_after(order, values))
    query = query.order_by(*(col.desc() if desc else col.asc() for col, desc in order)).limit(limit + 1)
    rows = session.execute(query).all()
    if extra:
        sort_key = _python_order(order)
        if values:
            start = sort_key(SimpleNamespace(**{col.key: value for (col, _), value in zip(order, values)}))
            extra = [row for row in extra if sort_key(row) > start]
        rows = list(heapq.merge(rows, heapq.nsmallest(limit + 1, extra, key=sort_key), key=sort_key))[:limit + 1]
    more = len(rows) > limit
    rows = rows[:limit]
    key = key or (lambda row: [getattr(row, col.key) for col, _ in order])
    next_cursor = encode_cursor(key(rows[-1])) if more else None
    return rows, next_cursor


# --------------------------------------------------------------------------- jobs


def _steps_done_column():
    return (
        select(func.coalesce(func.max(Step.step) + 1, 0)).where(Step.job_id == Job.id).scalar_subquery()
    ).label("steps_done")


def list_jobs(
    session: Session, *, status: str | None = None, task: str | None = None, q: str | None = None,
    cursor: str | None = None, limit: int = 50,
) -> Page:
    """Jobs newest first, filtered by status, task and a text search over their best output."""
    query = select(Job, _steps_done_column())
    if status:
        try:
            query = query.where(Job.status == JobStatus(status))
        except ValueError:
            known = ", ".join(s.value for s in JobStatus)
            raise QueryError(f"unknown status {status!r}; known: {known}") from None
    if task:
        query = query.where(Job.task == task)
    if q:
        query = query.where(Job.result_text.icontains(q, autoescape=True))
    rows, next_cursor = keyset_page(session, query, [(Job.id, True)], cursor, limit, key=lambda row: [row[0].id])
    return Page([summarize(session, job, steps_done) for job, steps_done in rows], next_cursor)


def step_rows(session: Session, job_id: int) -> list[Step]:
    return list(session.scalars(select(Step).where(Step.job_id == job_id).order_by(Step.step)))


def steps_of(session: Session, job_id: int) -> list[dict]:
    """Each committed step: its best, mean top K, candidates, seconds, and what it cost (`cost`:
    None for a step stored before costs were recorded)."""
    return [
        {"step": s.step, "best_score": s.best_score, "best_text": s.best_text, "mean_topk": s.mean_topk,
         "n_candidates": s.n_candidates, "improved": s.improved,
         "seconds": round((s.finished_at - s.started_at).total_seconds(), 3), "cost": step_cost(s)}
        for s in step_rows(session, job_id)
    ]


COST_COUNTS = ("llm_requests", "prompt_tokens", "completion_tokens", "renders", "rejected_lines")


def step_cost(step: Step) -> dict | None:
    """What one step cost: LLM requests, prompt and completion tokens (None: the engine reported
    none), LLM and scoring seconds, renders, rejected lines, and the worker it ran on; None for a
    step stored before costs were recorded."""
    if step.llm_requests is None:
        return None
    return {**{name: getattr(step, name) for name in COST_COUNTS}, "llm_seconds": round(step.generation_seconds, 3),
            "scoring_seconds": round(step.scoring_seconds, 3), "worker": step.worker}


def job_cost(job: Job, steps: list[dict]) -> dict | None:
    """The costs of the job's `steps` (steps_of) added up (`cost_totals`), with the engine that
    answered (the generator's version as the worker loaded it); None when no step recorded its cost."""
    totals = cost_totals([s["cost"] for s in steps])
    if totals is None:
        return None
    generator = (job.model_versions or {}).get("generator") or {}
    return {**totals, "engine": generator.get("version") if isinstance(generator, dict) else None}


def cost_totals(costs: list[dict | None]) -> dict | None:
    """Sums of step costs: counts and seconds added up, a token total None if any step lacked it
    (a partial sum is no total), `steps` and `unrecorded_steps` counted, `workers` the distinct
    workers the seconds were measured on (a job moved between workers says so). None when no
    step recorded its cost."""
    recorded = [c for c in costs if c is not None]
    if not recorded:
        return None
    totals: dict[str, Any] = {"steps": len(recorded), "unrecorded_steps": len(costs) - len(recorded)}
    for name in (*COST_COUNTS, "llm_seconds", "scoring_seconds"):
        values = [c[name] for c in recorded]
        totals[name] = None if any(v is None for v in values) else round(sum(values), 3)
    totals["workers"] = sorted({c["worker"] for c in recorded if c["worker"]})
    return totals


def top_k(session: Session, job_id: int, step: int | None = None) -> list[dict]:
    """The top K after `step` (default: the last committed step), best first."""
    if step is None:
        step = next_step_number(session, job_id) - 1
    rows = session.execute(
        select(TopEntry.rank, Candidate.score, Candidate.text, Candidate.step)
        .join(Candidate, TopEntry.candidate_id == Candidate.id)
        .where(TopEntry.job_id == job_id, TopEntry.step == step)
        .order_by(TopEntry.rank)
    )
    return [{"rank": rank, "score": score, "text": text, "from_step": from_step}
            for rank, score, text, from_step in rows]


# --------------------------------------------------------------------------- candidates

# Sort name -> keyset order; the id last makes every order total (a cursor is unambiguous).
CANDIDATE_SORTS: dict[str, list[tuple[ColumnElement, bool]]] = {
    "step": [(Candidate.step, False), (Candidate.score, True), (Candidate.id, False)],
    "-step": [(Candidate.step, True), (Candidate.score, True), (Candidate.id, False)],
    "-score": [(Candidate.score, True), (Candidate.id, False)],
    "score": [(Candidate.score, False), (Candidate.id, False)],
}
HISTORY_FIELDS = ["job_id", "step", "rank", "in_top_k", "score", "text", "details", "artifact_sha256"]


def _candidate_dict(job_id: int, row) -> dict:
    return {"job_id": job_id, "step": row.step, "rank": row.rank, "in_top_k": row.rank is not None,
            "score": row.score, "text": row.text, "details": row.details, "artifact_sha256": row.artifact_sha256}


def _candidate_query(job_id: int, step: int | None, top_only: bool, q: str | None) -> Select:
    query = (select(Candidate.id, Candidate.step, Candidate.rank, Candidate.score, Candidate.text,
                    Candidate.details, Candidate.artifact_sha256)
             .where(Candidate.job_id == job_id))
    if step is not None:
        query = query.where(Candidate.step == step)
    if top_only:
        query = query.where(Candidate.rank.is_not(None))
    if q:
        query = query.where(Candidate.text.icontains(q, autoescape=True))
    return query


def _lower_like(session: Session):
    """str.lower as the database's lower() does it, for `icontains` on pool texts in Python:
    SQLite's lowers ASCII letters only; PostgreSQL's (a UTF-8 database) every letter."""
    if session.get_bind().dialect.name == "sqlite":
        ascii_lower = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
        return lambda text: text.translate(ascii_lower)
    return str.lower


def _candidates(session: Session, job_id: int, step: int | None, top_only: bool,
                q: str | None) -> tuple[Select, list[PoolRow] | None]:
    """The job's candidates matching the filters: a query of its rows, and its pool entries when
    its step 0 is kept compactly (None when step 0 is rows too; see worker.store.pools)."""
    query = _candidate_query(job_id, step, top_only, q)
    pool = pool_of_job(session, job_id)
    if pool is None:
        return query, None
    query = query.where(Candidate.step > 0)  # step 0's rows are anchors of pool entries
    if step not in (None, 0):
        return query, []
    rows = pool_rows(session, job_id, pool)
    if top_only:
        rows = [row for row in rows if row.rank is not None]
    if q:
        lower = _lower_like(session)
        needle = lower(q)
        rows = [row for row in rows if needle in lower(row.text)]
    return query, rows


def candidates_page(
    session: Session, job_id: int, *, step: int | None = None, top_only: bool = False,
    q: str | None = None, sort: str = "step", cursor: str | None = None, limit: int = 100,
) -> Page:
    """One page of a job's candidates, filtered (step, in the top K, text) and sorted."""
    if sort not in CANDIDATE_SORTS:
        raise QueryError(f"unknown sort {sort!r}; known: {', '.join(CANDIDATE_SORTS)}")
    query, pool = _candidates(session, job_id, step, top_only, q)
    rows, next_cursor = keyset_page(session, query, CANDIDATE_SORTS[sort], cursor, limit, extra=pool)
    return Page([_candidate_dict(job_id, row) for row in rows], next_cursor)


def count_candidates(session: Session, job_id: int, *, step: int | None = None,
                     top_only: bool = False, q: str | None = None) -> int:
    query, pool = _candidates(session, job_id, step, top_only, q)
    return session.scalar(select(func.count()).select_from(query.subquery())) + len(pool or ())


def history(session: Session, job_id: int, *, batch: int = 1000) -> Iterator[dict]:
    """Every candidate of the job in step order, best first within a step; streamed
    (`yield_per`: a server-side cursor), so a job of any size is never in memory at once
    (a compactly kept step 0 is, as one array: see worker.store.pools)."""
    order = CANDIDATE_SORTS["step"]
    query, pool = _candidates(session, job_id, None, False, None)
    for row in sorted(pool or (), key=_python_order(order)):  # step 0, before every stored row
        yield _candidate_dict(job_id, row)
    query = query.order_by(*(col.desc() if desc else col.asc() for col, desc in order))
    for row in session.execute(query.execution_options(yield_per=batch)):
        yield _candidate_dict(job_id, row)


def csv_chunks(rows: Iterator[dict], fieldnames: list[str], flush_every: int = 500) -> Iterator[str]:
    """Rows as CSV text (a header first), in chunks of `flush_every` rows, for streaming."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for i, row in enumerate(rows, 1):
        writer.writerow(row)
        if i % flush_every == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_array(items: Iterator[Any], *, ensure_ascii: bool = True) -> Iterator[str]:
    """Items as one JSON array, written as they come (one per line)."""
    yield "["
    for i, item in enumerate(items):
        yield ("," if i else "") + "\n" + json.dumps(item, ensure_ascii=ensure_ascii)
    yield "\n]\n"


def history_csv(rows: Iterator[dict], flush_every: int = 500) -> Iterator[str]:
    """History rows as CSV text, in chunks of `flush_every` rows (for streaming)."""
    return csv_chunks(({**row, "details": json.dumps(row["details"]) if row["details"] else ""} for row in rows),
                      HISTORY_FIELDS, flush_every)


def history_json(rows: Iterator[dict]) -> Iterator[str]:
    """History rows as one JSON array, written as they come."""
    return json_array(rows)


def events_of(session: Session, job_id: int) -> list[dict]:
    """The job's events, oldest first; `actor` is the name of the API token that acted (None: the
    CLI or the service itself)."""
    rows = session.execute(select(JobEvent, ApiToken.name).outerjoin(ApiToken, ApiToken.id == JobEvent.token_id)
                           .where(JobEvent.job_id == job_id).order_by(JobEvent.id))
    return [{"at": iso(e.at), "kind": e.kind, "detail": e.detail, "actor": actor} for e, actor in rows]


def token_name(session: Session, token_id: int | None) -> str | None:
    """The name of the API token with this id (a job's or batch's owner); None for None."""
    return None if token_id is None else session.scalar(select(ApiToken.name).where(ApiToken.id == token_id))


def parents_of(session: Session, job_id: int) -> list[dict]:
    """The jobs this one is built on (cross-modal arithmetic), in order."""
    rows = session.execute(select(JobLink.position, Job.id, Job.task, Job.status, Job.result_text)
                           .join(Job, Job.id == JobLink.parent_id).where(JobLink.job_id == job_id)
                           .order_by(JobLink.position))
    return [{"position": pos, "id": pid, "task": task, "status": status.value, "best_text": text}
            for pos, pid, task, status, text in rows]


def batch_of_job(session: Session, job_id: int) -> dict | None:
    """{"name", "key"} of the batch item that is this job, if any (the job page links to it)."""
    row = session.execute(select(Batch.name, BatchItem.item_key).join(Batch, Batch.id == BatchItem.batch_id)
                          .where(BatchItem.job_id == job_id)).first()
    return {"name": row[0], "key": row[1]} if row else None


def user_files_of(session: Session, prompt_sha256: str | None, pool_sha256: str | None) -> dict:
    """The user's prompt template and initial pool of a job or batch, as its page and the API show
    them: {"prompt": {"sha256", "bytes", "text"} or None, "pool": {"sha256", "texts"} or None};
    None is the task's own."""
    prompt = pool = None
    if prompt_sha256:
        artifact = session.get(Artifact, prompt_sha256)
        prompt = {"sha256": prompt_sha256, "bytes": artifact.size, "text": artifact.data.decode()}
    if pool_sha256:
        pool = {"sha256": pool_sha256, "texts": session.scalar(select(Pool.size).where(Pool.sha256 == pool_sha256))}
    return {"prompt": prompt, "pool": pool}


def job_detail(session: Session, job_id: int) -> dict:
    """Everything the job page and `GET /api/jobs/<id>` show, as plain data (one source for both):
    the summary, per-step best and mean top-K scores, the current top K and the event log."""
    job = get_job(session, job_id)
    summary = summarize(session, job)
    steps = steps_of(session, job_id)
    return {
        **summary.to_dict(),
        "options": dict(job.options or {}),
        "input_info": dict(job.input_info or {}),
        "scorer_sees": job.scorer_sees,
        "input_media_type": job.input_media_type or session.scalar(
            select(Artifact.media_type).where(Artifact.sha256 == job.input_sha256)),
        "parents": parents_of(session, job_id),
        "batch": batch_of_job(session, job_id),
        **user_files_of(session, job.prompt_sha256, job.pool_sha256),
        "steps": steps,
        "cost": job_cost(job, steps),
        "top_k": top_k(session, job_id, summary.steps_done - 1),
        "events": events_of(session, job_id),
        "owner": token_name(session, job.token_id),
    }
