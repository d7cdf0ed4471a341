"""What the calls return: frozen dataclasses read from the server's JSON answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """``POST /api/v1/models/<name>/predict``: one prediction per row."""

    model: str
    version: int
    predictions: list[Any]
    classes: list[Any] | None = None  # classifiers only
    probabilities: list[list[float]] | None = None  # classifiers that have them
    request_id: str | None = None
    attempts: int = 1  # requests sent for this call, retries included


@dataclass(frozen=True)
class Probabilities:
    """``predict_proba``: per row, one probability per class (in ``classes``)."""

    model: str
    version: int
    classes: list[Any]
    probabilities: list[list[float]]
    predictions: list[Any]
    request_id: str | None = None
    attempts: int = 1


@dataclass(frozen=True)
class Explanation:
    """``POST /api/v1/models/<name>/explain``: the server's answer as it came in
    ``body``; ``model``, ``version`` and ``request_id`` are read out of it."""

    model: str
    version: int | None
    body: dict[str, Any]
    request_id: str | None = None
    attempts: int = 1


@dataclass(frozen=True)
class ModelInfo:
    """One entry of ``GET /api/v1/models``."""

    name: str
    task: str | None
    active_version: int | None
    versions: list[int]
    description: str | None = None
    aliases: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
