"""Batch prediction jobs and their chunks: progress and results live in the database.

Any process may answer a progress poll or a download, and any worker, on any host,
may predict any chunk, so nothing about a job is kept only in process memory. A
job's state is computed from its chunk rows (``app.batch.storage.progress``): the
workers never update a shared counter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column

from app.extensions import db
from app.models._time import UTCDateTime, utcnow

CHUNK_STATES = ("pending", "running", "done", "failed")


class BatchJob(db.Model):
    """Rows to predict with one pinned version, split into chunks."""

    __tablename__ = "batch_jobs"

    # 128 random bits in hex: the id is part of URLs, so it must not be guessable.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(64))
    # The version is pinned when the job is created, so every row uses the same one.
    version: Mapped[int]
    # "web-csv" (the predict page) or "api" (POST /api/v1/models/<name>/jobs).
    source: Mapped[str] = mapped_column(String(16), default="api")
    # "in-process" (a thread of the web worker) or "celery" (the broker's workers).
    runner: Mapped[str] = mapped_column(String(16), default="in-process")
    filename: Mapped[str] = mapped_column(String(255), default="")
    # The input table's header (the result adds the prediction and probabilities).
    input_columns: Mapped[list[str]] = mapped_column(JSON)
    # The classes of the probability columns; null when the model gives none.
    classes: Mapped[list | None] = mapped_column(JSON)
    total_rows: Mapped[int] = mapped_column(default=0)
    chunk_rows: Mapped[int] = mapped_column(default=5000)
    total_chunks: Mapped[int] = mapped_column(default=0)
    # Set when the job could not start at all (the broker refused it, the thread
    # running it died); a chunk's own failure is on the chunk.
    error: Mapped[str] = mapped_column(Text, default="")
    # The model's task; for a finished job also its chart data (class counts or a
    # histogram) and result columns, made on first view.
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, index=True
    )
    # Heartbeat of an in-process job: a thread that died stops moving it.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<BatchJob {self.id[:8]} {self.model_name} v{self.version}>"


class BatchChunk(db.Model):
    """One slice of a job's rows; (job_id, chunk_index) is unique, so a chunk that
    is redone overwrites its own row and never adds one."""

    __tablename__ = "batch_chunks"

    job_id: Mapped[str] = mapped_column(
        ForeignKey("batch_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_index: Mapped[int] = mapped_column(primary_key=True)
    rows: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # How many times a worker started this chunk: above 1, it was redone (a worker
    # died holding it and the broker gave it to another).
    attempts: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str] = mapped_column(String(255), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    error_code: Mapped[str] = mapped_column(String(64), default="")
    # gzip JSON: {"rows": [[cell, ...], ...], "lines": [line in the file, ...]}.
    input: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))
    # gzip JSON: {"labels": [...], "probabilities": [[...], ...] or null}.
    result: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<BatchChunk {self.job_id[:8]}#{self.chunk_index} {self.status}>"
