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


SIDES = ("stable", "canary")  # the versions serving clients, side by side


def panel(name: str, kind: str, aliases: dict[str, dict]) -> dict[str, Any]:
    """The drift section of the model page: the report of the stable version and,
    during a canary, of the canary; one table of each side's newest window, a row
    per feature; and one chart per feature of PSI over the windows, a line a side."""
    if kind not in drift.KINDS:
        kind = "day"
    sides = []
    for alias in SIDES:
        if alias == "stable" or alias in aliases:
            number = aliases[alias]["version"] if alias in aliases else None
            body = drift.report(name, kind, number)
            latest = body["windows"][0] if body["windows"] else None
            sides.append(body | {"alias": alias, "latest": latest})
    db.session.commit()  # statistics refreshed on demand are kept for the next read
    shown = [side for side in sides if side["latest"]]
    names = list(
        dict.fromkeys(n for side in shown for n in side["reference"]["features"])
    )
    newest = [{f["feature"]: f for f in s["latest"]["features"]} for s in shown]
    rows = [
        {
            "feature": feature,
            "cells": [
                {"alias": side["alias"]} | by_feature.get(feature, {})
                for side, by_feature in zip(shown, newest, strict=True)
            ],
        }
        for feature in names
    ]
    return {
        "window": kind,
        "sides": sides,
        "shown": shown,
        "rows": rows,
        "charts": _charts(kind, shown, names),
    }


def _charts(kind: str, shown: list[dict], names: list[str]) -> list[Markup]:
    """PSI per feature over the windows, oldest first; a gap where a side saw
    no predictions (a canary started later)."""
    starts = sorted({w["start"] for side in shown for w in side["windows"]})
    labels = [s.strftime("%m-%d" if kind == "day" else "%d %H:00") for s in starts]
    psi = [
        {
            (w["start"], f["feature"]): f["psi"]
            for w in side["windows"]
            for f in w["features"]
        }
        for side in shown
    ]
    chart_list: list[Markup] = []
    for feature in names:
        series: dict[str, list[float | None]] = {
            f"version {side['version']} ({side['alias']})": [
                values.get((start, feature)) for start in starts
            ]
            for side, values in zip(shown, psi, strict=True)
        }
        series["drift threshold"] = [0.2] * len(starts)
        chart_list.append(
            charts.line_chart(labels, series, f"{feature}: PSI per {kind}")
        )
    return chart_list
