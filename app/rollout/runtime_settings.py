"""How versions are served, changed by an admin: the runtime of a version (kept only
if it still reproduces its sample), and a model's micro-batching and deadline."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import MLModel, ModelAlias, ModelVersion
from app.models.registry import RUNTIME_SETTINGS
from app.observability import audit
from app.registry import changes
from app.registry.runtime import effective_runtime
from app.serving.smoke import smoke_test
from app.web.errors import APIError


def set_runtime(version: ModelVersion, runtime: str, reason: str = "") -> ModelVersion:
    """Force ``runtime`` (auto | onnx | sklearn) for one version.

    A version that serves traffic must still reproduce its sample with the new
    runtime before the change is kept (409 ``smoke_test_failed`` otherwise).
    """
    if runtime not in RUNTIME_SETTINGS:
        raise APIError(
            400,
            "invalid_runtime",
            f"runtime must be one of {', '.join(RUNTIME_SETTINGS)}",
            "runtime",
        )
    if runtime == "onnx" and version.file_format != "onnx" and not version.onnx_sha256:
        raise APIError(
            409,
            "onnx_unavailable",
            f"version {version.number} has no verified ONNX graph "
            f"({version.runtime_verdict}: {version.runtime_reason})",
            "runtime",
        )
    if runtime == "sklearn" and version.file_format == "onnx":
        raise APIError(
            409,
            "sklearn_unavailable",
            f"version {version.number} was uploaded as ONNX; only "
            "onnxruntime can serve it",
            "runtime",
        )
    previous = version.runtime
    version.runtime = runtime
    db.session.flush()
    serving = db.session.scalar(
        select(ModelAlias.alias).where(ModelAlias.version_id == version.id).limit(1)
    )
    if serving is not None:
        smoke_test(version)
    audit.record(
        "version.runtime",
        f"{version.model.name}/v{version.number}",
        {"from": previous, "to": runtime, "serves_with": effective_runtime(version)},
        reason,
    )
    changes.bump()
    return version


MAX_BATCH_ROWS = 1024
MAX_BATCH_WAIT_MS = 1000.0


def _optional_number(
    value: Any, field: str, kind: type, low: float, high: float
) -> Any:
    """``value`` if it is None or a number of ``kind`` in [low, high]; else 400."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and not isinstance(value, int))
        or not low <= value <= high
    ):
        raise APIError(
            400,
            "invalid_batching",
            f"{field} must be null (the deployment default) or "
            f"{'an integer' if kind is int else 'a number'} from {low:g} "
            f"to {high:g}",
            field,
        )
    return kind(value)


def set_batching(
    model: MLModel, max_rows: Any, max_wait_ms: Any, reason: str = ""
) -> MLModel:
    """Set a model's micro-batching for its scikit-learn path.

    ``max_rows`` 0 or 1 turns it off for this model; None for either value inherits
    ``MODELDOCK_MICROBATCH_MAX_ROWS`` / ``MODELDOCK_MICROBATCH_MAX_WAIT_MS``.
    Versions served by onnxruntime are never batched: one call is already cheap.
    """
    rows = _optional_number(max_rows, "max_rows", int, 0, MAX_BATCH_ROWS)
    wait = _optional_number(max_wait_ms, "max_wait_ms", float, 0, MAX_BATCH_WAIT_MS)
    previous = {
        "max_rows": model.batch_max_rows,
        "max_wait_ms": model.batch_max_wait_ms,
    }
    model.batch_max_rows, model.batch_max_wait_ms = rows, wait
    audit.record(
        "model.batching",
        model.name,
        {"from": previous, "to": {"max_rows": rows, "max_wait_ms": wait}},
        reason,
    )
    changes.bump()
    return model


MAX_TIMEOUT_SECONDS = 600.0


def set_timeout(model: MLModel, seconds: Any, reason: str = "") -> MLModel:
    """Set a model's prediction deadline in seconds (None: the deployment's
    ``MODELDOCK_PREDICT_TIMEOUT_SECONDS``)."""
    if seconds is not None and (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 < seconds <= MAX_TIMEOUT_SECONDS
    ):
        raise APIError(
            400,
            "invalid_timeout",
            "seconds must be null (the deployment default) or a number "
            f"above 0 and at most {MAX_TIMEOUT_SECONDS:g}",
            "seconds",
        )
    previous = model.predict_timeout_seconds
    model.predict_timeout_seconds = None if seconds is None else float(seconds)
    audit.record(
        "model.timeout",
        model.name,
        {"from": previous, "to": model.predict_timeout_seconds},
        reason,
    )
    changes.bump()
    return model
