"""Which URLs are the API: declared once, here.

Everything that treats script-facing paths differently from pages derives from
this module: error answers (JSON, the protocols' plain ``{"error": "..."}``, or
MLflow's ``{"error_code", "message"}``: ``app.web.errors``), cookie-less sessions
(``app.auth.sessions``), CORS (the factory), which routes the OpenAPI document
writes out as operations and which it lists as pages (``app.apidocs``), and
nginx's refusal of API calls over plain HTTP (``nginx/render.py``). A new protocol
adds its prefix here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ApiPath:
    """URLs starting with ``prefix`` are for scripts: their errors are JSON."""

    prefix: str
    plain_errors: bool = False  # a protocol's own shape: {"error": "<message>"}
    cors: bool = False  # callable from the browser origins MODELDOCK_CORS_ORIGINS names
    # Another protocol's own error shape, by name ("mlflow": {"error_code", "message"}).
    error_shape: str | None = None


API_PATHS = (
    ApiPath("/api/", cors=True),  # the native and admin JSON API, OpenAPI
    ApiPath("/v1/", plain_errors=True, cors=True),  # TensorFlow Serving REST
    ApiPath("/v2", plain_errors=True, cors=True),  # Open Inference (KServe v2)
    ApiPath("/predict"),  # the tutorial route
    ApiPath("/metrics"),  # Prometheus
    ApiPath("/healthz"),  # liveness
    ApiPath("/readyz"),  # readiness
    # MLflow's scoring protocol: per model, and the default model at the root
    ApiPath("/mlflow/", error_shape="mlflow", cors=True),
    ApiPath("/invocations", error_shape="mlflow", cors=True),
    ApiPath("/ping", error_shape="mlflow"),
    ApiPath("/version", error_shape="mlflow"),
)
API_PREFIXES = tuple(path.prefix for path in API_PATHS)
PLAIN_ERROR_PREFIXES = tuple(path.prefix for path in API_PATHS if path.plain_errors)

# Blueprints whose routes are pages for people (session sign-in, forms with CSRF
# tokens), all outside the prefixes above; OpenAPI documents them from the URL map.
PAGE_BLUEPRINTS = frozenset({"pages", "admin_pages", "auth", "sso", "static"})


def is_api_path(path: str) -> bool:
    """True for a URL under one of the API prefixes."""
    return path.startswith(API_PREFIXES)


def _inside(path: str, prefix: str) -> bool:
    """True for ``/v2`` itself and ``/v2/...`` (not ``/v2x``)."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def is_plain_error_path(path: str) -> bool:
    """True for a URL inside a protocol's folder (``/v2`` itself, ``/v2/...``)."""
    return any(_inside(path, prefix) for prefix in PLAIN_ERROR_PREFIXES)


def error_shape(path: str) -> str | None:
    """The name of the own error shape of the protocol whose folder holds ``path``
    ("plain", "mlflow"), or None for the native JSON errors."""
    for api_path in API_PATHS:
        if _inside(path, api_path.prefix):
            if api_path.plain_errors:
                return "plain"
            if api_path.error_shape:
                return api_path.error_shape
    return None


def cors_resources(origins: list[str]) -> dict[str, dict]:
    """flask-cors resources: the CORS prefixes, open to ``origins``."""
    return {
        re.escape(path.prefix) + ".*": {"origins": origins}
        for path in API_PATHS
        if path.cors
    }


def nginx_location_pattern() -> str:
    """The API paths as an nginx location regex: ``^/(api/|v1/|...)``."""
    return "^/(" + "|".join(prefix.lstrip("/") for prefix in API_PREFIXES) + ")"
