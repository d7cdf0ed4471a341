"""The stored registry: look models and versions up, store a validated upload,
archive a version; what names and aliases may look like."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from app.extensions import db
from app.models import Activation, MLModel, ModelAlias, ModelArtifact, ModelVersion
from app.observability import audit
from app.registry import changes
from app.registry.loading import format_for_filename
from app.registry.runtime import record_compilation
from app.registry.sandbox import validate_in_subprocess
from app.web.errors import APIError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
LABEL_PATTERN = "[a-z][a-z0-9_-]{0,15}"  # aliases are at most 16 characters
MAX_VERSION = 2**31 - 1  # version numbers are 32-bit integers in the database


def get_model(name: str) -> MLModel:
    """Return the model called ``name`` or raise a 404."""
    model = db.session.scalar(select(MLModel).where(MLModel.name == name))
    if model is None:
        raise APIError(404, "model_not_found", f"no model named '{name}'", "model")
    return model


def get_version(model: MLModel, number: int) -> ModelVersion:
    """Return version ``number`` of ``model`` or raise a 404."""
    version = (
        None
        if not 0 < number <= MAX_VERSION
        else db.session.scalar(
            select(ModelVersion).where(
                ModelVersion.model_id == model.id, ModelVersion.number == number
            )
        )
    )
    if version is None:
        raise APIError(
            404,
            "version_not_found",
            f"model '{model.name}' has no version {number}",
            "version",
        )
    return version


def alias_version(model: MLModel, alias: str = "stable") -> ModelVersion | None:
    """Return the version an alias points to, if any."""
    row = db.session.get(ModelAlias, (model.id, alias))
    return None if row is None else row.version


def store_version(
    name: str,
    filename: str,
    data: bytes,
    *,
    actor_id: int | None = None,
    description: str | None = None,
    notes: str = "",
    metrics: dict[str, Any] | None = None,
    sample_rows: list | None = None,
) -> ModelVersion:
    """Validate ``data`` in the sandbox and store it as the model's next version.

    The sandbox also converts scikit-learn models to ONNX and verifies the graph;
    a verified graph is stored beside the artifact. The version row, its artifact
    and the graph are flushed in one transaction; nothing is
    written unless validation succeeded. Nothing serves it yet: uploading through
    ``app.rollout.versions`` makes a new model's first version stable.
    """
    if not NAME_PATTERN.match(name or ""):
        raise APIError(
            400,
            "invalid_model_name",
            "model names are 1-64 characters: lowercase letters, digits, '_', '.', '-'",
            "name",
        )
    if not data:
        raise APIError(400, "empty_file", "the uploaded file is empty", "file")
    file_format = format_for_filename(filename)
    config = current_app.config
    report = validate_in_subprocess(
        data,
        file_format,
        trusted_modules=config["MODELDOCK_TRUSTED_MODULES"],
        sample_rows=sample_rows,
        memory_mb=config["MODELDOCK_VALIDATION_MEMORY_MB"],
        cpu_seconds=config["MODELDOCK_VALIDATION_CPU_SECONDS"],
        timeout_seconds=config["MODELDOCK_VALIDATION_TIMEOUT_SECONDS"],
    )
    schema = report["schema"]
    model = db.session.scalar(select(MLModel).where(MLModel.name == name))
    if model is None:
        model = MLModel(name=name, description=description or "", task=schema["task"])
        db.session.add(model)
        db.session.flush()
    elif description is not None:
        model.description = description
    number = (
        db.session.scalar(
            select(func.max(ModelVersion.number)).where(
                ModelVersion.model_id == model.id
            )
        )
        or 0
    ) + 1
    version = ModelVersion(
        model=model,
        number=number,
        file_format=file_format,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        input_schema=schema,
        sample=report["sample"],
        metrics=metrics,
        notes=notes or "",
        created_by_id=actor_id,
    )
    version.artifact = ModelArtifact(data=data)
    record_compilation(version, version.artifact, report["runtime"])
    db.session.add(version)
    db.session.flush()
    audit.record(
        "version.upload",
        f"{name}/v{number}",
        {
            "sha256": version.sha256,
            "size": len(data),
            "format": file_format,
            "runtime_verdict": version.runtime_verdict,
        },
    )
    changes.bump()
    return version


def rollback_target(model: MLModel) -> ModelVersion | None:
    """The version that was stable before the current one, if it can serve again."""
    current = alias_version(model)
    last = db.session.scalar(
        select(Activation)
        .where(
            Activation.model_id == model.id,
            Activation.alias == "stable",
            Activation.to_version_id == (current.id if current else None),
        )
        .order_by(Activation.id.desc())
        .limit(1)
    )
    if last is None or last.from_version is None or last.from_version.status != "ready":
        return None
    return last.from_version


def archive_version(name: str, number: int, reason: str = "") -> ModelVersion:
    """Archive a version no alias points to; it stays stored but cannot serve."""
    model = get_model(name)
    version = get_version(model, number)
    in_use = db.session.scalar(
        select(ModelAlias.alias).where(ModelAlias.version_id == version.id)
    )
    if in_use:
        raise APIError(
            409,
            "version_in_use",
            f"version {number} is the '{in_use}' version; activate another "
            "version first",
            "version",
        )
    version.status = "archived"
    audit.record("version.archive", f"{name}/v{number}", {}, reason)
    changes.bump()
    return version
