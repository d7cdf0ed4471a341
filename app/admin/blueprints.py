"""The two admin blueprints: the JSON admin API (admin-scope API keys) and the admin
pages (signed-in administrators only)."""

from flask import Blueprint

from app.auth.permissions import require_admin_user

api_bp = Blueprint("admin_api", __name__, url_prefix="/api/v1")

# Every admin page and action: signed in (else the login page) and admin (else 403).
pages_bp = Blueprint("admin_pages", __name__, url_prefix="/admin")
pages_bp.before_request(require_admin_user)
