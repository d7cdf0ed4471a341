"""JSON shapes of registry objects, shared by the API and the admin pages."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import MLModel, ModelAlias, ModelVersion
from app.registry.runtime import batching, effective_runtime


def aliases_of(model: MLModel) -> dict[str, dict[str, int]]:
    rows = db.session.execute(
        select(ModelAlias.alias, ModelVersion.number, ModelAlias.weight)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.model_id == model.id)
    ).all()
    return {
        alias: {"version": number, "weight": weight} for alias, number, weight in rows
    }


def version_dict(version: ModelVersion, aliases: dict | None = None) -> dict[str, Any]:
    schema = version.input_schema
    names = [a for a, v in (aliases or {}).items() if v["version"] == version.number]
    return {
        "model": version.model.name,
        "version": version.number,
        "status": "active" if "stable" in names else version.status,
        "aliases": sorted(names),
        "format": version.file_format,
        "sha256": version.sha256,
        "size_bytes": version.size_bytes,
        "estimator": schema["estimator"],
        "task": schema["task"],
        "feature_names": schema["feature_names"],
        "n_features": schema["n_features"],
        "classes": schema["classes"],
        "allow_nan": schema.get("allow_nan", False),
        **runtime_dict(version),
        "metrics": version.metrics,
        "notes": version.notes,
        "created_by": version.created_by.username if version.created_by else None,
        "created_at": version.created_at.isoformat(),
    }


def runtime_dict(version: ModelVersion) -> dict[str, Any]:
    """How a version is served: the runtime in use, the admin setting, the ONNX
    verdict."""
    return {
        "runtime": effective_runtime(version),
        "runtime_setting": version.runtime,
        "runtime_verdict": version.runtime_verdict,
        "runtime_reason": version.runtime_reason,
        "onnx_speedup": None
        if version.onnx_speedup is None
        else round(version.onnx_speedup, 1),
        "runtime_check": version.runtime_report,
    }


def model_dict(model: MLModel) -> dict[str, Any]:
    aliases = aliases_of(model)
    stable = aliases.get("stable")
    return {
        "name": model.name,
        "description": model.description,
        "task": model.task,
        "active_version": stable["version"] if stable else None,
        "aliases": aliases,
        "versions": [v.number for v in model.versions],
        "batching": batching_dict(model),
        "timeout": {
            "seconds": model.predict_timeout_seconds,
            "effective": model.predict_timeout_seconds
            or current_app.config["MODELDOCK_PREDICT_TIMEOUT_SECONDS"],
        },
        "created_at": model.created_at.isoformat(),
    }


def batching_dict(model: MLModel) -> dict[str, Any]:
    """A model's micro-batching: its own settings (null: the deployment's) and what
    applies to its versions served by scikit-learn."""
    config = current_app.config
    effective = batching(
        model.batch_max_rows,
        model.batch_max_wait_ms,
        (
            config["MODELDOCK_MICROBATCH_MAX_ROWS"],
            config["MODELDOCK_MICROBATCH_MAX_WAIT_MS"],
        ),
    )
    return {
        "max_rows": model.batch_max_rows,
        "max_wait_ms": model.batch_max_wait_ms,
        "effective": None
        if effective is None
        else {"max_rows": effective[0], "max_wait_ms": effective[1] * 1000.0},
    }
