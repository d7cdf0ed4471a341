"""Request logs and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._time import UTCDateTime, utcnow


class RequestLog(db.Model):
    """One prediction request, written in batches off the request path."""

    __tablename__ = "request_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, index=True
    )
    # Indexed: feedback finds its prediction by request id.
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    # Which API answered: native, tutorial, tfserving, v2.
    protocol: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str | None] = mapped_column(String(64), index=True)
    version: Mapped[int | None]
    api_key_id: Mapped[int | None] = mapped_column(index=True)
    user_id: Mapped[int | None]
    status_code: Mapped[int]
    error_code: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(default=0)
    latency_ms: Mapped[float]
    # The client's network (IPv4 /24, IPv6 /48), never the full address.
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    # The request body with configured fields redacted; only when
    # MODELDOCK_LOG_PAYLOADS is on, else NULL.
    payload: Mapped[Any | None] = mapped_column(JSON)
    # What the model answered, for joining with feedback (app/monitoring/): {"y":
    # labels or values per row, "p": class probabilities per row (classifiers that
    # give them)}, the first MODELDOCK_LOG_PREDICTION_ROWS rows; NULL when off.
    predictions: Mapped[Any | None] = mapped_column(JSON(none_as_null=True))


class AuditEvent(db.Model):
    """An administrative action: who did what to which object, when and from where."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, index=True
    )
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")


class ShadowResult(db.Model):
    """One mirrored request: the stable answer beside the shadow version's answer."""

    __tablename__ = "shadow_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, index=True
    )
    model_id: Mapped[int] = mapped_column(index=True)
    stable_version: Mapped[int]
    shadow_version: Mapped[int]
    rows: Mapped[int]
    # Classification: rows where both labels agree. Regression: summed errors.
    agree: Mapped[int | None]
    abs_error: Mapped[float | None]
    sq_error: Mapped[float | None]
    # Both answers, kept for the first rows of each request (see SHADOW_KEEP_ROWS).
    stable_predictions: Mapped[list[Any]] = mapped_column(JSON)
    shadow_predictions: Mapped[list[Any] | None] = mapped_column(JSON)
    # Set when the shadow version failed to answer.
    error: Mapped[str | None] = mapped_column(Text)
