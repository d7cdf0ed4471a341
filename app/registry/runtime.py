"""How a stored version is served: the runtime its settings choose (onnxruntime or
scikit-learn), the ONNX verdict recorded at upload, and a model's effective
micro-batching. Changing these settings is ``app.rollout.runtime_settings``."""

from __future__ import annotations

import hashlib
from typing import Any

from app.models import ModelArtifact, ModelVersion


def effective_runtime(version: Any) -> str:
    """ "onnx" or "sklearn" for a version row (or anything with the same fields).

    ``auto`` serves the verified ONNX graph when there is one; an uploaded
    ``.onnx`` file has no scikit-learn side at all.
    """
    if version.file_format == "onnx":
        return "onnx"
    if version.runtime != "sklearn" and version.onnx_sha256:
        return "onnx"
    return "sklearn"


def batching(
    max_rows: int | None, max_wait_ms: float | None, defaults: tuple[int, float]
) -> tuple[int, float] | None:
    """Effective (max rows, max wait in seconds): a model's own values, else the
    deployment's; None when batching is off (fewer than 2 rows)."""
    rows = defaults[0] if max_rows is None else max_rows
    wait_ms = defaults[1] if max_wait_ms is None else max_wait_ms
    return (rows, wait_ms / 1000.0) if rows > 1 else None


def record_compilation(
    version: ModelVersion, artifact: ModelArtifact, result: dict[str, Any]
) -> None:
    """Store the sandbox's ONNX verdict on a new version (same transaction)."""
    version.runtime_verdict = result["verdict"]
    version.runtime_reason = (result.get("reason") or "")[:2000]
    version.runtime_report = result.get("report")
    version.onnx_speedup = result.get("speedup")
    if result.get("onnx") is not None:
        artifact.onnx = result["onnx"]
        version.onnx_sha256 = hashlib.sha256(result["onnx"]).hexdigest()
