"""What isolation costs per call: the same model and row, in-process vs across the
process boundary, and in-process onnxruntime with and without its deadline watchdog.

``python benchmarks/isolation.py`` prints one table measured in one run: mean
microseconds per call (median of 5 rounds) and the ratio to the in-process call.
"""

from __future__ import annotations

import hashlib
import io
import statistics
import sys
import time
from pathlib import Path

import joblib
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.registry.onnx_compile import convert  # noqa: E402
from app.registry.schema import derive_schema  # noqa: E402
from app.serving.runtimes.isolated import IsolatedRuntime  # noqa: E402
from app.serving.runtimes.onnx import InProcessOnnx  # noqa: E402
from app.serving.runtimes.predictor import Predictor  # noqa: E402
from benchmarks.serving import train  # noqa: E402

ROUNDS, CALLS = 5, 400


def per_call_us(predict, rows) -> float:
    """Median over rounds of the mean wall time of ``predict(rows)``, in µs."""
    predict(rows)
    means = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            predict(rows)
        means.append((time.perf_counter() - started) / CALLS * 1e6)
    return statistics.median(means)


def main() -> int:
    X, models, _ = train()
    table = []
    for name, estimator in models.items():
        buffer = io.BytesIO()
        joblib.dump(estimator, buffer)
        data = buffer.getvalue()
        schema = derive_schema(estimator)
        sha = hashlib.sha256(data).hexdigest()
        local = Predictor(data, "joblib", schema)
        isolated = IsolatedRuntime(sha, data, "joblib", schema)
        graph = convert(estimator, schema, "float" if name == "forest" else "double")
        onnx = InProcessOnnx(sha, graph, schema)
        try:
            for rows in (1, 100):
                batch = np.ascontiguousarray(X[:rows])
                base = per_call_us(local.predict, batch)
                far = per_call_us(
                    lambda r, run=isolated: run.predict(r, time.monotonic() + 10), batch
                )
                bare = per_call_us(onnx.predict, batch)
                timed = per_call_us(
                    lambda r, run=onnx: run.predict(r, time.monotonic() + 10), batch
                )
                table.append((name, rows, base, far, bare, timed))
        finally:
            isolated.close()
    print(
        "model     rows  sklearn in-process  sklearn isolated  boundary  ratio"
        "   onnx  onnx+deadline  ratio"
    )
    for name, rows, base, far, bare, timed in table:
        print(
            f"{name:9} {rows:>4}  {base:15.1f} us  {far:13.1f} us  "
            f"{far - base:+6.1f} us  {far / base:5.2f}  {bare:5.1f}  "
            f"{timed:10.1f} us  {timed / bare:5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
