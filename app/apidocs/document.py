"""Assemble the OpenAPI 3.1 document from the operations table and the URL rules."""

from __future__ import annotations

import re
from copy import deepcopy
from importlib import metadata

from flask import Flask

from app.apidocs.operations import OPERATIONS, page_operation
from app.apidocs.schemas import PATH_PARAMETERS, SCHEMAS, ref
from app.web.paths import is_api_path

_VARIABLE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")

STATUS_TEXT = {
    400: "Bad request: invalid body or parameters, or a key in the query string.",
    401: "No API key, or an unknown, expired or revoked one.",
    403: "The API key lacks the scope this route needs.",
    404: "No such model, version or alias.",
    409: "The version is archived or in use, or there is nothing to roll back.",
    413: "Too many rows, or the body is too large.",
    415: "Unsupported Content-Type or Content-Encoding.",
    422: "The model file was refused, or the model could not predict these rows.",
    429: "Rate limited; see Retry-After.",
    503: "The stored artifact is corrupt, or the database is unavailable.",
}

DESCRIPTION = """\
ModelDock serves scikit-learn models over four protocols:

* the **native JSON API** (`/api/v1/...`, `/predict`),
* the **TensorFlow Serving REST API** (`/v1/models/...`; labels are ModelDock aliases,
  `stable` being the active version),
* the **Open Inference Protocol / KServe v2** (`/v2/...`, usable with NVIDIA's
  `tritonclient`), and
* **MLflow's scoring protocol** (`/mlflow/<name>/invocations`, and `/invocations` for
  the default model, as `mlflow models serve` answers).

Send an API key in `Authorization: Bearer <key>` or `X-API-Key: <key>`, never in the
URL. Native errors are `{"error": {"code", "message", "field"}}`; TensorFlow Serving
and v2 errors are `{"error": "<message>"}`; MLflow's are `{"error_code", "message"}`
(plus ModelDock's `error.code`); all with the same HTTP status.
"""


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``<int:number>`` → ``{number}``."""
    return _VARIABLE.sub(lambda m: "{" + m.group(2) + "}", rule)


CONVERTER_SCHEMAS = {
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
}


def path_parameters(rule: str) -> list[dict]:
    """One parameter per URL variable, typed by name (known ones) or by converter."""
    out = []
    for m in _VARIABLE.finditer(rule):
        converter, name = m.group(1), m.group(2)
        schema = PATH_PARAMETERS.get(name) or CONVERTER_SCHEMAS.get(
            converter, {"type": "string"}
        )
        out.append(
            {"name": name, "in": "path", "required": True, "schema": deepcopy(schema)}
        )
    return out


def page_operations(app: Flask) -> dict[tuple[str, str], dict]:
    """Browser pages (every route outside the API paths of ``app.web.paths``),
    documented from the URL map and the views' docstrings."""
    out = {}
    for rule in app.url_map.iter_rules():
        if is_api_path(rule.rule):
            continue
        view = app.view_functions[rule.endpoint]
        doc = (view.__doc__ or "").strip().splitlines()
        summary = doc[0] if doc else rule.endpoint.replace("_", " ")
        public = rule.rule in ("/auth/login", "/static/<path:filename>")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out[(rule.rule, method)] = page_operation(summary, method, public)
    return out


def _responses() -> dict:
    """Reusable error responses: ``Native<status>``, ``Plain<status>`` and
    ``MLflow<status>``."""
    out = {}
    for status, text in STATUS_TEXT.items():
        for family, schema in (
            ("Native", "Error"),
            ("Plain", "PlainError"),
            ("MLflow", "MLflowError"),
        ):
            response = {
                "description": text,
                "content": {"application/json": {"schema": ref(schema)}},
            }
            if status == 429:
                response["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait",
                        "schema": {"type": "string"},
                    }
                }
            out[f"{family}{status}"] = response
    return out


def build_document(app: Flask) -> dict:
    """Return the OpenAPI document: the API table plus ``app``'s browser pages."""
    try:
        version = metadata.version("modeldock")
    except metadata.PackageNotFoundError:
        version = "0"
    paths: dict[str, dict] = {}
    operations = {**page_operations(app), **OPERATIONS}
    for (rule, method), operation in sorted(operations.items()):
        entry = deepcopy(operation)
        parameters = path_parameters(rule) + entry.pop("parameters", [])
        if parameters:
            entry["parameters"] = parameters
        entry["operationId"] = _operation_id(rule, method)
        paths.setdefault(openapi_path(rule), {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "ModelDock", "version": version, "description": DESCRIPTION},
        "tags": [
            {"name": "native", "description": "ModelDock's JSON API (predict scope)"},
            {"name": "admin", "description": "Registry changes (admin scope)"},
            {"name": "tfserving", "description": "TensorFlow Serving REST API"},
            {"name": "v2", "description": "Open Inference Protocol (KServe v2)"},
            {"name": "mlflow", "description": "MLflow scoring protocol"},
            {"name": "ops", "description": "Health checks"},
            {"name": "docs", "description": "This documentation"},
            {"name": "browser", "description": "Pages for people (session sign-in)"},
        ],
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "paths": paths,
        "components": {
            "schemas": deepcopy(SCHEMAS),
            "responses": _responses(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer mdk_...`",
                },
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`MODELDOCK_METRICS_TOKEN`, for `/metrics` only",
                },
            },
        },
    }


def _operation_id(rule: str, method: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", openapi_path(rule)).strip("_") or "root"
    return f"{method.lower()}_{words}"
