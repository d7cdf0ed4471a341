"""Export the whole registry to one file and import it into an empty database.

The file is a zip: ``manifest.json`` (models, versions with their sha256 and
metadata, the serving runtime and its ONNX verdict, aliases and the activation
history, all by name and version number, never by database id) and
``artifacts/<sha256>`` with each artifact's bytes once (a version's verified ONNX
graph is stored the same way, under its own sha256). Import
checks every artifact against its sha256 before writing anything, so a damaged
backup changes nothing. Users, keys and logs are not part of it: ``pg_dump`` backs
up the whole database (README "Production").
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import (
    Activation,
    MLModel,
    ModelAlias,
    ModelArtifact,
    ModelVersion,
    User,
)
from app.models._time import utcnow
from app.models.registry import FORMATS, RUNTIME_SETTINGS
from app.observability import audit
from app.registry import changes
from app.registry.artifacts import artifact_bytes, onnx_bytes
from app.registry.service import NAME_PATTERN
from app.web.errors import APIError

FORMAT = "modeldock-registry"
FORMAT_VERSION = 1
MANIFEST_LIMIT = 256 * 1024 * 1024  # a manifest bigger than this is not ours


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def export_registry(path: Path) -> dict[str, int]:
    """Write every model, version, artifact, alias and activation to ``path``."""
    number = {v.id: v.number for v in db.session.scalars(select(ModelVersion))}
    models: list[dict[str, Any]] = []
    written: set[str] = set()
    graphs = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for model in db.session.scalars(select(MLModel).order_by(MLModel.name)):
            versions = []
            for version in model.versions:
                versions.append(
                    {
                        "number": version.number,
                        "status": version.status,
                        "file_format": version.file_format,
                        "sha256": version.sha256,
                        "size_bytes": version.size_bytes,
                        "input_schema": version.input_schema,
                        "sample": version.sample,
                        "metrics": version.metrics,
                        "notes": version.notes,
                        "created_by": version.created_by.username
                        if version.created_by
                        else None,
                        "created_at": _time(version.created_at),
                        "runtime": version.runtime,
                        "runtime_verdict": version.runtime_verdict,
                        "runtime_reason": version.runtime_reason,
                        "runtime_report": version.runtime_report,
                        "onnx_speedup": version.onnx_speedup,
                        "onnx_sha256": version.onnx_sha256,
                    }
                )
                if version.sha256 not in written:
                    archive.writestr(
                        f"artifacts/{version.sha256}", artifact_bytes(version.id)
                    )
                    written.add(version.sha256)
                if version.onnx_sha256 and version.onnx_sha256 not in written:
                    archive.writestr(
                        f"artifacts/{version.onnx_sha256}", onnx_bytes(version.id)
                    )
                    written.add(version.onnx_sha256)
                    graphs += 1
            aliases = db.session.scalars(
                select(ModelAlias)
                .where(ModelAlias.model_id == model.id)
                .order_by(ModelAlias.alias)
            )
            history = db.session.scalars(
                select(Activation)
                .where(Activation.model_id == model.id)
                .order_by(Activation.id)
            )
            models.append(
                {
                    "name": model.name,
                    "description": model.description,
                    "task": model.task,
                    "created_at": _time(model.created_at),
                    "batch_max_rows": model.batch_max_rows,
                    "batch_max_wait_ms": model.batch_max_wait_ms,
                    "predict_timeout_seconds": model.predict_timeout_seconds,
                    "versions": versions,
                    "aliases": [
                        {
                            "alias": a.alias,
                            "version": number[a.version_id],
                            "weight": a.weight,
                            "updated_at": _time(a.updated_at),
                        }
                        for a in aliases
                    ],
                    "activations": [
                        {
                            "alias": a.alias,
                            "from_version": number.get(a.from_version_id),
                            "to_version": number.get(a.to_version_id),
                            "weight": a.weight,
                            "actor": a.actor,
                            "reason": a.reason,
                            "created_at": _time(a.created_at),
                        }
                        for a in history
                    ],
                }
            )
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "exported_at": _time(utcnow()),
            "models": models,
        }
        archive.writestr(
            "manifest.json", json.dumps(manifest, indent=1, sort_keys=True)
        )
    return {
        "models": len(models),
        "versions": sum(len(m["versions"]) for m in models),
        "artifacts": len(written) - graphs,
        "onnx_graphs": graphs,
    }


def _bad(message: str) -> APIError:
    return APIError(400, "invalid_backup", message, "file")


def _read_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        info = archive.getinfo("manifest.json")
    except KeyError:
        raise _bad("no manifest.json: not a ModelDock registry export") from None
    if info.file_size > MANIFEST_LIMIT:
        raise _bad("manifest.json is too large")
    manifest = json.loads(archive.read(info))
    if (
        manifest.get("format") != FORMAT
        or manifest.get("format_version") != FORMAT_VERSION
    ):
        raise _bad(
            f"unsupported export format {manifest.get('format')!r} "
            f"{manifest.get('format_version')!r}"
        )
    return manifest


def _artifact(
    archive: zipfile.ZipFile, sha256: str, size_bytes: int | None = None
) -> bytes:
    """The bytes stored under ``sha256``, checked against their size and sha256."""
    try:
        info = archive.getinfo(f"artifacts/{sha256}")
    except KeyError:
        raise _bad(f"artifact {sha256} is missing") from None
    if size_bytes is not None and info.file_size != size_bytes:
        raise _bad(
            f"artifact {sha256} has {info.file_size} bytes, expected {size_bytes}"
        )
    data = archive.read(info)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _bad(f"artifact {sha256} does not match its checksum")
    return data


def import_registry(path: Path) -> dict[str, int]:
    """Load an export into an empty registry (flushes; the caller commits)."""
    if db.session.scalar(select(MLModel.id).limit(1)) is not None:
        raise APIError(
            409,
            "registry_not_empty",
            "import needs an empty registry; this database has models",
            "file",
        )
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise _bad(f"not a zip file: {exc}") from exc
    with archive:
        manifest = _read_manifest(archive)
        users = {u.username: u.id for u in db.session.scalars(select(User))}
        try:
            counts = _load(archive, manifest, users)
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(f"malformed manifest: {exc!r}") from exc
        audit.record("registry.import", str(path.name), counts)
        changes.bump()
    return counts


def _load(
    archive: zipfile.ZipFile, manifest: dict[str, Any], users: dict[str, int]
) -> dict[str, int]:
    counts = {"models": 0, "versions": 0, "activations": 0}
    for entry in manifest["models"]:
        model = MLModel(
            name=entry["name"],
            description=entry["description"],
            task=entry["task"],
            batch_max_rows=entry.get("batch_max_rows"),
            batch_max_wait_ms=entry.get("batch_max_wait_ms"),
            predict_timeout_seconds=entry.get("predict_timeout_seconds"),
            created_at=_parse_time(entry["created_at"]),
        )
        db.session.add(model)
        db.session.flush()
        ids: dict[int, int] = {}
        if not NAME_PATTERN.match(entry["name"]):
            raise ValueError(f"invalid model name {entry['name']!r}")
        for item in entry["versions"]:
            if (
                item["file_format"] not in FORMATS
                or item["status"] not in ("ready", "archived")
                or item.get("runtime", "auto") not in RUNTIME_SETTINGS
            ):
                raise ValueError(f"invalid version {item['number']!r}")
            version = ModelVersion(
                model_id=model.id,
                number=item["number"],
                status=item["status"],
                file_format=item["file_format"],
                sha256=item["sha256"],
                size_bytes=item["size_bytes"],
                input_schema=item["input_schema"],
                sample=item["sample"],
                metrics=item["metrics"],
                notes=item["notes"],
                created_by_id=users.get(item["created_by"]),
                created_at=_parse_time(item["created_at"]),
            )
            # Exports older than the ONNX runtime have no runtime fields: such
            # versions are served by scikit-learn, as they were before.
            version.runtime = item.get("runtime", "auto")
            version.runtime_verdict = item.get("runtime_verdict", "unchecked")
            version.runtime_reason = item.get("runtime_reason", "")
            version.runtime_report = item.get("runtime_report")
            version.onnx_speedup = item.get("onnx_speedup")
            version.onnx_sha256 = item.get("onnx_sha256")
            version.artifact = ModelArtifact(
                data=_artifact(archive, item["sha256"], item["size_bytes"]),
                onnx=_artifact(archive, version.onnx_sha256)
                if version.onnx_sha256
                else None,
            )
            db.session.add(version)
            db.session.flush()
            ids[item["number"]] = version.id
            counts["versions"] += 1
        for alias in entry["aliases"]:
            db.session.add(
                ModelAlias(
                    model_id=model.id,
                    alias=alias["alias"],
                    version_id=ids[alias["version"]],
                    weight=alias["weight"],
                    updated_at=_parse_time(alias["updated_at"]),
                )
            )
        for item in entry["activations"]:
            db.session.add(
                Activation(
                    model_id=model.id,
                    alias=item["alias"],
                    from_version_id=ids.get(item["from_version"]),
                    to_version_id=ids.get(item["to_version"]),
                    weight=item["weight"],
                    actor=item["actor"],
                    reason=item["reason"],
                    created_at=_parse_time(item["created_at"]),
                )
            )
            counts["activations"] += 1
        counts["models"] += 1
    db.session.flush()
    return counts
