"""Read-only look-ups in the routing snapshot: the protocols' status routes, the
default model."""

from __future__ import annotations

from flask import current_app

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


def default_model_name() -> str:
    """The model of the routes without a model name (``POST /predict``, MLflow's
    ``/invocations``): ``MODELDOCK_DEFAULT_MODEL`` when set, else the only model
    served; with none or several and no setting, a 404 that says what to do."""
    configured = current_app.config["MODELDOCK_DEFAULT_MODEL"]
    if configured:
        return configured
    routing = serving_state().routing
    snapshot = routing.snapshot()
    if len(snapshot.models) != 1:  # one may just have been added or archived
        snapshot = routing.recheck(snapshot) or snapshot
    names = sorted(snapshot.models)
    if len(names) == 1:
        return names[0]
    detail = (
        "no model is served yet"
        if not names
        else f"{len(names)} models are served ({', '.join(names[:5])}"
        + (", …)" if len(names) > 5 else ")")
    )
    raise APIError(
        404,
        "no_default_model",
        f"no default model: {detail}; set MODELDOCK_DEFAULT_MODEL or name the "
        "model in the URL",
        "model",
    )
