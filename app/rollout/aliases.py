"""Rollouts: sticky canary routing, canary/shadow aliases, promotion, shadow statistics."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from flask import g, has_request_context, request
from sqlalchemy import select

from app.observability import audit
from app.registry import changes
from app.web.errors import APIError
from app.extensions import db
from app.models import Activation, ModelAlias, ModelVersion, ShadowResult
from app.models._time import utcnow
from app.registry.service import get_model, get_version, set_alias
from app.serving.snapshot import ModelInfo, VersionInfo

ALIASES = ("stable", "canary", "shadow")
CLIENT_ID_HEADER = "X-Client-Id"


def client_identity() -> str:
    """Who a request comes from, for sticky routing: API key, client id, or address."""
    if not has_request_context():
        return "cli"
    principal = g.get("principal")
    if principal is not None and principal.api_key_id is not None:
        return f"key:{principal.api_key_id}"
    client_id = request.headers.get(CLIENT_ID_HEADER, "")[:128]
    if client_id:
        return f"client:{client_id}"
    return f"ip:{request.remote_addr}"


def bucket(model_name: str, identity: str) -> float:
    """A stable point in [0, 100) per (model, client): below the weight = canary.

    Raising the weight only adds clients to the canary; nobody flips back.
    """
    digest = hashlib.blake2b(f"{model_name}\0{identity}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % 10_000 / 100.0


def route(model: ModelInfo) -> tuple[str, VersionInfo | None]:
    """Pick the alias (and version) that answers this request for ``model``."""
    canary = model.aliases.get("canary")
    if canary is not None and canary[1] > 0 and \
            bucket(model.name, client_identity()) < canary[1]:
        return "canary", model.versions.get(canary[0])
    return "stable", model.alias_version("stable")


def _alias_row(model_id: int, alias: str) -> ModelAlias | None:
    return db.session.get(ModelAlias, (model_id, alias))


def clear_alias(name: str, alias: str, reason: str = "") -> None:
    """Remove a canary or shadow alias; recorded in history and the audit log."""
    if alias not in ("canary", "shadow"):
        raise APIError(400, "invalid_alias", "only canary and shadow can be removed",
                       "alias")
    model = get_model(name)
    row = _alias_row(model.id, alias)
    if row is None:
        raise APIError(404, "alias_not_set", f"model '{name}' has no {alias} version",
                       "alias")
    db.session.add(Activation(model_id=model.id, alias=alias,
                              from_version_id=row.version_id, to_version_id=None,
                              weight=0, actor=audit.actor_label(), reason=reason))
    db.session.delete(row)
    number = db.session.get(ModelVersion, row.version_id).number
    audit.record(f"alias.{alias}.clear", name, {"version": number}, reason)
    changes.bump()


def set_canary(name: str, number: int, weight: int, reason: str = "") -> None:
    """Send ``weight`` % of clients (sticky) to version ``number``."""
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
        raise APIError(400, "invalid_weight", "weight must be an integer 0-100",
                       "weight")
    model = get_model(name)
    version = _not_stable(model, number, "canary_is_stable")
    set_alias(model, version, "canary", weight=weight, reason=reason)


def _not_stable(model, number: int, code: str):
    """Version ``number`` of ``model``; 409 ``code`` if it is the stable version
    (a canary or shadow of the stable version would compare it with itself)."""
    version = get_version(model, number)
    stable = _alias_row(model.id, "stable")
    if stable is not None and stable.version_id == version.id:
        raise APIError(409, code,
                       f"version {number} is already the stable version", "version")
    return version


def promote_canary(name: str, reason: str = "") -> int:
    """Make the canary version stable and end the canary; return its number."""
    model = get_model(name)
    row = _alias_row(model.id, "canary")
    if row is None:
        raise APIError(409, "no_canary", f"model '{name}' has no canary to promote",
                       "model")
    version = row.version
    clear_alias(name, "canary", reason or "promoted")
    db.session.flush()
    set_alias(model, version, "stable", reason=reason or "canary promoted")
    return version.number


def set_shadow(name: str, number: int, reason: str = "") -> None:
    """Mirror stable traffic to version ``number`` after each response."""
    model = get_model(name)
    set_alias(model, _not_stable(model, number, "shadow_is_stable"), "shadow",
              reason=reason)


def shadow_stats(name: str, hours: int = 24,
                 now: datetime | None = None) -> list[dict]:
    """Per hour: requests, rows, and agreement (classification) or error (regression)."""
    model = get_model(name)
    since = (now or utcnow()) - timedelta(hours=hours)
    rows = db.session.execute(
        select(ShadowResult.created_at, ShadowResult.stable_version,
               ShadowResult.shadow_version, ShadowResult.rows, ShadowResult.agree,
               ShadowResult.abs_error, ShadowResult.sq_error)
        .where(ShadowResult.model_id == model.id, ShadowResult.created_at >= since)
        .order_by(ShadowResult.created_at)).all()
    hourly: dict[tuple, dict] = {}
    for created, stable, shadow, n, agree, abs_error, sq_error in rows:
        hour = created.replace(minute=0, second=0, microsecond=0)
        entry = hourly.setdefault((hour, stable, shadow), {
            "hour": hour.isoformat(), "stable_version": stable, "shadow_version": shadow,
            "requests": 0, "rows": 0, "agree": 0, "abs_error": 0.0, "sq_error": 0.0})
        entry["requests"] += 1
        entry["rows"] += n
        entry["agree"] += agree or 0
        entry["abs_error"] += abs_error or 0.0
        entry["sq_error"] += sq_error or 0.0
    out = []
    for entry in hourly.values():
        n = max(entry["rows"], 1)
        if model.task == "regression":
            stats = {"mae": entry["abs_error"] / n, "rmse": (entry["sq_error"] / n) ** 0.5}
        else:
            stats = {"agreement_rate": entry["agree"] / n}
        out.append({k: entry[k] for k in ("hour", "stable_version", "shadow_version",
                                          "requests", "rows")} | stats)
    return out


def history(name: str) -> list[dict]:
    """The model's activation history, newest first."""
    model = get_model(name)
    entries = db.session.scalars(select(Activation).where(
        Activation.model_id == model.id).order_by(Activation.id.desc()))
    return [{"alias": a.alias,
             "from_version": a.from_version.number if a.from_version else None,
             "to_version": a.to_version.number if a.to_version else None,
             "weight": a.weight, "actor": a.actor, "reason": a.reason,
             "at": a.created_at.isoformat()} for a in entries]
