"""Per-feature contributions of a loaded estimator: base + Σ contributions = output.

Runs only where model code may run (an inference process, like ``predictor``); the
web worker never imports it. Two exact-additive methods:

* linear models (and pipelines whose final step is linear): contribution =
  coefficient × transformed value, base = intercept, on the decision function
  (classifiers) or the prediction (regressors);
* trees and tree ensembles: Saabas path attribution — along each row's decision
  path, every change of node value is credited to the parent's split feature;
  averaged (forests) or summed with the learning rate (gradient boosting), base =
  the trees' root values (the training mean), on probabilities (trees, forests),
  the log-odds (gradient boosting classifiers) or the prediction (regressors).

Contributions over a pipeline's transformed features are mapped back to its input
features where each step is per-feature, one-hot, a selector or a column
transformer of those; otherwise they stay per transformed feature (``mapped`` is
False). Every answer is checked to add up before it leaves.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

# Steps whose output column j depends on input column j alone.
PER_FEATURE = frozenset(
    {
        "StandardScaler",
        "MinMaxScaler",
        "MaxAbsScaler",
        "RobustScaler",
        "QuantileTransformer",
        "PowerTransformer",
        "Binarizer",
    }
)
TREES = frozenset(
    {
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
    }
)
BOOSTING = frozenset({"GradientBoostingClassifier", "GradientBoostingRegressor"})
# Linear models whose prediction is not the linear function (an inverse link).
NONLINEAR_LINK = frozenset({"PoissonRegressor", "GammaRegressor", "TweedieRegressor"})
LINEAR_SVM = frozenset({"LinearSVC", "LinearSVR"})
TOLERANCE = 1e-6


class NotExplainable(Exception):
    """This model (named by ``estimator``) has no exact additive explanation here."""

    def __init__(self, estimator: str):
        super().__init__(estimator)
        self.estimator = re.sub(r"[^\w.]", "", estimator)[:100] or "model"


@dataclass
class Explanation:
    """Arrays are (rows, outputs) for base and output, (rows, outputs, features)."""

    base: np.ndarray
    output: np.ndarray
    contributions: np.ndarray
    features: list[str]
    outputs: list  # a class label per output, or ["prediction"]
    explained: str  # "probability", "decision_function", "log_odds", "prediction"
    method: str  # "linear" or "saabas"
    mapped: bool  # contributions are per input feature (else per transformed one)

    def header(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "outputs": self.outputs,
            "explained": self.explained,
            "method": self.method,
            "mapped": self.mapped,
        }


def _name(estimator: Any) -> str:
    return type(estimator).__name__


def _sklearn(estimator: Any, package: str) -> bool:
    return type(estimator).__module__.startswith(f"sklearn.{package}")


def explain(model: Any, rows: np.ndarray, feature_names: list[str]) -> Explanation:
    """Contributions of each of ``feature_names`` (or transformed feature) per row."""
    steps = model.steps if _sklearn(model, "pipeline") else [("model", model)]
    final = steps[-1][1]
    method = _method(final)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        transformed = rows
        for _, step in steps[:-1]:
            if step is not None and step != "passthrough":
                transformed = step.transform(transformed)
        if hasattr(transformed, "toarray"):  # a sparse one-hot encoding
            transformed = transformed.toarray()
        transformed = np.asarray(transformed, dtype=np.float64)
        base, output, contributions, explained, outputs = method(final, transformed)
    base, output = base.reshape(len(rows), -1), output.reshape(len(rows), -1)
    contributions = contributions.reshape(len(rows), output.shape[1], -1)
    error = np.abs(base + contributions.sum(axis=2) - output)
    if not np.all(error <= TOLERANCE * np.maximum(1.0, np.abs(output))):
        raise NotExplainable(_name(final))  # a subclass that does more than it says
    sources = _pipeline_sources(steps[:-1], len(feature_names))
    if sources is not None and len(sources) == contributions.shape[2]:
        mapped = np.zeros((*contributions.shape[:2], len(feature_names)))
        np.add.at(
            mapped, (slice(None), slice(None), np.asarray(sources)), contributions
        )
        contributions, features, is_mapped = mapped, list(feature_names), True
    else:
        features = _transformed_names(steps[:-1], contributions.shape[2])
        is_mapped = len(steps) == 1
    return Explanation(
        base,
        output,
        contributions,
        features,
        outputs,
        explained,
        "linear" if method is _linear else "saabas",
        is_mapped,
    )


def _method(final: Any):
    name = _name(final)
    if getattr(final, "n_outputs_", 1) != 1:
        raise NotExplainable(f"{name} (multi-output)")
    if _sklearn(final, "tree") or _sklearn(final, "ensemble"):
        if name in TREES:
            return _saabas
        if name in BOOSTING:
            return _saabas_boosting
    elif (
        (_sklearn(final, "linear_model") and name not in NONLINEAR_LINK)
        or (_sklearn(final, "svm") and name in LINEAR_SVM)
    ) and hasattr(final, "coef_"):
        return _linear
    raise NotExplainable(name)


def _classes(final: Any, columns: int) -> list:
    classes = np.asarray(final.classes_).tolist()
    return classes[-1:] if columns == 1 and len(classes) == 2 else classes


def _linear(final: Any, x: np.ndarray):
    coef = np.atleast_2d(np.asarray(final.coef_, dtype=np.float64))
    intercept = np.broadcast_to(
        np.asarray(final.intercept_, dtype=np.float64), (coef.shape[0],)
    )
    contributions = x[:, None, :] * coef[None, :, :]
    base = np.broadcast_to(intercept, (len(x), coef.shape[0]))
    if hasattr(final, "classes_"):
        output = np.asarray(final.decision_function(x), dtype=np.float64)
        binary_logit = _name(final) == "LogisticRegression" and coef.shape[0] == 1
        explained = "log_odds" if binary_logit else "decision_function"
        return base, output, contributions, explained, _classes(final, coef.shape[0])
    output = np.asarray(final.predict(x), dtype=np.float64)
    return base, output, contributions, "prediction", ["prediction"]


def _tree_paths(tree: Any, x: np.ndarray, values: np.ndarray, n_features: int):
    """Saabas contributions (rows, outputs, features) and the root value of a tree."""
    structure = tree.tree_
    parent = np.full(structure.node_count, -1)
    for children in (structure.children_left, structure.children_right):
        inner = np.flatnonzero(children >= 0)
        parent[children[inner]] = inner
    path = tree.decision_path(x.astype(np.float32))
    row = np.repeat(np.arange(len(x)), np.diff(path.indptr))
    node = path.indices
    keep = parent[node] >= 0  # the root has no parent and credits no one
    row, node = row[keep], node[keep]
    delta = values[node] - values[parent[node]]
    contributions = np.zeros((len(x), n_features, values.shape[1]))
    np.add.at(contributions, (row, structure.feature[parent[node]]), delta)
    return contributions.transpose(0, 2, 1), values[0]


def _saabas(final: Any, x: np.ndarray):
    trees = getattr(final, "estimators_", [final])
    classifier = hasattr(final, "classes_")
    total = np.zeros((len(x), 1, x.shape[1]))
    root = 0.0
    for tree in trees:
        values = tree.tree_.value[:, 0, :].astype(np.float64)
        if classifier:  # predict_proba is the leaf's class fractions
            sums = values.sum(axis=1, keepdims=True)
            values = values / np.where(sums == 0, 1.0, sums)
        contributions, tree_root = _tree_paths(tree, x, values, x.shape[1])
        total = total + contributions
        root = root + tree_root
    total, root = total / len(trees), root / len(trees)
    base = np.broadcast_to(root, (len(x), len(np.atleast_1d(root))))
    if classifier:
        output = final.predict_proba(x)
        return base, output, total, "probability", _classes(final, output.shape[1])
    return base, final.predict(x), total, "prediction", ["prediction"]


def _saabas_boosting(final: Any, x: np.ndarray):
    stages = final.estimators_  # (stages, 1 or classes) of regression trees
    rate = final.learning_rate
    total = np.zeros((len(x), stages.shape[1], x.shape[1]))
    roots = np.zeros(stages.shape[1])
    trees_sum = np.zeros((len(x), stages.shape[1]))
    for stage in stages:
        for k, tree in enumerate(stage):
            values = tree.tree_.value[:, 0, :].astype(np.float64)
            contributions, root = _tree_paths(tree, x, values, x.shape[1])
            total[:, k, :] += rate * contributions[:, 0, :]
            roots[k] += rate * root[0]
            trees_sum[:, k] += rate * tree.predict(x.astype(np.float32))
    if hasattr(final, "classes_"):
        output = np.asarray(final.decision_function(x), dtype=np.float64)
        explained = "log_odds" if stages.shape[1] == 1 else "decision_function"
        outputs = _classes(final, stages.shape[1])
    else:
        output = np.asarray(final.predict(x), dtype=np.float64)
        explained, outputs = "prediction", ["prediction"]
    # The initial estimate (a constant unless ``init`` was a model) joins the base.
    initial = output.reshape(len(x), -1) - trees_sum
    return initial + roots, output, total, explained, outputs


# --- from transformed features back to input features


def _pipeline_sources(steps: list, n_inputs: int) -> list[int] | None:
    """For each transformed column, the input column it comes from (or None)."""
    sources: list[int] | None = list(range(n_inputs))
    for _, step in steps:
        step_sources = _sources(step, len(sources))
        if step_sources is None:
            return None
        sources = [sources[j] for j in step_sources]
    return sources


def _sources(step: Any, n_inputs: int) -> list[int] | None:
    """One step's output column → input column, where the step allows it."""
    name = _name(step)
    if step is None or step == "passthrough":
        return list(range(n_inputs))
    if name in PER_FEATURE and _sklearn(step, "preprocessing"):
        return list(range(n_inputs))
    if name == "SimpleImputer" and _sklearn(step, "impute"):
        if step.add_indicator:
            return None
        if getattr(step, "keep_empty_features", False):
            return list(range(n_inputs))
        kept = ~np.isnan(np.asarray(step.statistics_, dtype=float))
        return np.flatnonzero(kept).tolist()
    if name == "OneHotEncoder" and _sklearn(step, "preprocessing"):
        widths = getattr(step, "_n_features_outs", None)
        if widths is None or len(widths) != n_inputs:
            return None
        return [j for j, width in enumerate(widths) for _ in range(width)]
    if _sklearn(step, "feature_selection") and hasattr(step, "get_support"):
        return step.get_support(indices=True).tolist()
    if name == "Pipeline" and _sklearn(step, "pipeline"):
        return _pipeline_sources(step.steps, n_inputs)
    if name == "ColumnTransformer" and _sklearn(step, "compose"):
        return _column_sources(step, n_inputs)
    return None


def _column_sources(step: Any, n_inputs: int) -> list[int] | None:
    names = list(getattr(step, "feature_names_in_", []))
    out: dict[int, int] = {}
    for label, transformer, columns in step.transformers_:
        where = step.output_indices_[label]
        if where.stop == where.start:
            continue  # dropped, or no columns
        picked = np.arange(n_inputs)[_column_index(columns, names, n_inputs)]
        inner = _sources(transformer, len(picked))
        if inner is None or len(inner) != where.stop - where.start:
            return None
        for offset, j in enumerate(inner):
            out[where.start + offset] = int(picked[j])
    if sorted(out) != list(range(len(out))):
        return None
    return [out[i] for i in range(len(out))]


def _column_index(columns: Any, names: list[str], n_inputs: int):
    if isinstance(columns, str):
        columns = [columns]
    if isinstance(columns, slice):
        return columns
    columns = np.asarray(columns)
    if columns.dtype.kind in "US":
        return np.asarray([names.index(c) for c in columns.tolist()], dtype=int)
    if columns.dtype == bool:
        return np.flatnonzero(columns)
    return columns.astype(int) if columns.size else np.zeros(0, dtype=int)


def _transformed_names(steps: list, count: int) -> list[str]:
    names = None
    try:
        for _, step in steps:
            names = step.get_feature_names_out(names)
        names = [str(n) for n in names]
    except Exception:  # a step without feature names
        names = None
    if names is None or len(names) != count:
        names = [f"t{j}" for j in range(count)]
    return names
