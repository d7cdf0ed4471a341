"""Feedback and live quality of the native API: ``POST
/api/v1/models/<name>/feedback`` (``feedback`` scope) and ``GET
/api/v1/models/<name>/quality`` (``admin`` scope). A blueprint of their own, so
that a feedback report is not logged as a prediction request."""

from flask import Blueprint, g, request

from app.auth.permissions import require_scope
from app.monitoring import feedback, quality
from app.serving.commit import commit
from app.serving.inputs import parse_json
from app.web.finite_json import json_response

bp = Blueprint("feedback", __name__)


@bp.post("/api/v1/models/<name>/feedback")
@require_scope("feedback")
def send_feedback(name: str):
    body = parse_json(request.get_data(cache=False), request.content_type)
    principal = g.get("principal")
    answer = feedback.record(
        name,
        body,
        request_id=g.request_id,
        api_key_id=principal.api_key_id if principal else None,
        remote_addr=request.remote_addr,
    )
    commit()
    return json_response(answer)


@bp.get("/api/v1/models/<name>/quality")
@require_scope("admin")
def show_quality(name: str):
    return json_response(quality.report(name, request.args.get("window", "hour")))
