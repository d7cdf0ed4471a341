"""The native API's shapes: a body of ``instances`` (rows) or ``inputs`` (columns) →
the validated matrix, and a prediction → the JSON answer."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import g

from app.serving.explain import Explanation
from app.serving.inputs import matrix_from_columns, matrix_from_rows
from app.serving.predict import Prediction
from app.web.errors import APIError


def native_matrix(body: Any, schema: dict, max_rows: int) -> np.ndarray:
    """The native API body: exactly one of ``instances`` (rows) or ``inputs``
    (columns)."""
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", "the body must be a JSON object", "body")
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise APIError(
            400,
            "invalid_body",
            "send exactly one of 'instances' (rows) or 'inputs' (columns)",
            "instances",
        )
    if has_instances:
        return matrix_from_rows(body["instances"], schema, "instances", max_rows)
    return matrix_from_columns(body["inputs"], schema, "inputs", max_rows)


def response_body(prediction: Prediction, lists: bool = True) -> dict[str, Any]:
    """The native API answer; ``lists=False`` keeps numpy arrays (for orjson)."""
    body: dict[str, Any] = {
        "model": prediction.model.name,
        "version": prediction.version.number,
        "predictions": prediction.labels.tolist() if lists else prediction.labels,
    }
    if prediction.classes is not None:
        body["classes"] = prediction.classes
        if prediction.probabilities is not None:
            body["probabilities"] = (
                prediction.probabilities.tolist() if lists else prediction.probabilities
            )
    body["request_id"] = g.get("request_id")
    return body


def explain_body(explanation: Explanation) -> dict[str, Any]:
    """The native answer to ``/explain``: per row, base + Σ contributions = output."""
    result = explanation.result
    return {
        "model": explanation.model.name,
        "version": explanation.version.number,
        "explained_output": result.explained,
        "method": result.method,
        "outputs": result.outputs,
        "features": result.features,
        "per_input_feature": result.mapped,
        "explanations": [
            {"base_value": base, "output": output, "contributions": contributions}
            for base, output, contributions in zip(
                result.base.tolist(),
                result.output.tolist(),
                result.contributions.tolist(),
                strict=True,
            )
        ],
        "request_id": g.get("request_id"),
    }


def job_body(job: Any, progress: Any, links: dict[str, str]) -> dict[str, Any]:
    """A batch job's state (``app.batch.storage.Progress``) as the API answers it."""
    return {
        "id": job.id,
        "model": job.model_name,
        "version": job.version,
        "status": progress.status,
        "runner": job.runner,
        "percent": progress.percent,
        "rows": {"total": progress.total_rows, "done": progress.done_rows},
        "chunks": {
            "total": progress.total_chunks,
            "done": progress.done_chunks,
            "running": progress.running_chunks,
            "failed": progress.failed_chunks,
            "redone": progress.redone_chunks,
            "rows": job.chunk_rows,
        },
        "error": (
            {"code": progress.error_code, "message": progress.error}
            if progress.status == "failed"
            else None
        ),
        "created_at": job.created_at,
        "finished_at": progress.finished_at,
        "links": links,
    }
