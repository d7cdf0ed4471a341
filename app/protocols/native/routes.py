"""The native JSON API (``/api/v1/models/...``) and the tutorial route (``POST
/predict``): parse the request, call the serving or registry service, answer JSON."""

from flask import Blueprint, g, jsonify, request
from sqlalchemy import select

from app.auth.permissions import require_scope
from app.extensions import db
from app.models import MLModel
from app.observability.request_log import record_response
from app.protocols.native.codec import native_matrix, response_body
from app.registry import describe
from app.registry.service import get_model, get_version
from app.serving import predict
from app.serving.inputs import matrix_from_rows, parse_json
from app.serving.lookups import default_model_name
from app.web.errors import APIError
from app.web.finite_json import json_response

bp = Blueprint("predict", __name__)
bp.after_request(record_response("native"))


def _body():
    body = parse_json(request.get_data(cache=False), request.content_type)
    g.log_payload = body  # stored only with MODELDOCK_LOG_PAYLOADS, redacted
    return body


@bp.get("/api/v1/models")
@require_scope("predict")
def list_models():
    models = db.session.scalars(select(MLModel).order_by(MLModel.name))
    return jsonify({"models": [describe.model_dict(m) for m in models]})


@bp.get("/api/v1/models/<name>")
@require_scope("predict")
def show_model(name: str):
    return jsonify(describe.model_dict(get_model(name)))


@bp.get("/api/v1/models/<name>/versions")
@require_scope("predict")
def list_versions(name: str):
    model = get_model(name)
    aliases = describe.aliases_of(model)
    return jsonify(
        {
            "model": name,
            "versions": [describe.version_dict(v, aliases) for v in model.versions],
        }
    )


@bp.get("/api/v1/models/<name>/versions/<int:number>")
@require_scope("predict")
def show_version(name: str, number: int):
    model = get_model(name)
    return jsonify(
        describe.version_dict(get_version(model, number), describe.aliases_of(model))
    )


@bp.post("/api/v1/models/<name>/predict")
@bp.post("/api/v1/models/<name>/versions/<int:number>/predict")
@require_scope("predict")
def predict_native(name: str, number: int | None = None):
    model, version = predict.resolve(name, number)
    rows = native_matrix(_body(), version.schema, predict.max_rows())
    result = predict.run(model, version, rows)
    return json_response(response_body(result, lists=False))


@bp.post("/predict")
@require_scope("predict")
def predict_tutorial():
    """The classic tutorial route: {"features": [...]} → {"prediction": [...]}."""
    g.log_protocol = "tutorial"
    body = _body()
    if not isinstance(body, dict) or "features" not in body:
        raise APIError(400, "invalid_body", 'send {"features": [...]}', "features")
    features = body["features"]
    if not isinstance(features, list):
        raise APIError(
            400,
            "invalid_body",
            "features must be a list of numbers or rows",
            "features",
        )
    model, version = predict.resolve(default_model_name())
    rows = features if features and isinstance(features[0], list) else [features]
    matrix = matrix_from_rows(rows, version.schema, "features", predict.max_rows())
    result = predict.run(model, version, matrix)
    return json_response({"prediction": result.labels})
