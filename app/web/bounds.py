"""Whole numbers from URLs, query strings and JSON bodies, within what columns hold.

Every id and version number is an INTEGER column (32 bits on PostgreSQL, and
SQLite refuses Python ints past 64 bits), so a number outside that range names
nothing that can exist: it is refused before it reaches a query.
"""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter, ValidationError

from app.web.errors import APIError

MAX_ID = 2**31 - 1  # the largest INTEGER on PostgreSQL


def whole_number(raw: str, low: int = 0, high: int = MAX_ID) -> int | None:
    """``raw`` as an int in ``low..high``, or None for anything else (ASCII digits)."""
    raw = raw.strip()
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return None
    value = int(raw)
    return value if low <= value <= high else None


def json_whole_number(body: dict, name: str, low: int = 0, high: int = MAX_ID) -> int:
    """``body[name]`` as an int in ``low..high``; 400 ``invalid_<name>`` otherwise."""
    value = body.get(name)
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not low <= value <= high
    ):
        raise APIError(
            400,
            f"invalid_{name}",
            f"'{name}' must be a whole number from {low} to {high}",
            name,
        )
    return value


# What a path variable numbers, for the 404's code and message: ``version_not_found``.
NOUNS = {"number": "version", "user_id": "user", "key_id": "key"}


class OutOfRange(NotFound):
    """A 404 for a number no row can have, with the code a missing row would get."""

    def __init__(self, variable: str, value: str, high: int) -> None:
        noun = NOUNS.get(variable, variable)
        shown = value if len(value) <= 24 else value[:20] + "…"
        super().__init__(f"there is no {noun} {shown}: {noun} numbers go up to {high}")
        self.api_code, self.field = f"{noun}_not_found", noun


class BoundedIntConverter(IntegerConverter):
    """``<int:…>`` in URLs: a number past ``MAX_ID`` is a readable 404, not a 500."""

    variable = "number"  # set per rule by ``name_converters``

    def __init__(
        self,
        map,
        fixed_digits: int = 0,
        min: int | None = 0,  # noqa: A002
        max: int | None = MAX_ID,
        signed: bool = False,
    ) -> None:  # noqa: A002
        super().__init__(map, fixed_digits, min, max, signed)

    def to_python(self, value: str) -> Any:
        try:
            return super().to_python(value)
        except ValidationError:
            raise OutOfRange(self.variable, value, self.max) from None


def name_converters(url_map) -> None:
    """Tell each bounded converter which variable it reads (for its 404 message)."""
    for rule in url_map.iter_rules():
        for variable, converter in rule._converters.items():
            if isinstance(converter, BoundedIntConverter):
                converter.variable = variable
