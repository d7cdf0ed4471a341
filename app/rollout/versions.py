"""A version's way to serving: upload (a new model's first version serves at once),
activate, roll back."""

from __future__ import annotations

from typing import Any

from app.models import ModelVersion
from app.monitoring import drift
from app.registry.service import (
    alias_version,
    get_model,
    get_version,
    rollback_target,
    store_version,
)
from app.rollout.aliases import set_alias
from app.web.errors import APIError


def upload_version(
    name: str,
    filename: str,
    data: bytes,
    *,
    actor_id: int | None = None,
    description: str | None = None,
    notes: str = "",
    metrics: dict[str, Any] | None = None,
    sample_rows: list | None = None,
    reference: bytes | None = None,
    reference_from_sample: bool = False,
) -> ModelVersion:
    """Validate and store ``data`` as the model's next version
    (``registry.service.store_version``) with its drift reference (a CSV of
    training rows, or its stored sample); the first version of a model becomes its
    stable version."""
    version = store_version(
        name,
        filename,
        data,
        actor_id=actor_id,
        description=description,
        notes=notes,
        metrics=metrics,
        sample_rows=sample_rows,
    )
    drift.attach_reference(version, reference, reference_from_sample)
    if alias_version(version.model) is None:
        set_alias(version.model, version, "stable", reason="first version")
    return version


def activate_version(name: str, number: int, reason: str = "") -> ModelVersion:
    """Make version ``number`` the model's stable (active) version."""
    model = get_model(name)
    version = get_version(model, number)
    set_alias(model, version, "stable", reason=reason)
    return version


def rollback(name: str, reason: str = "") -> ModelVersion:
    """Make the version that was stable before the current one stable again."""
    model = get_model(name)
    target = rollback_target(model)
    if target is None:
        raise APIError(
            409,
            "nothing_to_roll_back",
            f"model '{name}' has no previous stable version that can serve",
            "model",
        )
    set_alias(model, target, "stable", reason=reason or "rollback")
    return target
