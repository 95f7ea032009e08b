"""The schema of a job's auditable history: jobs, steps, candidates, top-K entries, bootstrap
pools with each job's pool scores, artifacts, events, links between jobs, batches of jobs over a dataset with their evaluations, and API tokens (the ORM classes; "models" elsewhere means ML models).

Created and changed only by Alembic migrations (migrations/versions).
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Index,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


# A job's priority (Job.priority) by name, and back: its place in the queue (worker.queue).
PRIORITIES = {"low": -1, "normal": 0, "high": 1}
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Artifact(Base):
    """Media stored once by content hash: job inputs, and later rendered outputs."""

    __tablename__ = "artifacts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # loaded only when read
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(40))
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]),
        default=JobStatus.QUEUED,
        index=True,
    )
    settings: Mapped[dict[str, Any]]
    generator: Mapped[str] = mapped_column(String(500))
    scorer: Mapped[str] = mapped_column(String(500))
    # The model registry's names (worker.models.registry) the specs were chosen by; None: raw specs.
    generator_name: Mapped[str | None] = mapped_column(String(64))
    scorer_name: Mapped[str | None] = mapped_column(String(64))
    # Names and versions (checksums, commit hashes) of the models that actually ran.
    model_versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    input_sha256: Mapped[str | None] = mapped_column(ForeignKey("artifacts.sha256"))
    input_name: Mapped[str | None] = mapped_column(String(255))
    # The input's media type as this job uses it (the artifact's is its first use's); None for
    # jobs stored before migration 0007, which use the artifact's.
    input_media_type: Mapped[str | None] = mapped_column(String(100))
    # What the input is, measured at submission (e.g. a video's duration, frames, size).
    input_info: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    # The task kind's own options (e.g. frames sampled from a video and how their scores pool).
    options: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    # What the scorer saw in the input, stored with step 0 when the scorer tells (the embedded
    # one: ImageNet labels with probabilities, faces, text read, colours; worker.models.sight).
    scorer_sees: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Automatic resumes after an interruption so far (capped, see worker.lifecycle).
    auto_resumes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Deliveries of the step in flight: a step that keeps killing its worker is not retried forever.
    attempt_step: Mapped[int | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    result_text: Mapped[str | None] = mapped_column(Text)
    result_score: Mapped[float | None] = mapped_column(Float)
    # -1 low, 0 normal, 1 high: the queue takes higher first (worker.queue.broker_priority).
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When its next step was put on the queue (status queued): the wait shown to people, and the
    # age after which the reaper looks for its message on the broker. None while the step is
    # not on the queue: a batch job held back by the batch's limit on jobs in flight.
    queued_at: Mapped[datetime | None]
    # The worker running its step now (host, process, thread), while the status is running.
    worker: Mapped[str | None] = mapped_column(String(255))
    # The user's prompt template (an artifact, text/plain) and initial pool (worker.kinds.user_files);
    # None: the task's own.
    prompt_sha256: Mapped[str | None] = mapped_column(ForeignKey("artifacts.sha256"))
    pool_sha256: Mapped[str | None] = mapped_column(ForeignKey("pools.sha256"))
    # The API token that submitted it (its owner, web.auth); None: made by the CLI, or before
    # migration 0015, or with MILS_WEB_AUTH=none.
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), index=True)

    __table_args__ = (Index("ix_jobs_status_queued_at", "status", "queued_at"),)

    input: Mapped[Artifact | None] = relationship(foreign_keys=[input_sha256])
    steps: Mapped[list[Step]] = relationship(back_populates="job", order_by="Step.step")
    events: Mapped[list[JobEvent]] = relationship(order_by="JobEvent.id")


class JobLink(Base):
    """A job built on other jobs' results (cross-modal arithmetic on inversions), in order."""

    __tablename__ = "job_links"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)


class JobEvent(Base):
    """What happened to a job and when: submitted, started, cancel requested, cancelled,
    interrupted, resumed, failed, succeeded. The audit trail of its lifecycle."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(30))
    detail: Mapped[str | None] = mapped_column(Text)
    # The API token that acted (submitted, cancelled, resumed); None: the CLI, a worker, the
    # reaper, or a web app without tokens.
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))


class Step(Base):
    __tablename__ = "steps"
    # One row per (job, step): a redelivered task finds its step done.
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_steps_job_step"),
                      Index("ix_steps_finished_at", "finished_at"))  # steps per minute (worker.ops)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    best_score: Mapped[float]
    best_text: Mapped[str] = mapped_column(Text)
    mean_topk: Mapped[float]
    n_candidates: Mapped[int]
    improved: Mapped[bool]
    generation_seconds: Mapped[float] = mapped_column(default=0.0)
    scoring_seconds: Mapped[float] = mapped_column(default=0.0)
    # What the step cost (None for steps stored before migration 0014: "not recorded"): LLM
    # requests, the tokens of their prompts and answers (None when the engine reported none),
    # renders made while scoring, lines of the answers that were not candidates, and who ran it
    # (host/process/thread: the seconds above were measured there).
    llm_requests: Mapped[int | None]
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    renders: Mapped[int | None]
    rejected_lines: Mapped[int | None]
    worker: Mapped[str | None] = mapped_column(String(255))

    job: Mapped[Job] = relationship(back_populates="steps")


class Candidate(Base):
    __tablename__ = "candidates"
    # A text is scored once per job; text_key is its normalised form (worker.core.normalize).
    __table_args__ = (
        UniqueConstraint("job_id", "text_key", name="uq_candidates_job_text"),
        Index("ix_candidates_job_step", "job_id", "step"),
        Index("ix_candidates_job_score", "job_id", "score"),  # history sorted by score, paged
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int]  # the step that produced it; 0 is the initial pool
    text: Mapped[str] = mapped_column(Text)
    text_key: Mapped[str] = mapped_column(Text)
    score: Mapped[float]
    # Rank in the top K right after its own step (1 = best), or None when it did not make it.
    rank: Mapped[int | None]
    # The parts of the score the generator was shown (e.g. {"style": .., "content": ..}).
    details: Mapped[dict[str, Any] | None]
    # What the candidate made, when it makes something (a text-to-image render).
    artifact_sha256: Mapped[str | None] = mapped_column(ForeignKey("artifacts.sha256"))


class TopEntry(Base):
    """The top K after each step, in order: what the next step's prompt shows."""

    __tablename__ = "top_entries"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(primary_key=True)
    rank: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))

    candidate: Mapped[Candidate] = relationship()


class Pool(Base):
    """A bootstrap pool (the deduplicated texts step 0 scores, in order), stored once for every
    job that starts from it: keyed by its version, the SHA-256 of its content (worker.store.pools)."""

    __tablename__ = "pools"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int]  # texts
    texts: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # zlib of a JSON array of the texts
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoolScores(Base):
    """A job's step 0 kept compactly: its pool's scores as float64 (little-endian) in pool order,
    and each part of the score ("style", "content", ...) likewise, one array after another in
    the order of `detail_names`. Its step-0 candidates that a top K shows are also rows of
    `candidates`; readers merge the rest in (worker.store.pools). Jobs without one store their
    step 0 as rows (stored before migration 0010, or their pool candidates made renders)."""

    __tablename__ = "pool_scores"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    pool_sha256: Mapped[str] = mapped_column(ForeignKey("pools.sha256"), index=True)
    scores: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    detail_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    details: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class Batch(Base):
    """Jobs of one task with one set of settings and models over the items of a dataset."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    task: Mapped[str] = mapped_column(String(40))
    settings: Mapped[dict[str, Any]]
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    generator: Mapped[str] = mapped_column(String(500))
    scorer: Mapped[str] = mapped_column(String(500))
    generator_name: Mapped[str | None] = mapped_column(String(64))  # registry names, as on Job
    scorer_name: Mapped[str | None] = mapped_column(String(64))
    # What it was made from (worker.datasets.Dataset.describe() of each submission, in order).
    sources: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    priority: Mapped[int] = mapped_column(Integer, default=-1, server_default="-1")  # its jobs'; see Job.priority
    # Jobs of the batch on the queue or running at once at most (None: MILS_BATCH_IN_FLIGHT).
    max_in_flight: Mapped[int | None]
    # Every job's prompt template and initial pool when the user gave them (see Job).
    prompt_sha256: Mapped[str | None] = mapped_column(ForeignKey("artifacts.sha256"))
    pool_sha256: Mapped[str | None] = mapped_column(ForeignKey("pools.sha256"))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))  # its owner; see Job.token_id


class BatchItem(Base):
    """One item of a batch: its key in the dataset (e.g. a COCO image_id), its reference
    captions, and its job; or, for an item that could not be read, why not (and no job)."""

    __tablename__ = "batch_items"
    __table_args__ = (
        UniqueConstraint("batch_id", "item_key", name="uq_batch_items_key"),
        Index("ix_batch_items_batch_position", "batch_id", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(255))
    position: Mapped[int]  # the order it was submitted in, across submissions
    source: Mapped[str] = mapped_column(Text)  # its path as the dataset names it
    references: Mapped[list[str] | None] = mapped_column(JSON)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), unique=True)
    # Its first step was handed to the broker: a submission cut short is finished by the next.
    queued: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)


class BatchEvaluation(Base):
    """Caption metrics of a batch against references (pycocoevalcap), final and per step."""

    __tablename__ = "batch_evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    references: Mapped[str] = mapped_column(String(500))  # "the batch's own" or the file's name
    items: Mapped[int]
    metrics: Mapped[dict[str, Any]]


# What a token may do (web.auth): an admin anything to any job or batch; a user read everything,
# submit, and cancel or resume its own; a reader only read.
TOKEN_ROLES = ("admin", "user", "reader")


class ApiToken(Base):
    """A credential for the JSON API (`mils token create`). Only the SHA-256 of the token is
    kept: tokens are 256-bit random strings, so a plain hash cannot be brute-forced, and a
    leaked database leaks no usable token. Its `role` is one of TOKEN_ROLES."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20), default="user", server_default="user")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
