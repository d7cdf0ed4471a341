"""Compare a server's JSON answer with the answer a documentation page shows."""

from __future__ import annotations

import pytest

WILDCARD = "…"


def documented(answer, shown) -> bool:
    """``answer`` as the page shows it: "…" stands for any value; a number equals
    the shown one rounded to the decimals shown, or to 12 significant digits
    (onnxruntime picks its kernels by CPU, so the last bit can differ)."""
    if shown == WILDCARD:
        return True
    if isinstance(shown, float) and isinstance(answer, (int, float)):
        decimals = len(repr(shown).split(".")[1]) if "." in repr(shown) else 0
        return round(answer, decimals) == shown or answer == pytest.approx(
            shown, rel=1e-12, abs=1e-15
        )
    if isinstance(shown, list) and isinstance(answer, list):
        return len(answer) == len(shown) and all(map(documented, answer, shown))
    if isinstance(shown, dict) and isinstance(answer, dict):
        return answer.keys() == shown.keys() and all(
            documented(answer[k], shown[k]) for k in shown
        )
    return answer == shown and type(answer) is type(shown)
