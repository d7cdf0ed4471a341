"""Before a version may serve: load it here and predict its own stored sample."""

from __future__ import annotations

import numpy as np

from app.errors import APIError
from app.models import ModelVersion


def smoke_test(version: ModelVersion) -> None:
    """Raise 409 ``smoke_test_failed`` unless the version loads and reproduces its sample."""
    from app.serving.state import serving_state

    label = f"version {version.number}"
    try:
        loaded = serving_state().load(version.sha256, version.input_schema,
                                      version.file_format, version.id)
        rows = np.asarray(version.sample["rows"], dtype=np.float64)
        labels, probabilities = loaded.predict(rows)
    except APIError as exc:
        raise APIError(409, "smoke_test_failed",
                       f"{label} cannot be loaded: {exc.message}", "version") from exc
    except Exception as exc:  # any failure to predict blocks activation
        raise APIError(409, "smoke_test_failed",
                       f"{label} failed to predict its sample: {exc}", "version") from exc
    expected = version.sample["predictions"]
    if version.input_schema["task"] == "regression":
        same = np.allclose(np.asarray(labels, dtype=float), expected, rtol=1e-6)
    else:
        same = np.asarray(labels).tolist() == expected
    if same and probabilities is not None and version.sample.get("probabilities"):
        same = np.allclose(probabilities, version.sample["probabilities"], atol=1e-6)
    if not same:
        raise APIError(409, "smoke_test_failed",
                       f"{label} no longer reproduces the predictions recorded at "
                       "upload on its own sample; it cannot serve", "version")
