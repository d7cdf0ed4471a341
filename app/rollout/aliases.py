"""What serves: pointing an alias at a version (after a smoke test), canary and
shadow versions, promotion, ending them; each change recorded in history and audit."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Activation, MLModel, ModelAlias, ModelVersion
from app.models._time import utcnow
from app.observability import audit
from app.registry import changes
from app.registry.service import get_model, get_version
from app.serving.smoke import smoke_test
from app.web.errors import APIError

ALIASES = ("stable", "canary", "shadow")


def set_alias(
    model: MLModel,
    version: ModelVersion,
    alias: str = "stable",
    *,
    weight: int = 100,
    reason: str = "",
) -> Activation:
    """Point ``alias`` at ``version``; record it in history and the audit log."""
    if version.status != "ready":
        raise APIError(
            409,
            "version_not_ready",
            f"version {version.number} is {version.status}; it cannot serve",
            "version",
        )
    smoke_test(version)  # loaded and answering here before any traffic reaches it
    row = db.session.get(ModelAlias, (model.id, alias))
    previous = None if row is None else row.version_id
    if row is None:
        row = ModelAlias(model_id=model.id, alias=alias, version_id=version.id)
        db.session.add(row)
    row.version_id, row.weight, row.updated_at = version.id, weight, utcnow()
    activation = Activation(
        model_id=model.id,
        alias=alias,
        from_version_id=previous,
        to_version_id=version.id,
        weight=weight,
        actor=audit.actor_label(),
        reason=reason,
    )
    db.session.add(activation)
    db.session.flush()
    audit.record(
        f"alias.{alias}",
        f"{model.name}/v{version.number}",
        {"from_version": _number(previous), "weight": weight},
        reason,
    )
    changes.bump()
    return activation


def _number(version_id: int | None) -> int | None:
    """The number of a version given by id (audit details name versions by number)."""
    if version_id is None:
        return None
    return db.session.scalar(
        select(ModelVersion.number).where(ModelVersion.id == version_id)
    )


def _alias_row(model_id: int, alias: str) -> ModelAlias | None:
    return db.session.get(ModelAlias, (model_id, alias))


def clear_alias(name: str, alias: str, reason: str = "") -> None:
    """Remove a canary or shadow alias; recorded in history and the audit log."""
    if alias not in ("canary", "shadow"):
        raise APIError(
            400, "invalid_alias", "only canary and shadow can be removed", "alias"
        )
    model = get_model(name)
    row = _alias_row(model.id, alias)
    if row is None:
        raise APIError(
            404, "alias_not_set", f"model '{name}' has no {alias} version", "alias"
        )
    db.session.add(
        Activation(
            model_id=model.id,
            alias=alias,
            from_version_id=row.version_id,
            to_version_id=None,
            weight=0,
            actor=audit.actor_label(),
            reason=reason,
        )
    )
    db.session.delete(row)
    number = db.session.get(ModelVersion, row.version_id).number
    audit.record(f"alias.{alias}.clear", name, {"version": number}, reason)
    changes.bump()


def set_canary(name: str, number: int, weight: int, reason: str = "") -> None:
    """Send ``weight`` % of clients (sticky) to version ``number``."""
    if (
        not isinstance(weight, int)
        or isinstance(weight, bool)
        or not 0 <= weight <= 100
    ):
        raise APIError(
            400, "invalid_weight", "weight must be an integer 0-100", "weight"
        )
    model = get_model(name)
    version = _not_stable(model, number, "canary_is_stable")
    set_alias(model, version, "canary", weight=weight, reason=reason)


def _not_stable(model, number: int, code: str):
    """Version ``number`` of ``model``; 409 ``code`` if it is the stable version
    (a canary or shadow of the stable version would compare it with itself)."""
    version = get_version(model, number)
    stable = _alias_row(model.id, "stable")
    if stable is not None and stable.version_id == version.id:
        raise APIError(
            409, code, f"version {number} is already the stable version", "version"
        )
    return version


def promote_canary(name: str, reason: str = "") -> int:
    """Make the canary version stable and end the canary; return its number."""
    model = get_model(name)
    row = _alias_row(model.id, "canary")
    if row is None:
        raise APIError(
            409, "no_canary", f"model '{name}' has no canary to promote", "model"
        )
    version = row.version
    clear_alias(name, "canary", reason or "promoted")
    db.session.flush()
    set_alias(model, version, "stable", reason=reason or "canary promoted")
    return version.number


def set_shadow(name: str, number: int, reason: str = "") -> None:
    """Mirror stable traffic to version ``number`` after each response."""
    model = get_model(name)
    set_alias(
        model, _not_stable(model, number, "shadow_is_stable"), "shadow", reason=reason
    )
