"""Read-only look-ups in the routing snapshot for the protocols' status routes."""

from __future__ import annotations

from app.serving.snapshot import ModelInfo, VersionInfo
from app.serving.state import serving_state
from app.web.errors import APIError


def find_model(name: str) -> ModelInfo:
    """Return the model called ``name`` from this worker's snapshot, or raise a 404."""
    model = serving_state().routing.snapshot().models.get(name)
    if model is None:
        raise APIError(404, "model_not_found", f"no model named '{name}'", "model")
    return model


def find_version(model: ModelInfo, number: int) -> VersionInfo:
    """Return version ``number`` (archived ones too), or raise a 404."""
    version = model.versions.get(number)
    if version is None:
        raise APIError(
            404,
            "version_not_found",
            f"model '{model.name}' has no version {number}",
            "version",
        )
    return version
