"""MLflow's scoring protocol: ``/invocations``, ``/ping`` and ``/version`` per model
under ``/mlflow/<name>/`` and, for the default model, at the root — the URLs of
``mlflow models serve``."""

from __future__ import annotations

from importlib import metadata

from flask import Blueprint, Response, current_app, g, request

from app.auth.permissions import require_scope
from app.observability.request_log import record_response
from app.protocols.common import protocol_errors
from app.protocols.mlflow import codec as mlflow
from app.serving import predict
from app.serving.lookups import default_model_name
from app.web.finite_json import json_response

bp = Blueprint("mlflow", __name__)
bp.after_request(record_response("mlflow"))
protocol_errors(bp, mlflow.error)


@bp.post("/mlflow/<name>/invocations")
@bp.post("/invocations")
@require_scope("predict")
def invocations(name: str | None = None):
    model, version = predict.resolve(name or default_model_name())
    rows, body, shape = mlflow.request_matrix(
        request.get_data(cache=False),
        request.content_type,
        version.schema,
        predict.max_rows(),
    )
    if current_app.config["MODELDOCK_LOG_PAYLOADS"]:  # stored redacted
        g.log_payload = mlflow.logged_body(body, shape, rows, version.schema)
    result = predict.run(model, version, rows)
    return json_response(mlflow.response_body(result))


@bp.get("/mlflow/<name>/ping")
@bp.get("/ping")
@require_scope("predict")
def ping(name: str | None = None):
    """200 while the model (the default one at the root) has a stable version."""
    predict.resolve(name or default_model_name(), alias="stable")
    return Response("\n", mimetype="text/plain")  # MLflow's body (it says JSON)


@bp.get("/version")
@require_scope("predict")
def version():
    """ModelDock's version (MLflow answers its own), as plain text."""
    try:
        number = metadata.version("modeldock")
    except metadata.PackageNotFoundError:
        number = "0"
    return Response(number, mimetype="text/plain")
