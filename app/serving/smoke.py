"""Before a version may serve: load it here and predict its own stored sample."""

from __future__ import annotations

import numpy as np

from app.models import ModelVersion
from app.registry.onnx_compile import PROBA_ATOL, REGRESSION_ATOL, REGRESSION_RTOL
from app.registry.runtime import effective_runtime
from app.serving.state import serving_state
from app.web.errors import APIError


def smoke_test(version: ModelVersion) -> None:
    """Raise 409 ``smoke_test_failed`` unless the version loads and reproduces its
    sample."""
    label = f"version {version.number}"
    state = serving_state()
    try:
        loaded = state.load(
            version.sha256,
            version.input_schema,
            version.file_format,
            version.id,
            effective_runtime(version),
            version.onnx_sha256,
        )
        rows = np.asarray(version.sample["rows"], dtype=np.float64)
        labels, probabilities = loaded.predict(rows, state.deadline_for(None))
    except APIError as exc:
        raise APIError(
            409, "smoke_test_failed", f"{label} cannot serve: {exc.message}", "version"
        ) from exc
    # The same contract as the ONNX verification at upload: identical labels,
    # probabilities within 1e-5 absolute, regression within 1e-5 relative.
    expected = version.sample["predictions"]
    if version.input_schema["task"] == "regression":
        same = np.allclose(
            np.asarray(labels, dtype=float),
            expected,
            rtol=REGRESSION_RTOL,
            atol=REGRESSION_ATOL,
        )
    else:
        same = np.asarray(labels).tolist() == expected
    if same and probabilities is not None and version.sample.get("probabilities"):
        same = np.allclose(
            probabilities, version.sample["probabilities"], rtol=0.0, atol=PROBA_ATOL
        )
    if not same:
        raise APIError(
            409,
            "smoke_test_failed",
            f"{label} no longer reproduces the predictions recorded at "
            "upload on its own sample; it cannot serve",
            "version",
        )
