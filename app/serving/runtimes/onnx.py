"""The in-process ONNX runtime: graphs the server converted and verified itself, made
only of operators on ``INPROCESS_OPERATORS``, answer inside the web worker, with a
watchdog that stops runs past their deadline.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from app.registry.errors import ModelFileError
from app.registry.onnx_graph import OnnxModel
from app.serving.runtimes.base import PredictionFailed, PredictionTimeout, Runtime, log

# Operators a graph may use to run inside a web worker: what skl2onnx emits for
# linear models, trees, scalers and pipelines. No control flow (Loop, Scan, If),
# and no operator whose output size comes from input *values* (ConstantOfShape,
# Range, Expand, Tile, Resize, Pad, OneHot, NonZero, TopK, ...): each output here is
# bounded by the input's own size and the graph's constants.
INPROCESS_OPERATORS = frozenset(
    {
        "Abs",
        "Add",
        "ArgMax",
        "ArgMin",
        "Cast",
        "Clip",
        "Concat",
        "Div",
        "Equal",
        "Exp",
        "Flatten",
        "Gemm",
        "Greater",
        "Identity",
        "Less",
        "Log",
        "MatMul",
        "Max",
        "Min",
        "Mul",
        "Neg",
        "Not",
        "Reciprocal",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceSum",
        "Relu",
        "Shape",
        "Sigmoid",
        "Softmax",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Sum",
        "Tanh",
        "Transpose",
        "Unsqueeze",
        "Where",
        # ai.onnx.ml
        "ArrayFeatureExtractor",
        "Binarizer",
        "Imputer",
        "LabelEncoder",
        "LinearClassifier",
        "LinearRegressor",
        "Normalizer",
        "Scaler",
        "TreeEnsembleClassifier",
        "TreeEnsembleRegressor",
        "TreeEnsemble",
        "ZipMap",
    }
)
# Operators allowed only when their shape input is a constant of the graph.
SHAPED_BY_CONSTANT = {"Reshape": 1}


def inprocess_refusal(model) -> str | None:
    """Why ``model`` may not run in a web worker, or None when it may."""
    constants = {t.name for t in model.graph.initializer}
    constants.update(
        o for n in model.graph.node if n.op_type == "Constant" for o in n.output
    )
    if model.functions:
        return "the graph defines its own functions"
    refused = set()
    for node in model.graph.node:
        if node.op_type in SHAPED_BY_CONSTANT:
            index = SHAPED_BY_CONSTANT[node.op_type]
            if len(node.input) > index and node.input[index] not in constants:
                refused.add(f"{node.op_type} (shape from the input)")
        elif node.op_type not in INPROCESS_OPERATORS:
            refused.add(node.op_type)
    if refused:
        return (
            f"operators not on the in-process allowlist: {', '.join(sorted(refused))}"
        )
    return None


class Watchdog:
    """Terminates onnxruntime runs that pass their deadline (one thread a worker).

    ``RunOptions.terminate`` is checked by onnxruntime between operators. Each
    request thread keeps one ``RunOptions`` and posts its deadline in a dict (plain
    assignments, atomic under the GIL: no lock on the request path); the thread
    scans the dict a few times a second and sleeps on an event when nothing runs.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self._runs: dict[int, tuple[float, Any]] = {}
        self._local = threading.local()
        self._wake = threading.Event()
        self._sleeping = True
        self._pid: int | None = None

    def options(self):
        """This thread's RunOptions, ready for a new run."""
        options = getattr(self._local, "options", None)
        if options is None:
            import onnxruntime

            options = self._local.options = onnxruntime.RunOptions()
        options.terminate = False
        return options

    def watch(self, options, deadline: float) -> None:
        self._runs[threading.get_ident()] = (deadline, options)
        if self._sleeping:
            if self._pid != os.getpid():  # none yet, or this worker was forked
                self._pid = os.getpid()
                threading.Thread(
                    target=self._loop, name="onnx-deadlines", daemon=True
                ).start()
            self._wake.set()

    def done(self) -> None:
        self._runs.pop(threading.get_ident(), None)

    def _loop(self) -> None:
        while True:
            self._sleeping = True
            if not self._runs:  # a run posted while we were still awake is seen here
                self._wake.wait()
            self._wake.clear()
            self._sleeping = False
            while self._runs:
                now = time.monotonic()
                for key, (deadline, options) in list(self._runs.items()):
                    if now >= deadline:
                        options.terminate = True
                        self._runs.pop(key, None)
                time.sleep(self.interval)


WATCHDOG = Watchdog()


class InProcessOnnx(Runtime):
    """A verified, allowlisted graph run by onnxruntime inside the web worker."""

    kind = "in-process onnxruntime"

    def __init__(self, sha256: str, data: bytes, schema: dict[str, Any]):
        super().__init__(sha256, schema, footprint=2 * len(data))
        self.graph = OnnxModel(data, schema)
        refusal = inprocess_refusal(self.graph.proto)
        self.graph.proto = None  # checked; the session holds what it needs
        if refusal:
            raise ModelFileError(f"not for in-process serving: {refusal}")

    def predict(self, rows: np.ndarray, deadline: float | None = None):
        if deadline is None:
            return self._run(rows, None)
        options = WATCHDOG.options()
        WATCHDOG.watch(options, deadline)
        try:
            return self._run(rows, options)
        finally:
            WATCHDOG.done()

    def _run(self, rows, options):
        try:
            return self.graph.predict(rows, options)
        except Exception as exc:
            if options is not None and options.terminate:
                raise PredictionTimeout() from exc
            log.warning("onnxruntime failed on %d rows: %s", len(rows), exc)
            raise PredictionFailed() from exc

    def close(self) -> None:
        """Nothing to stop: the session is freed with this object (a request still
        predicting with it finishes)."""
