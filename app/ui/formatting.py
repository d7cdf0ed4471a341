"""Jinja filters for dates, sizes and numbers, installed by the factory."""

from __future__ import annotations

from datetime import datetime

from flask import Flask


def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """A UTC datetime as text (to the second by default), or a dash. Pages pass
    datetimes, never ISO strings to cut."""
    return value.strftime(fmt) if value else "—"


def size(value: int | None) -> str:
    """Bytes in B, KB or MB."""
    if value is None:
        return "—"
    for unit in ("B", "KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def number(value, digits: int = 4) -> str:
    """Floats with ``digits`` significant digits; everything else as text."""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "—" if value is None else str(value)


def cell(value: str, decimals: int | None = None) -> str:
    """A numeric result cell shortened for reading (downloads keep full precision)."""
    try:
        number_value = float(value)
    except (TypeError, ValueError):
        return value
    if value.lstrip("+-").isdigit():
        return value
    return f"{number_value:.{decimals}f}" if decimals else f"{number_value:.6g}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def install(app: Flask) -> None:
    app.add_template_filter(when, "when")
    app.add_template_filter(size, "size")
    app.add_template_filter(number, "num")
    app.add_template_filter(percent, "pct")
    app.add_template_filter(cell, "cell")
