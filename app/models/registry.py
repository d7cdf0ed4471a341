"""The model registry: models, versions, their artifacts, aliases and history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Double,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from app.extensions import db
from app.models._time import UTCDateTime, utcnow

TASKS = ("classification", "regression", "other")
FORMATS = ("skops", "joblib", "pickle", "onnx")
# Which runtime answers for a version: "auto" uses onnxruntime when the ONNX
# variant was verified at upload, else scikit-learn; an admin may force either.
RUNTIME_SETTINGS = ("auto", "onnx", "sklearn")


class MLModel(db.Model):
    """A named model; what it serves is decided by its aliases."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    task: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Micro-batching of this model's scikit-learn path (app/serving/batching.py):
    # NULL inherits MODELDOCK_MICROBATCH_MAX_ROWS / _MAX_WAIT_MS; 0 or 1 rows is off.
    batch_max_rows: Mapped[int | None]
    batch_max_wait_ms: Mapped[float | None] = mapped_column(Double)
    # Deadline of one prediction of this model, in seconds (app/serving/runtimes/);
    # NULL inherits MODELDOCK_PREDICT_TIMEOUT_SECONDS.
    predict_timeout_seconds: Mapped[float | None] = mapped_column(Double)

    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model", order_by="ModelVersion.number"
    )
    aliases: Mapped[list[ModelAlias]] = relationship(back_populates="model")

    def __repr__(self) -> str:
        return f"<MLModel {self.name}>"


class ModelVersion(db.Model):
    """One uploaded, validated artifact of a model."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    # 1, 2, 3 … per model, never reused.
    number: Mapped[int]
    # "ready" (can serve) or "archived" (kept, cannot be activated).
    status: Mapped[str] = mapped_column(String(16), default="ready")
    file_format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int]
    # Derived at upload: feature_names, n_features, classes, task, estimator.
    input_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Rows of the model's own input with its outputs, recorded by the validator.
    sample: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    notes: Mapped[str] = mapped_column(Text, default="")
    # Admin override of the serving runtime: auto | onnx | sklearn.
    runtime: Mapped[str] = mapped_column(
        String(16), default="auto", server_default="auto"
    )
    # Outcome of the ONNX conversion at upload: verified, mismatch,
    # not_convertible, native (uploaded as .onnx) or unchecked (older versions).
    runtime_verdict: Mapped[str] = mapped_column(
        String(32), default="unchecked", server_default="unchecked"
    )
    # Why, in one line, and the measurements (rows checked, diffs, timings).
    runtime_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    runtime_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # scikit-learn time / onnxruntime time for one row, measured at upload.
    onnx_speedup: Mapped[float | None] = mapped_column(Double)
    # sha256 of the verified ONNX graph kept beside the artifact, if any.
    onnx_sha256: Mapped[str | None] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    model: Mapped[MLModel] = relationship(back_populates="versions")
    created_by = relationship("User")
    artifact: Mapped[ModelArtifact] = relationship(
        back_populates="version", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<ModelVersion {self.model_id}:{self.number}>"


class ModelArtifact(db.Model):
    """The bytes of a version, in their own table so listings never load them."""

    __tablename__ = "model_artifacts"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id"), primary_key=True
    )
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    # The verified ONNX graph converted from ``data`` at upload (None if none).
    onnx: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))

    version: Mapped[ModelVersion] = relationship(back_populates="artifact")


class ModelAlias(db.Model):
    """Which version answers for a name such as ``stable`` (the active version)."""

    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(16), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    # Traffic share in percent, for the canary alias.
    weight: Mapped[int] = mapped_column(default=100)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    model: Mapped[MLModel] = relationship(back_populates="aliases")
    version: Mapped[ModelVersion] = relationship()


class Activation(db.Model):
    """History of alias changes: what served before, what serves now, who and why."""

    __tablename__ = "activations"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    alias: Mapped[str] = mapped_column(String(16))
    from_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    to_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    weight: Mapped[int] = mapped_column(default=100)
    actor: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    from_version: Mapped[ModelVersion | None] = relationship(
        foreign_keys=[from_version_id]
    )
    to_version: Mapped[ModelVersion | None] = relationship(foreign_keys=[to_version_id])


class RegistryState(db.Model):
    """A single-row change counter; workers reload routing when it moves."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    generation: Mapped[int] = mapped_column(default=0)
