"""Open Inference Protocol (KServe v2): health, metadata, readiness and ``infer``."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.auth.permissions import require_scope
from app.extensions import db
from app.observability.request_log import record_response
from app.protocols.common import plain_errors
from app.protocols.openinference import codec as openinference
from app.serving import predict
from app.serving.lookups import find_model, find_version

bp = Blueprint("v2", __name__, url_prefix="/v2")
bp.after_request(record_response("v2"))
plain_errors(bp)


@bp.get("")
@require_scope("predict")
def server_metadata():
    return jsonify(openinference.server_metadata())


@bp.get("/health/live")
@require_scope("predict")
def live():
    return jsonify({"live": True})


@bp.get("/health/ready")
@require_scope("predict")
def ready():
    """Ready when the database answers (readiness probes get 4xx/5xx otherwise)."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        response = jsonify({"ready": False})
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"ready": True})


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<int:number>")
@require_scope("predict")
def model_metadata(name: str, number: int | None = None):
    model, version = predict.resolve(name, number, alias="stable")  # number wins
    return jsonify(openinference.model_metadata(model, version, number is not None))


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<int:number>/ready")
@require_scope("predict")
def model_ready(name: str, number: int | None = None):
    """Ready only when this worker has the stable (or pinned) version loaded."""
    model = find_model(name)
    if number is None:
        _, version = predict.resolve(name, alias="stable")
    else:
        version = find_version(model, number)
    ready = version.status == "ready" and openinference.is_loaded(version)
    response = jsonify({"name": name, "version": str(version.number), "ready": ready})
    response.status_code = 200 if ready else 400  # the protocol: 4xx means "not ready"
    return response


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<int:number>/infer")
@require_scope("predict")
def infer(name: str, number: int | None = None):
    model, version = predict.resolve(name, number)
    body, binary = openinference.split_body(
        request.get_data(cache=False),
        request.headers.get("Inference-Header-Content-Length"),
        request.headers.get("Content-Encoding"),
    )
    g.log_payload = body  # the JSON part; stored only with MODELDOCK_LOG_PAYLOADS
    infer_request = openinference.parse_request(body, binary, version.schema)
    rows = openinference.matrix(infer_request, version.schema, predict.max_rows())
    result = predict.run(model, version, rows)
    payload, header_length = openinference.response(infer_request, result)
    if header_length is None:
        return Response(payload, mimetype="application/json")
    response = Response(payload, mimetype="application/octet-stream")
    response.headers["Inference-Header-Content-Length"] = str(header_length)
    return response
