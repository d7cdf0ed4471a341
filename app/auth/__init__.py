"""Auth blueprint: browser sign-in and sign-out."""

from flask import Blueprint

bp = Blueprint("auth", __name__, url_prefix="/auth")

from app.auth import sign_in  # noqa: E402,F401
