"""Model admin: the JSON admin API for scripts (admin scope)."""

from flask import Blueprint

api_bp = Blueprint("admin_api", __name__, url_prefix="/api/v1")

from app.admin import api  # noqa: E402,F401  (routes attach to the blueprint)
