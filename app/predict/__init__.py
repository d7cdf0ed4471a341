"""Prediction blueprint: the JSON API for scripts and the tutorial-compatible route."""

from flask import Blueprint

bp = Blueprint("predict", __name__)

from app.predict import routes  # noqa: E402,F401  (routes attach to bp)
