"""JSON responses: orjson on the prediction path, numpy arrays encoded natively.

NaN and ±infinity are not JSON: every response writes them as ``null`` (what
orjson, TensorFlow Serving and most JSON APIs do), whether it goes through
``json_response`` or Flask's ``jsonify`` (``FiniteJSONProvider``); JSON columns in
the database are written the same way (``json_text``), which PostgreSQL requires.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

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
    return Response(
        orjson.dumps(body, default=_default, option=OPTIONS),
        status=status,
        mimetype="application/json",
    )


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (nested too) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


class FiniteJSONProvider(DefaultJSONProvider):
    """Flask's JSON, but NaN and ±infinity become ``null`` instead of bare tokens."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            return super().dumps(obj, allow_nan=False, **kwargs)
        except ValueError:  # only when a non-finite float is in there: rare
            return super().dumps(finite(obj), **kwargs)


def json_text(value: Any) -> str:
    """JSON text of ``value`` with NaN and ±infinity as null (for JSON columns)."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(finite(value))
