"""A per-worker snapshot of what each model serves, refreshed when the change counter moves."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app import changes
from app.extensions import db
from app.models import MLModel, ModelAlias, ModelVersion

log = logging.getLogger(__name__)


def _rollback() -> None:
    try:
        db.session.rollback()
    except SQLAlchemyError:
        db.session.remove()


@dataclass(frozen=True)
class VersionInfo:
    """What serving needs to know about a version (never its bytes)."""

    id: int
    number: int
    status: str
    sha256: str
    file_format: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class ModelInfo:
    """A model, its versions by number and its aliases (alias → (number, weight))."""

    id: int
    name: str
    task: str
    versions: dict[int, VersionInfo]
    aliases: dict[str, tuple[int, int]] = field(default_factory=dict)

    def alias_version(self, alias: str) -> VersionInfo | None:
        entry = self.aliases.get(alias)
        return None if entry is None else self.versions.get(entry[0])


@dataclass(frozen=True)
class Snapshot:
    generation: int
    models: dict[str, ModelInfo]


class Routing:
    """Holds the snapshot; checks the counter at most every ``refresh_seconds``."""

    def __init__(self, refresh_seconds: float):
        self.refresh_seconds = refresh_seconds
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        """Return the current snapshot, reloading it if another worker changed it."""
        now = time.monotonic()
        snap = self._snapshot
        if snap is not None and now - self._checked_at < self.refresh_seconds:
            return snap
        with self._lock:
            if self._snapshot is not None and now - self._checked_at < self.refresh_seconds:
                return self._snapshot
            try:
                generation = changes.current()
                if self._snapshot is None or self._snapshot.generation != generation:
                    self._snapshot = _load_snapshot(generation)
            except SQLAlchemyError:
                if self._snapshot is None:
                    raise  # nothing to serve from: the 503 handler answers
                # The database is away: keep serving what we know, retry later.
                log.warning("routing refresh failed; serving generation %s",
                            self._snapshot.generation, exc_info=True)
                _rollback()
            self._checked_at = now
            return self._snapshot

    def invalidate(self) -> None:
        """Force a reload on next use (after this worker changed something)."""
        with self._lock:
            self._snapshot = None

    @property
    def generation(self) -> int | None:
        return None if self._snapshot is None else self._snapshot.generation


def _load_snapshot(generation: int) -> Snapshot:
    versions: dict[int, dict[int, VersionInfo]] = {}
    for v in db.session.scalars(select(ModelVersion)):
        versions.setdefault(v.model_id, {})[v.number] = VersionInfo(
            v.id, v.number, v.status, v.sha256, v.file_format, v.input_schema)
    number_by_id = {info.id: info.number for vs in versions.values()
                    for info in vs.values()}
    aliases: dict[int, dict[str, tuple[int, int]]] = {}
    for a in db.session.scalars(select(ModelAlias)):
        aliases.setdefault(a.model_id, {})[a.alias] = (number_by_id[a.version_id],
                                                       a.weight)
    models = {
        m.name: ModelInfo(m.id, m.name, m.task, versions.get(m.id, {}),
                          aliases.get(m.id, {}))
        for m in db.session.scalars(select(MLModel))
    }
    return Snapshot(generation, models)
