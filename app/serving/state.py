"""The serving state of one worker: routing snapshot and loaded-model cache."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from app.registry.cache import ModelCache
from app.serving.routing import Routing


@dataclass
class ServingState:
    routing: Routing
    models: ModelCache


def init_app(app: Flask) -> None:
    """Create this app's serving state (kept in ``app.extensions`` like any extension)."""
    app.extensions["modeldock"] = ServingState(
        routing=Routing(app.config["MODELDOCK_ROUTING_REFRESH_SECONDS"]),
        models=ModelCache(app.config["MODELDOCK_MODEL_CACHE_SIZE"],
                          app.config["MODELDOCK_TRUSTED_MODULES"]),
    )


def serving_state() -> ServingState:
    """Return the current app's serving state."""
    return current_app.extensions["modeldock"]
