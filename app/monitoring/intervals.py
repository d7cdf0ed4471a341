"""95 % confidence intervals: Wilson for proportions, Newcombe for their difference,
the normal approximation for means (mean ± z standard errors)."""

from __future__ import annotations

import math
from collections.abc import Sequence

# The two-sided 95 % normal quantile, scipy.stats.norm.ppf(0.975).
Z95 = 1.959963984540054


def estimate(value: float | None, low: float | None, high: float | None, n: int):
    """The JSON shape of every figure: its value, interval and sample size."""
    return {"value": value, "low": low, "high": high, "n": n}


def wilson(successes: int, n: int, z: float = Z95) -> dict:
    """The proportion ``successes / n`` with its Wilson score interval."""
    if n == 0:
        return estimate(None, None, None, 0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def newcombe(first: dict, second: dict) -> dict:
    """``first - second`` of two independent Wilson proportions with Newcombe's
    hybrid score interval (his method 10)."""
    if not first["n"] or not second["n"]:
        return estimate(None, None, None, 0) | {"n_first": 0, "n_second": 0}
    p1, l1, u1 = first["value"], first["low"], first["high"]
    p2, l2, u2 = second["value"], second["low"], second["high"]
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return estimate(difference, low, high, first["n"] + second["n"]) | {
        "n_first": first["n"],
        "n_second": second["n"],
    }


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample variance (n - 1) of ``values``."""
    n = len(values)
    mean = math.fsum(values) / n
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, variance


def mean(values: Sequence[float], z: float = Z95, floor: float | None = None) -> dict:
    """The mean of ``values`` with the normal-approximation interval (needs n ≥ 2);
    ``floor``: the least the mean can be (0 for losses and errors)."""
    n = len(values)
    if n == 0:
        return estimate(None, None, None, 0)
    centre, variance = mean_and_spread(values)
    if n < 2:
        return estimate(centre, None, None, n)
    half = z * math.sqrt(variance / n)
    low = centre - half if floor is None else max(floor, centre - half)
    return estimate(centre, low, centre + half, n)


def root_mean(squares: Sequence[float], z: float = Z95) -> dict:
    """RMSE from squared errors: the normal interval of their mean, square-rooted
    (the root is monotone, so the bounds carry over)."""
    inner = mean(squares, z)
    if inner["value"] is None:
        return inner
    return estimate(
        math.sqrt(inner["value"]),
        None if inner["low"] is None else math.sqrt(max(0.0, inner["low"])),
        None if inner["high"] is None else math.sqrt(inner["high"]),
        inner["n"],
    )


def difference_of_means(first: Sequence[float], second: Sequence[float]) -> dict:
    """``mean(first) - mean(second)`` with the Welch normal interval."""
    n1, n2 = len(first), len(second)
    if n1 < 2 or n2 < 2:
        return estimate(None, None, None, n1 + n2) | {"n_first": n1, "n_second": n2}
    m1, v1 = mean_and_spread(first)
    m2, v2 = mean_and_spread(second)
    half = Z95 * math.sqrt(v1 / n1 + v2 / n2)
    difference = m1 - m2
    return estimate(difference, difference - half, difference + half, n1 + n2) | {
        "n_first": n1,
        "n_second": n2,
    }
