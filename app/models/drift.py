"""Drift of a version's inputs: its reference distributions, the live counts per
hour, and the statistics computed per window (app/monitoring/drift.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Double, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._time import UTCDateTime, utcnow


class DriftReference(db.Model):
    """Per-feature reference distributions of a version, recorded at upload."""

    __tablename__ = "drift_references"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id"), primary_key=True
    )
    # Where the rows came from: "csv" (uploaded beside the model) or "sample".
    source: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int]
    # One entry per feature, in the model's order: name, kind (numeric or
    # categorical), inner quantile edges or category values, and reference counts
    # per bin with a last bin for missing/unseen values
    # (app/observability/reference.py).
    features: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # Per feature, a sorted subsample of raw values for the KS test (payload path);
    # deferred, so that serving never loads it.
    values: Mapped[list[list[float]]] = mapped_column(JSON, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<DriftReference {self.version_id} {self.rows} rows>"


class DriftCount(db.Model):
    """Live rows of one feature that fell in one bin during one hour (summed over
    workers by upserts)."""

    __tablename__ = "drift_counts"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    feature: Mapped[int] = mapped_column(primary_key=True)
    # The sketch's slot: a bin of the reference, or its last slot (missing/unseen).
    bin: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class DriftWindow(db.Model):
    """One hour or day of a version: whether its statistics are up to date."""

    __tablename__ = "drift_windows"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # hour | day
    start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    # Bumped by every flush of counts into the window; the statistics are current
    # when ``computed`` equals it (a flush during a computation leaves it stale).
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    computed: Mapped[int] = mapped_column(BigInteger, default=-1)
    # When the statistics were last computed (the payload path recomputes a window
    # that was still open then).
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)


class DriftStat(db.Model):
    """PSI and a two-sample test of one feature in one window."""

    __tablename__ = "drift_stats"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    feature: Mapped[int] = mapped_column(primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    psi: Mapped[float] = mapped_column(Double)
    pvalue: Mapped[float | None] = mapped_column(Double)
    # chi2 (binned counts, the sketch) or ks (raw values from payload logs).
    test: Mapped[str] = mapped_column(String(8))
