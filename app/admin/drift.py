"""Drift of a model's inputs: the admin JSON report and the panel on the model page
(``app.monitoring.drift`` computes; this module shapes and draws)."""

from __future__ import annotations

from typing import Any

from flask import request
from markupsafe import Markup

from app.admin.blueprints import api_bp
from app.auth.permissions import require_scope
from app.extensions import db
from app.monitoring import drift
from app.ui import charts
from app.web.bounds import whole_number
from app.web.errors import APIError
from app.web.finite_json import json_response


def _version_arg() -> int | None:
    raw = request.args.get("version")
    if raw is None:
        return None
    number = whole_number(raw, 1, 2**31 - 1)
    if number is None:
        raise APIError(
            400, "invalid_version", "version must be a whole number", "version"
        )
    return number


@api_bp.get("/models/<name>/drift")
@require_scope("admin")
def drift_report(name: str):
    """PSI and a two-sample test per feature over the last hours or days."""
    body = drift.report(name, request.args.get("window", "day"), _version_arg())
    db.session.commit()  # statistics refreshed on demand are kept for the next read
    for window in body["windows"]:
        window["start"] = window["start"].isoformat()
    return json_response(body)


def panel(name: str, kind: str, number: int | None = None) -> dict[str, Any]:
    """The drift section of the model page: the report, the newest window's table
    and one chart of PSI per feature over the windows."""
    if kind not in drift.KINDS:
        kind = "day"
    body = drift.report(name, kind, number)
    db.session.commit()
    windows = list(reversed(body["windows"]))  # oldest first, for the charts
    labels = [
        w["start"].strftime("%m-%d" if kind == "day" else "%d %H:00") for w in windows
    ]
    chart_list: list[Markup] = []
    names = body["reference"]["features"] if body["reference"] else []
    for j, feature in enumerate(names):
        values = [
            w["features"][j]["psi"] if j < len(w["features"]) else 0.0 for w in windows
        ]
        if values:
            chart_list.append(
                charts.line_chart(
                    labels,
                    {"PSI": values, "drift threshold": [0.2] * len(values)},
                    f"{feature}: PSI per {kind}",
                )
            )
    return body | {
        "latest": body["windows"][0] if body["windows"] else None,
        "charts": chart_list,
    }
