"""Operations: health checks (live = the process answers; ready = the database
answers too) and ``/metrics`` for Prometheus (with the metrics token or from an
allowed network)."""

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db, limiter
from app.monitoring import drift_gauges, gauges
from app.observability import metrics
from app.web.errors import APIError

bp = Blueprint("ops", __name__)


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


@bp.get("/metrics")
@limiter.exempt
def scrape():
    config = current_app.config
    if not metrics.scrape_allowed(
        request.remote_addr,
        request.headers.get("Authorization"),
        config["MODELDOCK_METRICS_TOKEN"],
        config["MODELDOCK_METRICS_ALLOW"],
    ):
        raise APIError(
            403,
            "forbidden",
            "metrics are readable from allowed networks or with the metrics token",
            "Authorization",
        )
    gauges.refresh()  # live quality, from a short per-worker cache
    body, content_type = metrics.exposition()
    body += drift_gauges.exposition()  # read from the database, the same on any worker
    return body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"}
