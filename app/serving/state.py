"""The serving state of one worker: routing snapshot, loaded models, shadow runner."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from app.registry.artifacts import artifact_bytes
from app.registry.cache import LoadedModel, ModelCache
from app.serving.routing import Routing, Snapshot
from app.serving.shadow import ShadowRunner

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    routing: Routing
    models: ModelCache
    shadow: ShadowRunner

    def load(self, sha256: str, schema: dict[str, Any], file_format: str,
             version_id: int) -> LoadedModel:
        """Return a loaded model; its bytes are read from the database only on a miss."""
        return self.models.get(sha256, schema, file_format,
                               lambda: artifact_bytes(version_id))

    def warm(self, snapshot: Snapshot) -> None:
        """Load every version an alias points to, before the snapshot routes traffic."""
        for model in snapshot.models.values():
            for alias in model.aliases:
                version = model.alias_version(alias)
                try:
                    self.load(version.sha256, version.schema, version.file_format,
                              version.id)
                except Exception:  # the request will report it; keep warming others
                    log.exception("could not warm %s v%s", model.name, version.number)


def init_app(app: Flask) -> None:
    """Create this app's serving state (kept in ``app.extensions`` like any extension)."""
    state = ServingState(
        routing=Routing(app, app.config["MODELDOCK_ROUTING_REFRESH_SECONDS"]),
        models=ModelCache(app.config["MODELDOCK_MODEL_CACHE_SIZE"],
                          app.config["MODELDOCK_TRUSTED_MODULES"]),
        shadow=ShadowRunner(app),
    )
    state.routing.warm = state.warm
    app.extensions["modeldock"] = state


def serving_state() -> ServingState:
    """Return the current app's serving state."""
    return current_app.extensions["modeldock"]
