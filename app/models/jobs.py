"""CSV prediction jobs: their progress and results live in the database.

Any worker may answer the progress page or the download, not only the one that
runs the job, so nothing about a job is kept only in process memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column

from app.extensions import db
from app.models._time import UTCDateTime, utcnow

JOB_STATES = ("queued", "running", "done", "failed")


class PredictionJob(db.Model):
    """One uploaded CSV predicted in the background by the worker that received it."""

    __tablename__ = "prediction_jobs"

    # 128 random bits in hex: the id is part of URLs, so it must not be guessable.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(64))
    # The version is pinned when the job starts, so every row uses the same one.
    version: Mapped[int]
    filename: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    total_rows: Mapped[int] = mapped_column(default=0)
    done_rows: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    # Columns of the result and the chart data (class counts or a histogram).
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The result table as gzip-compressed CSV (not neutralised: that is done on export).
    result: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, index=True
    )
    # Heartbeat: a running job whose worker died stops moving this.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def percent(self) -> int:
        if not self.total_rows:
            return 0
        return int(100 * self.done_rows / self.total_rows)

    def __repr__(self) -> str:
        return f"<PredictionJob {self.id[:8]} {self.status}>"
