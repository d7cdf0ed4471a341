"""JSON responses on the prediction path: orjson, numpy arrays encoded natively."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from flask import Response

OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    """What orjson cannot encode itself: object arrays (string labels), scalars."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON response encoded by orjson (single-precision floats keep their shortest
    form, so a float32 probability 0.99 is sent as 0.99)."""
    return Response(orjson.dumps(body, default=_default, option=OPTIONS),
                    status=status, mimetype="application/json")
