"""ONNX graphs read from bytes only: checked, then opened by onnxruntime with one
thread.

``OnnxModel`` is used in the validation sandbox, in inference processes and, behind
``app.serving.runtimes.onnx.InProcessOnnx``, in the web worker. A graph is refused
if any tensor in it points to external data (a path the server would read), and
checked with ``onnx.checker`` before onnxruntime sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from app.registry.errors import ModelFileError

ONNX_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}
LABEL_TYPES = {"tensor(int64)", "tensor(int32)", "tensor(string)", "tensor(bool)"}


def _tensors(graph) -> Iterator[Any]:
    """Every tensor of a graph: initializers, sparse ones, attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes) -> Iterator[Any]:
    for node in nodes:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices
            for sparse in attribute.sparse_tensors:
                yield sparse.values
                yield sparse.indices
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def references_external_data(model) -> bool:
    """True when any tensor of ``model`` keeps its data outside the file."""
    from onnx import TensorProto

    tensors = _tensors(model.graph)
    functions = (t for f in model.functions for t in _node_tensors(f.node))
    for tensor in (*tensors, *functions):
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
            return True
    return False


def check_onnx_bytes(data: bytes):
    """Parse and check an ONNX file; refuse external data and invalid graphs."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"cannot read the ONNX file ({type(exc).__name__})"
        ) from exc
    if references_external_data(model):
        raise ModelFileError(
            "the ONNX file references external data (tensors stored in other files); "
            "the server never reads paths named by a model: save it with the data "
            "inside the file",
            code="onnx_external_data",
        )
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise ModelFileError(
            "the ONNX graph is not valid (onnx.checker refused it)"
        ) from exc
    return model


def class_labels(model) -> list | None:
    """Classes named by the graph: ZipMap's, else the first classifier node's."""
    found = None
    for node in model.graph.node:
        for attribute in node.attribute:
            if (
                attribute.name in ("classlabels_int64s", "classlabels_ints")
                and attribute.ints
            ):
                labels = [int(v) for v in attribute.ints]
            elif attribute.name == "classlabels_strings" and attribute.strings:
                labels = [v.decode("utf-8") for v in attribute.strings]
            else:
                continue
            if node.op_type == "ZipMap":
                return labels
            found = found or labels
    return found


def new_session(data: bytes):
    """An InferenceSession on bytes: one intra-op thread, no spinning, no arena."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One thread per worker: gunicorn workers are the parallelism, and threads
    # inside each would fight over the same few cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = False  # keeps a loaded graph's memory small
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        data, options, providers=["CPUExecutionProvider"]
    )


class OnnxModel:
    """A checked ONNX graph and the facts needed to call it, found once at load."""

    runtime = "onnx"

    def __init__(self, data: bytes, schema: dict[str, Any] | None = None):
        model = check_onnx_bytes(data)
        self.proto = model
        self.graph_classes = class_labels(model)
        try:
            self.session = new_session(data)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelFileError(
                f"onnxruntime cannot load the graph ({type(exc).__name__})"
            ) from exc
        inputs = self.session.get_inputs()
        if (
            len(inputs) != 1
            or inputs[0].type not in ONNX_INPUT_TYPES
            or len(inputs[0].shape) != 2
            or not isinstance(inputs[0].shape[1], int)
        ):
            raise ModelFileError(
                "ModelDock serves ONNX graphs with exactly one input: a 2-D float or "
                "double tensor [batch, n_features] with a fixed number of features"
            )
        self.input_name = inputs[0].name
        self.dtype = ONNX_INPUT_TYPES[inputs[0].type]
        self.n_features = int(inputs[0].shape[1])
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.label_index = 0
        self.proba_index = self._find_probabilities(outputs)
        self.zipmap = self.proba_index is not None and outputs[
            self.proba_index
        ].type.startswith("seq(")
        self.classifier = (
            self.graph_classes is not None and outputs[0].type in LABEL_TYPES
        )
        self.schema = schema or self.derive_schema()
        self._label_map = self._make_label_map(self.schema.get("classes"))

    def _find_probabilities(self, outputs) -> int | None:
        for i, output in enumerate(outputs[1:], start=1):
            if output.type.startswith("seq(map(") or (
                output.type in ("tensor(float)", "tensor(double)")
                and len(output.shape) == 2
            ):
                return i
        return None

    def derive_schema(self) -> dict[str, Any]:
        """The input schema of an uploaded graph: features from its input shape."""
        classes = self.graph_classes if self.classifier else None
        first = self.session.get_outputs()[0]
        regression = classes is None and first.type in (
            "tensor(float)",
            "tensor(double)",
        )
        return {
            "estimator": "ONNX graph",
            "allow_nan": False,
            "n_features": self.n_features,
            "feature_names": [f"x{i}" for i in range(self.n_features)],
            "named_features": False,
            "task": "classification"
            if classes
            else "regression"
            if regression
            else "other",
            "classes": classes,
            "has_proba": bool(classes) and self.proba_index is not None,
        }

    def _make_label_map(self, classes: list | None):
        """Map the graph's labels onto the schema's classes when their types differ
        (skl2onnx stores 0.0/1.0 classes as int64, booleans as integers)."""
        if (
            not classes
            or self.graph_classes is None
            or self.graph_classes == classes
            or len(self.graph_classes) != len(classes)
        ):
            return None
        order = np.argsort(np.asarray(self.graph_classes))
        return np.asarray(self.graph_classes)[order], np.asarray(classes)[order]

    def predict(self, rows: np.ndarray, run_options=None):
        """Return (labels, probabilities or None) for a float matrix."""
        feed = rows if rows.dtype == self.dtype else rows.astype(self.dtype)
        outputs = self.session.run(
            self.output_names, {self.input_name: feed}, run_options
        )
        labels = outputs[self.label_index]
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.ravel()
        if self._label_map is not None:
            known, mapped = self._label_map
            labels = mapped[np.searchsorted(known, labels)]
        probabilities = None
        if self.schema.get("has_proba") and self.proba_index is not None:
            probabilities = outputs[self.proba_index]
            if self.zipmap:  # a list of {class: probability} per row
                classes = self.graph_classes
                probabilities = np.array(
                    [[row[c] for c in classes] for row in probabilities]
                )
        return labels, probabilities
