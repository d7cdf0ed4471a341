"""What rollouts did: a model's activation history and the shadow version's agreement
with the stable one, per hour."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import Activation, ShadowResult
from app.models._time import utcnow
from app.registry.service import get_model


def shadow_stats(name: str, hours: int = 24, now: datetime | None = None) -> list[dict]:
    """``shadow_hours`` as JSON: each hour in ISO 8601."""
    return [
        entry | {"hour": entry["hour"].isoformat()}
        for entry in shadow_hours(name, hours, now)
    ]


def shadow_hours(name: str, hours: int = 24, now: datetime | None = None) -> list[dict]:
    """Per hour (a datetime): requests, rows, and agreement (classification) or
    error (regression)."""
    model = get_model(name)
    since = (now or utcnow()) - timedelta(hours=hours)
    rows = db.session.execute(
        select(
            ShadowResult.created_at,
            ShadowResult.stable_version,
            ShadowResult.shadow_version,
            ShadowResult.rows,
            ShadowResult.agree,
            ShadowResult.abs_error,
            ShadowResult.sq_error,
        )
        .where(ShadowResult.model_id == model.id, ShadowResult.created_at >= since)
        .order_by(ShadowResult.created_at)
    ).all()
    hourly: dict[tuple, dict] = {}
    for created, stable, shadow, n, agree, abs_error, sq_error in rows:
        hour = created.replace(minute=0, second=0, microsecond=0)
        entry = hourly.setdefault(
            (hour, stable, shadow),
            {
                "hour": hour,
                "stable_version": stable,
                "shadow_version": shadow,
                "requests": 0,
                "rows": 0,
                "agree": 0,
                "abs_error": 0.0,
                "sq_error": 0.0,
            },
        )
        entry["requests"] += 1
        entry["rows"] += n
        entry["agree"] += agree or 0
        entry["abs_error"] += abs_error or 0.0
        entry["sq_error"] += sq_error or 0.0
    out = []
    for entry in hourly.values():
        n = max(entry["rows"], 1)
        if model.task == "regression":
            stats = {
                "mae": entry["abs_error"] / n,
                "rmse": (entry["sq_error"] / n) ** 0.5,
            }
        else:
            stats = {"agreement_rate": entry["agree"] / n}
        out.append(
            {
                k: entry[k]
                for k in (
                    "hour",
                    "stable_version",
                    "shadow_version",
                    "requests",
                    "rows",
                )
            }
            | stats
        )
    return out


def history(name: str) -> list[dict]:
    """The model's activation history, newest first."""
    model = get_model(name)
    entries = db.session.scalars(
        select(Activation)
        .where(Activation.model_id == model.id)
        .order_by(Activation.id.desc())
    )
    return [
        {
            "alias": a.alias,
            "from_version": a.from_version.number if a.from_version else None,
            "to_version": a.to_version.number if a.to_version else None,
            "weight": a.weight,
            "actor": a.actor,
            "reason": a.reason,
            "at": a.created_at.isoformat(),
        }
        for a in entries
    ]
