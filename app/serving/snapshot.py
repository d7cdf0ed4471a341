"""A per-worker snapshot of what each model serves, refreshed when the change
counter moves (and re-checked before a 404)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError

from app.extensions import db
from app.models import DriftReference, MLModel, ModelAlias, ModelVersion
from app.observability.reference import BinSpec
from app.registry import changes
from app.registry.runtime import effective_runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionInfo:
    """What serving needs to know about a version (never its bytes)."""

    id: int
    number: int
    status: str
    sha256: str
    file_format: str
    schema: dict[str, Any]
    runtime: str = "sklearn"  # "onnx" or "sklearn": what answers, decided per version
    onnx_sha256: str | None = None
    # The reference bins of its inputs, for the drift sketch (None: no reference).
    drift: BinSpec | None = None


@dataclass(frozen=True)
class ModelInfo:
    """A model, its versions by number and its aliases (alias → (number, weight))."""

    id: int
    name: str
    task: str
    versions: dict[int, VersionInfo]
    aliases: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The model's own micro-batching settings; None inherits the deployment's.
    batch_max_rows: int | None = None
    batch_max_wait_ms: float | None = None
    # The model's own prediction deadline; None inherits the deployment's.
    predict_timeout_seconds: float | None = None

    def alias_version(self, alias: str) -> VersionInfo | None:
        entry = self.aliases.get(alias)
        return None if entry is None else self.versions.get(entry[0])


@dataclass(frozen=True)
class Snapshot:
    generation: int
    models: dict[str, ModelInfo]


class Routing:
    """Holds the snapshot this worker routes with.

    With ``refresh_seconds`` > 0 a daemon thread in each worker process polls the
    change counter that often; on a change it loads the new snapshot, warms every
    aliased version, and only then swaps it in, so requests never wait for a
    database read or a model load. With 0 (tests) every call checks the counter.
    """

    def __init__(self, app: Flask, refresh_seconds: float):
        self.app = app
        self.refresh_seconds = refresh_seconds
        self.warm: Callable[[Snapshot], None] = lambda snapshot: None
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._watcher_pid: int | None = None

    def snapshot(self) -> Snapshot:
        """Return the snapshot to route this request with."""
        snap = self._snapshot
        if (
            snap is not None
            and self.refresh_seconds > 0
            and self._watcher_pid == os.getpid()
        ):
            return snap  # this process's watcher keeps it fresh
        with self._lock:
            # A forked worker may inherit a snapshot loaded before the fork (gunicorn
            # preload, worker restarts): check it once before serving from it.
            generation = changes.current()
            if self._snapshot is None or self._snapshot.generation != generation:
                self._swap(_load_snapshot(generation))
            snap = self._snapshot
        if self.refresh_seconds > 0:
            self._ensure_watcher()
        return snap

    def recheck(self, seen: Snapshot) -> Snapshot | None:
        """Check the change counter now; return a snapshot newer than ``seen``, or None.

        For a name this worker does not know (yet): another worker may have just
        created it, and its caller should not get a 404 for up to
        ``refresh_seconds`` (read-your-writes). With the database away, None.
        """
        try:
            with self._lock:
                generation = changes.current()
                if self._snapshot is None or self._snapshot.generation != generation:
                    self._swap(_load_snapshot(generation))
                current = self._snapshot
        except (OperationalError, InterfaceError) as error:
            log.info("routing recheck skipped, database unreachable: %s", error)
            _rollback()
            return None
        return current if current.generation != seen.generation else None

    def invalidate(self) -> None:
        """Reload on next use (this worker just changed something itself)."""
        with self._lock:
            self._snapshot = None

    @property
    def generation(self) -> int | None:
        return None if self._snapshot is None else self._snapshot.generation

    def _swap(self, snapshot: Snapshot) -> None:
        self.warm(snapshot)  # new versions are loaded before traffic reaches them
        self._snapshot = snapshot

    def _ensure_watcher(self) -> None:
        if self._watcher_pid == os.getpid():
            return
        with self._lock:
            if self._watcher_pid == os.getpid():
                return
            self._watcher_pid = os.getpid()  # a forked worker starts its own
            threading.Thread(
                target=self._watch, name="routing-watch", daemon=True
            ).start()

    def _watch(self) -> None:
        failing = False
        while True:
            time.sleep(self.refresh_seconds)
            try:
                with self.app.app_context():
                    self._poll()
            except Exception as error:  # database away: keep the last snapshot
                if not failing:  # once per outage, not every refresh_seconds
                    log.warning(
                        "routing refresh failed (%s: %s); serving the last "
                        "snapshot until it works again",
                        type(error).__name__,
                        str(error).splitlines()[0],
                    )
                failing = True
            else:
                if failing:
                    log.warning("routing refresh works again")
                failing = False

    def _poll(self) -> None:
        try:
            generation = changes.current()
            current = self._snapshot
            if current is None or current.generation != generation:
                snapshot = _load_snapshot(generation)
                with self._lock:
                    self._swap(snapshot)
        finally:
            db.session.remove()


def _rollback() -> None:
    try:
        db.session.rollback()
    except Exception:  # the connection is gone with the database
        db.session.remove()


def _load_snapshot(generation: int) -> Snapshot:
    references = {
        version_id: BinSpec.build(version_id, features)
        for version_id, features in db.session.execute(
            select(DriftReference.version_id, DriftReference.features)
        )
    }
    versions: dict[int, dict[int, VersionInfo]] = {}
    for v in db.session.scalars(select(ModelVersion)):
        versions.setdefault(v.model_id, {})[v.number] = VersionInfo(
            v.id,
            v.number,
            v.status,
            v.sha256,
            v.file_format,
            v.input_schema,
            effective_runtime(v),
            v.onnx_sha256,
            references.get(v.id),
        )
    number_by_id = {
        info.id: info.number for vs in versions.values() for info in vs.values()
    }
    aliases: dict[int, dict[str, tuple[int, int]]] = {}
    for a in db.session.scalars(select(ModelAlias)):
        aliases.setdefault(a.model_id, {})[a.alias] = (
            number_by_id[a.version_id],
            a.weight,
        )
    models = {
        m.name: ModelInfo(
            m.id,
            m.name,
            m.task,
            versions.get(m.id, {}),
            aliases.get(m.id, {}),
            m.batch_max_rows,
            m.batch_max_wait_ms,
            m.predict_timeout_seconds,
        )
        for m in db.session.scalars(select(MLModel))
    }
    return Snapshot(generation, models)
