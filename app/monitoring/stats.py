"""The statistics of drift: population stability index and two-sample tests."""

from __future__ import annotations

import numpy as np
from scipy import special, stats

EPSILON = 1e-4  # the share given to an empty bin, so that PSI stays finite
PSI_WATCH = 0.1  # below: no meaningful change
PSI_DRIFT = 0.2  # above: a significant shift
P_DRIFT = 0.01
MIN_ROWS = 30  # fewer live rows in a window: no verdict


def psi(reference: np.ndarray, live: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    expected = np.clip(reference / max(reference.sum(), 1), EPSILON, None)
    actual = np.clip(live / max(live.sum(), 1), EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def chi_square(reference: np.ndarray, live: np.ndarray) -> float | None:
    """p-value of a chi-square test that both counts come from one distribution.

    Pearson's statistic on the 2 × bins table, as ``scipy.stats.chi2_contingency``
    without correction computes it, in a few numpy operations: scipy's function
    took 150 µs a feature, and every worker recomputes 30 features × 2 windows of
    each version after its sketch flushes."""
    table = np.vstack([reference, live]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or live.sum() == 0:
        return None if live.sum() == 0 else 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = ((table - expected) ** 2 / expected).sum()
    return float(special.chdtrc(table.shape[1] - 1, statistic))


def ks(reference: np.ndarray, live: np.ndarray) -> float | None:
    """p-value of the two-sample Kolmogorov–Smirnov test on raw values."""
    reference, live = reference[~np.isnan(reference)], live[~np.isnan(live)]
    if len(reference) == 0 or len(live) == 0:
        return None
    return float(stats.ks_2samp(reference, live).pvalue)


def verdict(psi_value: float, pvalue: float | None, rows: int) -> str:
    """drift, watch, stable, or too_few_rows to tell."""
    if rows < MIN_ROWS:
        return "too_few_rows"
    significant = pvalue is not None and pvalue < P_DRIFT
    if psi_value >= PSI_DRIFT and significant:
        return "drift"
    if psi_value >= PSI_WATCH or significant:
        return "watch"
    return "stable"
