"""Ground truth sent for earlier predictions (joined with request logs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Double, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._time import UTCDateTime, utcnow


class Feedback(db.Model):
    """The true label or value of one predicted row, keyed by request id and row."""

    __tablename__ = "feedback"
    # One truth per predicted row: a repeated report changes nothing.
    __table_args__ = (UniqueConstraint("model_name", "request_id", "row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, index=True
    )
    model_name: Mapped[str] = mapped_column(String(64))
    # The request id the prediction answered with (X-Request-ID).
    request_id: Mapped[str] = mapped_column(String(64))
    # The row's index in that request's batch (0 for a single row).
    row: Mapped[int] = mapped_column(default=0)
    # Classifiers: the true class, a JSON scalar as the model's classes are.
    label: Mapped[Any | None] = mapped_column(JSON)
    # Regressors: the true value.
    value: Mapped[float | None] = mapped_column(Double)
    api_key_id: Mapped[int | None]

    def __repr__(self) -> str:
        return f"<Feedback {self.model_name} {self.request_id}#{self.row}>"
