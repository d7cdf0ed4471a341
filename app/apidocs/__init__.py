"""API documentation: the OpenAPI 3.1 document and a browsable page (public)."""

from flask import Blueprint

bp = Blueprint("apidocs", __name__, url_prefix="/api")

from app.apidocs import routes  # noqa: E402,F401  (routes attach to bp)
