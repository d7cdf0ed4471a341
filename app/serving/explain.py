"""Explanations: per-feature contributions of a version's answer for some rows.

The estimator is asked in its inference processes (``runtimes.explainer`` runs
there), never in the web worker; versions served from an ONNX graph are explained
by their scikit-learn artifact. The model's prediction deadline applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flask import g

from app.serving.runtimes.base import Explained
from app.serving.snapshot import ModelInfo, VersionInfo
from app.serving.state import serving_state


@dataclass
class Explanation:
    """The contributions for one request, before a codec or a page shapes them."""

    model: ModelInfo
    version: VersionInfo
    result: Explained


def run(model: ModelInfo, version: VersionInfo, rows: np.ndarray) -> Explanation:
    """Explain validated ``rows`` with ``version`` under the model's deadline."""
    g.log_rows = len(rows)
    state = serving_state()
    # A version served from its ONNX graph may load its estimator now: the load
    # has its own limit, and the deadline covers the explanation itself.
    runtime = state.load_estimator(version)
    deadline = state.deadline_for(model)
    return Explanation(model, version, runtime.explain(rows, deadline))
