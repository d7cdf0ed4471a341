"""Defence in depth at upload: check the *state* of a loaded estimator.

The restricted unpickler decides which classes a file may name; it cannot see
what their state will do. Inside the validation sandbox, before the first
prediction, this walks every object the estimator holds and refuses:

- trees (``sklearn.tree._tree.Tree`` and HistGradientBoosting ``TreePredictor``)
  whose children are out of range or point backwards (a cycle), whose feature
  indices are out of range, or whose thresholds are not finite;
- parameters that do I/O: text vectorizers with ``input`` other than ``"content"``;
- callables other than a short list of pure numpy functions;
- method-name strings (stacking's ``stack_method_``) outside the known set.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import numpy as np

from app.registry.errors import ModelFileError

PURE_FUNCTIONS = frozenset(
    id(f)
    for f in (
        np.abs,
        np.exp,
        np.expm1,
        np.log,
        np.log1p,
        np.sqrt,
        np.square,
        np.sign,
        np.clip,
        np.tanh,
        np.negative,
        np.reciprocal,
    )
)
STACK_METHODS = frozenset({"predict", "predict_proba", "decision_function"})
MAX_OBJECTS = 1_000_000


class Refused(ModelFileError):
    """The estimator's state would misbehave at predict time."""

    code = "unsafe_model_state"

    def __init__(self, where: str, why: str):
        super().__init__(f"refused: {where} {why}; the model was not run")


def inspect_estimator(estimator: Any, n_features: int | None = None) -> int:
    """Walk ``estimator``'s state; raise Refused on the first problem. Returns the
    number of objects checked."""
    seen: set[int] = set()
    stack: list[tuple[str, Any, int | None]] = [("model", estimator, n_features)]
    while stack:
        where, obj, features = stack.pop()
        if id(obj) in seen or isinstance(
            obj, (str, bytes, int, float, bool, type(None))
        ):
            continue
        seen.add(id(obj))
        if len(seen) > MAX_OBJECTS:
            raise Refused(where, "holds too many objects to check")
        features = getattr(obj, "n_features_in_", features)
        _check(where, obj, features)
        for name, value in _children(obj):
            stack.append((f"{where}.{name}", value, features))
    return len(seen)


def _children(obj: Any):
    if isinstance(obj, dict):
        yield from ((str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        yield from ((f"[{i}]", v) for i, v in enumerate(obj))
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            yield from ((f"[{i}]", v) for i, v in enumerate(obj.ravel()))
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        yield from vars(obj).items()


def _check(where: str, obj: Any, n_features: int | None) -> None:
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree._tree import Tree

    if isinstance(
        obj,
        (
            types.FunctionType,
            types.BuiltinFunctionType,
            types.MethodType,
            functools.partial,
            np.ufunc,
        ),
    ):
        if id(obj) not in PURE_FUNCTIONS:
            raise Refused(
                where,
                f"is a function ({getattr(obj, '__name__', obj)!r}) "
                "outside the allowed pure numpy functions",
            )
    elif isinstance(obj, Tree):
        state = obj.__getstate__()
        nodes = state["nodes"]
        _check_nodes(
            where,
            nodes["left_child"],
            nodes["right_child"],
            nodes["left_child"] == -1,
            nodes["feature"],
            nodes["threshold"],
            obj.n_features,
        )
        if len(nodes) != state["node_count"] or len(state["values"]) != len(nodes):
            raise Refused(where, "has a node count that does not match its arrays")
    elif isinstance(obj, TreePredictor):
        nodes = obj.nodes
        _check_nodes(
            where,
            nodes["left"],
            nodes["right"],
            nodes["is_leaf"].astype(bool),
            nodes["feature_idx"],
            nodes["num_threshold"],
            n_features,
        )
        categorical = nodes["is_categorical"].astype(bool) & ~nodes["is_leaf"].astype(
            bool
        )
        if categorical.any():
            limit = min(len(obj.raw_left_cat_bitsets), len(obj.binned_left_cat_bitsets))
            if (nodes["bitset_idx"][categorical] >= limit).any():
                raise Refused(where, "has a categorical split outside its bitsets")
    elif getattr(obj, "input", "content") not in ("content",) and hasattr(
        obj, "build_analyzer"
    ):
        raise Refused(
            where,
            f"reads its input from a {obj.input!r} (only 'content' "
            "is allowed: a model may never open files)",
        )
    methods = getattr(obj, "stack_method_", None)
    if methods is not None and not (
        isinstance(methods, (list, tuple)) and set(methods) <= STACK_METHODS
    ):
        raise Refused(where, f"has stack methods outside {sorted(STACK_METHODS)}")


def _check_nodes(
    where: str, left, right, leaf, feature, threshold, n_features: int | None
) -> None:
    """Every split node's children come after it and exist; features and
    thresholds are valid. (scikit-learn writes nodes depth-first, so a child
    always has a larger index: this also rules out cycles.)"""
    count = len(left)
    index = np.arange(count)
    split = ~np.asarray(leaf, dtype=bool)
    left, right = np.asarray(left)[split], np.asarray(right)[split]
    if count == 0:
        raise Refused(where, "has no nodes")
    if (
        (left <= index[split])
        | (right <= index[split])
        | (left >= count)
        | (right >= count)
    ).any():
        raise Refused(where, "has a child index out of range or pointing back")
    features = np.asarray(feature)[split]
    if (features < 0).any() or (
        n_features is not None and (features >= n_features).any()
    ):
        raise Refused(where, "splits on a feature the model does not have")
    if not np.isfinite(np.asarray(threshold, dtype=np.float64)[split]).all():
        raise Refused(where, "has a threshold that is not a finite number")
