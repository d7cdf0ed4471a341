"""TensorFlow Serving REST API: status, metadata, ``:predict``, ``:classify``,
``:regress``; labels are aliases."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from app.auth.permissions import require_scope
from app.observability.request_log import record_response
from app.protocols.common import plain_errors
from app.protocols.tfserving import codec as tfserving
from app.serving import predict
from app.serving.lookups import find_model, find_version

bp = Blueprint("tfserving", __name__, url_prefix="/v1/models")
bp.after_request(record_response("tfserving"))
plain_errors(bp)


@bp.get("/<model:name>")
@require_scope("predict")
def status(name: str):
    model = find_model(name)
    return jsonify(
        tfserving.model_status([model.versions[n] for n in sorted(model.versions)])
    )


@bp.get("/<model:name>/versions/<int:number>")
@require_scope("predict")
def version_status(name: str, number: int):
    return jsonify(tfserving.model_status([find_version(find_model(name), number)]))


@bp.get("/<model:name>/labels/<label:label>")
@require_scope("predict")
def label_status(name: str, label: str):
    _, version = predict.resolve(name, alias=label)
    return jsonify(tfserving.model_status([version]))


@bp.get("/<model:name>/metadata")
@bp.get("/<model:name>/versions/<int:number>/metadata")
@bp.get("/<model:name>/labels/<label:label>/metadata")
@require_scope("predict")
def metadata(name: str, number: int | None = None, label: str = "stable"):
    model, version = predict.resolve(name, number, alias=label)
    return jsonify(tfserving.metadata(model, version))


@bp.post("/<model:name>:predict")
@bp.post("/<model:name>/versions/<int:number>:predict")
@bp.post("/<model:name>/labels/<label:label>:predict")
@require_scope("predict")
def predict_view(name: str, number: int | None = None, label: str | None = None):
    if label is None:
        model, version = predict.resolve(name, number)
    else:
        model, version = predict.resolve(name, alias=label)
    body = tfserving.parse_body(request.get_data(cache=False))
    g.log_payload = body  # stored only with MODELDOCK_LOG_PAYLOADS, redacted
    rows, layout, signature = tfserving.request_matrix(
        body, version.schema, predict.max_rows()
    )
    result = predict.run(model, version, rows)
    return jsonify(tfserving.response_body(result, layout, signature))


@bp.post("/<model:name>:classify", defaults={"verb": "classify"})
@bp.post("/<model:name>/versions/<int:number>:classify", defaults={"verb": "classify"})
@bp.post("/<model:name>/labels/<label:label>:classify", defaults={"verb": "classify"})
@bp.post("/<model:name>:regress", defaults={"verb": "regress"})
@bp.post("/<model:name>/versions/<int:number>:regress", defaults={"verb": "regress"})
@bp.post("/<model:name>/labels/<label:label>:regress", defaults={"verb": "regress"})
@require_scope("predict")
def classify_or_regress(
    name: str, verb: str, number: int | None = None, label: str | None = None
):
    if label is None:
        model, version = predict.resolve(name, number)
    else:
        model, version = predict.resolve(name, alias=label)
    body = tfserving.parse_body(request.get_data(cache=False))
    g.log_payload = body
    rows = tfserving.examples_matrix(body, version.schema, predict.max_rows())
    result = predict.run(model, version, rows)
    shape = tfserving.classify_body if verb == "classify" else tfserving.regress_body
    return jsonify(shape(result, version.schema))
