"""``/metrics`` for Prometheus: with the metrics token or from an allowed network."""

from flask import current_app, request

from app.observability import metrics
from app.web.errors import APIError
from app.extensions import limiter
from app.ops import bp


@bp.get("/metrics")
@limiter.exempt
def scrape():
    config = current_app.config
    if not metrics.scrape_allowed(request.remote_addr,
                                  request.headers.get("Authorization"),
                                  config["MODELDOCK_METRICS_TOKEN"],
                                  config["MODELDOCK_METRICS_ALLOW"]):
        raise APIError(403, "forbidden",
                       "metrics are readable from allowed networks or with the "
                       "metrics token", "Authorization")
    body, content_type = metrics.exposition()
    return body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"}
