"""Thin views: the OpenAPI document as JSON and the page that renders it."""

from flask import Blueprint, current_app, jsonify, render_template

from app.apidocs.document import build_document
from app.extensions import limiter

bp = Blueprint("apidocs", __name__, url_prefix="/api")


@bp.get("/openapi.json")
@limiter.exempt
def openapi_document():
    return jsonify(build_document(current_app))


@bp.get("/docs")
@limiter.exempt
def docs_page():
    return render_template("apidocs/docs.html")
