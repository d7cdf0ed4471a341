"""Admin-scope JSON routes: upload, activate, roll back and archive versions."""

from __future__ import annotations

import json

from flask import g, jsonify, request

from app.admin.blueprints import api_bp
from app.auth.permissions import require_scope
from app.registry import describe, service
from app.rollout import aliases, history, runtime_settings, versions
from app.serving.commit import commit
from app.web.bounds import json_whole_number, whole_number
from app.web.errors import APIError


def _json_field(name: str):
    raw = request.form.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise APIError(
            400, "malformed_json", f"'{name}' is not valid JSON", name
        ) from exc


def _reference_csv() -> bytes | None:
    """The drift reference: a CSV file in the multipart field 'reference'."""
    upload = request.files.get("reference")
    if upload is None or not upload.filename:
        return None
    with upload.stream:
        return upload.read()


def _reason() -> str:
    body = None
    if request.is_json and request.get_data().strip():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise APIError(
                400,
                "invalid_body",
                'send a JSON object such as {"reason": "..."}',
                "body",
            )
    if body is not None and "reason" in body:
        if not isinstance(body["reason"], str):
            raise APIError(400, "invalid_reason", "reason must be a string", "reason")
        return body["reason"]
    return request.form.get("reason", "")


@api_bp.post("/models/<name>/versions")
@require_scope("admin")
def upload_version(name: str):
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise APIError(
            400, "file_missing", "send the model as multipart form field 'file'", "file"
        )
    metrics = _json_field("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise APIError(
            400, "invalid_metrics", "metrics must be a JSON object", "metrics"
        )
    with upload.stream:  # large uploads are spooled to a temporary file
        data = upload.read()
    version = versions.upload_version(
        name,
        upload.filename,
        data,
        actor_id=g.principal.user_id,
        description=request.form.get("description"),
        notes=request.form.get("notes", ""),
        metrics=metrics,
        sample_rows=_json_field("sample"),
        reference=_reference_csv(),
        reference_from_sample=request.form.get("reference") == "sample",
    )
    commit()
    return jsonify(
        describe.version_dict(version, describe.aliases_of(version.model))
    ), 201


@api_bp.post("/models/<name>/versions/<int:number>/activate")
@require_scope("admin")
def activate_version(name: str, number: int):
    version = versions.activate_version(name, number, _reason())
    commit()
    return jsonify(describe.model_dict(version.model))


@api_bp.put("/models/<name>/versions/<int:number>/runtime")
@require_scope("admin")
def set_version_runtime(name: str, number: int):
    """Body: {"runtime": "auto" | "onnx" | "sklearn", "reason": "..."}."""
    body = _json_body()
    version = service.get_version(service.get_model(name), number)
    runtime_settings.set_runtime(version, body.get("runtime"), _reason())
    commit()
    return jsonify(describe.version_dict(version, describe.aliases_of(version.model)))


@api_bp.put("/models/<name>/batching")
@require_scope("admin")
def set_model_batching(name: str):
    """Body: {"max_rows": n | null, "max_wait_ms": x | null, "reason": "..."}."""
    body = _json_body()
    model = runtime_settings.set_batching(
        service.get_model(name),
        body.get("max_rows"),
        body.get("max_wait_ms"),
        _reason(),
    )
    commit()
    return jsonify(describe.model_dict(model))


@api_bp.put("/models/<name>/timeout")
@require_scope("admin")
def set_model_timeout(name: str):
    """Body: {"seconds": x | null, "reason": "..."}."""
    body = _json_body()
    model = runtime_settings.set_timeout(
        service.get_model(name), body.get("seconds"), _reason()
    )
    commit()
    return jsonify(describe.model_dict(model))


@api_bp.post("/models/<name>/rollback")
@require_scope("admin")
def rollback(name: str):
    version = versions.rollback(name, _reason())
    commit()
    return jsonify(describe.model_dict(version.model))


@api_bp.post("/models/<name>/versions/<int:number>/archive")
@require_scope("admin")
def archive_version(name: str, number: int):
    version = service.archive_version(name, number, _reason())
    commit()
    return jsonify(describe.version_dict(version, describe.aliases_of(version.model)))


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", "send a JSON object", "body")
    return body


@api_bp.put("/models/<name>/canary")
@require_scope("admin")
def set_canary(name: str):
    """Body: {"version": n, "weight": 0-100, "reason": "..."}."""
    body = _json_body()
    aliases.set_canary(
        name,
        json_whole_number(body, "version"),
        json_whole_number(body, "weight", 0, 100),
        str(body.get("reason", "")),
    )
    commit()
    return jsonify(describe.model_dict(service.get_model(name)))


@api_bp.delete("/models/<name>/canary", defaults={"alias": "canary"})
@api_bp.delete("/models/<name>/shadow", defaults={"alias": "shadow"})
@require_scope("admin")
def clear_alias(name: str, alias: str):
    aliases.clear_alias(name, alias, _reason())
    commit()
    return jsonify(describe.model_dict(service.get_model(name)))


@api_bp.post("/models/<name>/canary/promote")
@require_scope("admin")
def promote_canary(name: str):
    aliases.promote_canary(name, _reason())
    commit()
    return jsonify(describe.model_dict(service.get_model(name)))


@api_bp.put("/models/<name>/shadow")
@require_scope("admin")
def set_shadow(name: str):
    """Body: {"version": n, "reason": "..."}."""
    body = _json_body()
    aliases.set_shadow(
        name, json_whole_number(body, "version"), str(body.get("reason", ""))
    )
    commit()
    return jsonify(describe.model_dict(service.get_model(name)))


@api_bp.get("/models/<name>/shadow")
@require_scope("admin")
def shadow_report(name: str):
    """Hourly agreement (classification) or error (regression) of the shadow version."""
    hours = whole_number(request.args.get("hours", "24"), 1, 24 * 31)
    if hours is None:
        raise APIError(400, "invalid_hours", "hours must be 1-744", "hours")
    pointers = describe.aliases_of(service.get_model(name))
    return jsonify(
        {
            "model": name,
            "shadow": pointers.get("shadow"),
            "hours": history.shadow_stats(name, hours),
        }
    )


@api_bp.get("/models/<name>/history")
@require_scope("admin")
def activation_history(name: str):
    """Every alias change of a model: from, to, weight, who, why, when."""
    return jsonify({"model": name, "history": history.history(name)})
