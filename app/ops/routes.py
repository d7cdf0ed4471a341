"""Health checks: live = the process answers; ready = the database answers too."""

from flask import jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db, limiter
from app.ops import bp


@bp.get("/healthz")
@limiter.exempt
def live():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@limiter.exempt
def ready():
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        response = jsonify({"status": "unavailable", "database": "unreachable"})
        response.headers["Retry-After"] = "5"
        return response, 503
    return jsonify({"status": "ok", "database": "ok"})
