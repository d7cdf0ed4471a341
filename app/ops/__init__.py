"""Ops blueprint: liveness, readiness and Prometheus metrics."""

from flask import Blueprint

bp = Blueprint("ops", __name__)

from app.ops import metrics, routes  # noqa: E402,F401
