"""Ops blueprint: liveness and readiness for load balancers and orchestrators."""

from flask import Blueprint

bp = Blueprint("ops", __name__)

from app.ops import routes  # noqa: E402,F401
