"""TensorFlow Serving REST shapes: predict bodies → the float matrix, predictions →
``predictions``/``outputs``; classify and regress bodies (``examples`` with an
optional ``context``) → the matrix, answers → ``results``; the model status and
metadata documents."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.protocols.common import INPUT_NAME, flatten, label_datatype
from app.serving.inputs import (
    _check_batch,
    matrix_from_columns,
    matrix_from_rows,
    parse_json,
)
from app.serving.predict import Prediction
from app.serving.snapshot import ModelInfo, VersionInfo
from app.web.errors import APIError, quote

# Signature name → what it answers. TF Serving's default signature gives the labels.
DEFAULT_SIGNATURE = "serving_default"
PROBA_SIGNATURE = "predict_proba"
TF_DTYPES = {
    "INT64": "DT_INT64",
    "FP64": "DT_DOUBLE",
    "BOOL": "DT_BOOL",
    "BYTES": "DT_STRING",
}


def parse_body(raw: bytes) -> Any:
    """Read the body as JSON whatever its Content-Type, as TF Serving does (curl -d)."""
    return parse_json(raw, "application/json")


def signatures(schema: dict) -> list[str]:
    return (
        [DEFAULT_SIGNATURE, PROBA_SIGNATURE]
        if schema.get("has_proba")
        else [DEFAULT_SIGNATURE]
    )


def _signature(body: dict, schema: dict) -> str:
    name = body.get("signature_name", DEFAULT_SIGNATURE)
    if name == "":  # TF Serving treats an empty name as the default signature
        name = DEFAULT_SIGNATURE
    if not isinstance(name, str) or name not in signatures(schema):
        raise APIError(
            400,
            "unknown_signature",
            f"signature_name must be one of {signatures(schema)}",
            "signature_name",
        )
    return name


def _row(instance: Any, schema: dict, field: str) -> Any:
    """One instance → a row: a scalar (one feature), nested list or named features."""
    n = schema["n_features"]
    if isinstance(instance, dict):
        if set(instance) == {INPUT_NAME} and INPUT_NAME not in schema["feature_names"]:
            return _row(instance[INPUT_NAME], schema, field)
        named = {}
        for key, value in instance.items():
            values = flatten(value, 1)
            if len(values) != 1:
                raise APIError(
                    400,
                    "invalid_row",
                    f"feature {quote(key)} takes one number per instance",
                    f"{field}.{key}",
                )
            named[key] = values[0]
        return named
    if isinstance(instance, list):
        values = flatten(instance, n)
        if len(values) > n:
            raise APIError(
                400, "wrong_feature_count", f"expected {n} features, got more", field
            )
        return values
    return [instance] if n == 1 else instance


def request_matrix(
    body: Any, schema: dict, max_rows: int
) -> tuple[np.ndarray, str, str]:
    """Return (matrix, "row" or "columnar", signature) for a ``:predict`` body."""
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", "the body must be a JSON object", "body")
    if ("instances" in body) == ("inputs" in body):
        raise APIError(
            400,
            "invalid_body",
            "send either 'instances' (row format) or "
            "'inputs' (columnar format), not both",
            "instances",
        )
    signature = _signature(body, schema)
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise APIError(
                400, "invalid_instances", "must be a list of instances", "instances"
            )
        _check_batch(len(instances), "instances", max_rows)
        rows = [
            _row(item, schema, f"instances[{i}]") for i, item in enumerate(instances)
        ]
        return matrix_from_rows(rows, schema, "instances", max_rows), "row", signature
    inputs = body["inputs"]
    if (
        isinstance(inputs, dict)
        and set(inputs) == {INPUT_NAME}
        and INPUT_NAME not in schema["feature_names"]
    ):
        inputs = inputs[INPUT_NAME]
    if isinstance(inputs, dict):
        columns = {key: flatten(value, max_rows) for key, value in inputs.items()}
        return (
            matrix_from_columns(columns, schema, "inputs", max_rows),
            "columnar",
            signature,
        )
    if not isinstance(inputs, list):
        inputs = [inputs]
    _check_batch(len(inputs), "inputs", max_rows)
    rows = [_row(item, schema, f"inputs[{i}]") for i, item in enumerate(inputs)]
    return matrix_from_rows(rows, schema, "inputs", max_rows), "columnar", signature


def response_body(prediction: Prediction, layout: str, signature: str) -> dict:
    """``predictions`` for the row format, ``outputs`` for the columnar one."""
    if signature == PROBA_SIGNATURE:
        values = prediction.probabilities.tolist()
    else:
        values = prediction.labels.tolist()
    return {"predictions": values} if layout == "row" else {"outputs": values}


# --- classify and regress (tf.Example-style bodies)


def examples_matrix(body: Any, schema: dict, max_rows: int) -> np.ndarray:
    """``{"examples": [{feature: value}], "context": {feature: value}}`` → matrix.

    As in TF Serving, ``context`` features are common to every example and an
    example's own value wins; features the model does not take are ignored, as
    ``tf.io.parse_example`` ignores them (a misspelt one still leaves a feature
    missing, which is reported). A value is a number or a one-number list.
    """
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", "the body must be a JSON object", "body")
    if body.get("signature_name", DEFAULT_SIGNATURE) not in ("", DEFAULT_SIGNATURE):
        raise APIError(
            400,
            "unknown_signature",
            f"signature_name must be '{DEFAULT_SIGNATURE}'",
            "signature_name",
        )
    examples, context = body.get("examples"), body.get("context", {})
    if not isinstance(examples, list):
        raise APIError(
            400,
            "invalid_examples",
            "send 'examples': a list of {feature: value} objects",
            "examples",
        )
    if not isinstance(context, dict):
        raise APIError(
            400, "invalid_context", "'context' must be an object of features", "context"
        )
    _check_batch(len(examples), "examples", max_rows)
    names = set(schema["feature_names"])
    rows = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise APIError(
                400,
                "invalid_row",
                "each example must be an object of features",
                f"examples[{i}]",
            )
        features = {k: v for k, v in {**context, **example}.items() if k in names}
        rows.append(_row(features, schema, f"examples[{i}]"))
    return matrix_from_rows(rows, schema, "examples", max_rows)


def classify_body(prediction: Prediction, schema: dict) -> dict:
    """``{"results": [[[label, score], ...] per example]}``, labels as strings."""
    if schema["task"] != "classification" or prediction.probabilities is None:
        raise APIError(
            400,
            "not_a_classifier",
            ":classify needs a classifier with class probabilities; "
            "use :predict for this model",
            "model",
        )
    labels = [str(c) for c in schema["classes"]]
    return {
        "results": [
            [[label, score] for label, score in zip(labels, row, strict=True)]
            for row in prediction.probabilities.tolist()
        ]
    }


def regress_body(prediction: Prediction, schema: dict) -> dict:
    """``{"results": [value per example]}``."""
    if schema["task"] != "regression" or prediction.labels.ndim != 1:
        raise APIError(
            400,
            "not_a_regressor",
            ":regress needs a single-output regression model; "
            "use :predict for this model",
            "model",
        )
    return {"results": prediction.labels.astype(float).tolist()}


# --- status and metadata


def version_status(version: VersionInfo) -> dict[str, Any]:
    """A GetModelStatusResponse entry: ready versions are AVAILABLE, archived END."""
    return {
        "version": str(version.number),
        "state": "AVAILABLE" if version.status == "ready" else "END",
        "status": {"error_code": "OK", "error_message": ""},
    }


def model_status(versions: list[VersionInfo]) -> dict[str, Any]:
    return {"model_version_status": [version_status(v) for v in versions]}


def _tensor_info(name: str, dtype: str, dims: list[int]) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "name": name,
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in dims],
            "unknown_rank": False,
        },
    }


def metadata(model: ModelInfo, version: VersionInfo) -> dict[str, Any]:
    """GetModelMetadataResponse: one signature per output the version answers."""
    schema = version.schema
    inputs = {
        INPUT_NAME: _tensor_info(INPUT_NAME, "DT_DOUBLE", [-1, schema["n_features"]])
    }
    defs = {
        DEFAULT_SIGNATURE: {
            "inputs": inputs,
            "outputs": {
                "predictions": _tensor_info(
                    "predictions", TF_DTYPES[label_datatype(schema)], [-1]
                )
            },
            "method_name": "tensorflow/serving/predict",
        }
    }
    if schema.get("has_proba"):
        defs[PROBA_SIGNATURE] = {
            "inputs": inputs,
            "outputs": {
                "probabilities": _tensor_info(
                    "probabilities", "DT_DOUBLE", [-1, len(schema["classes"])]
                )
            },
            "method_name": "tensorflow/serving/predict",
        }
    return {
        "model_spec": {
            "name": model.name,
            "signature_name": "",
            "version": str(version.number),
        },
        "metadata": {
            "signature_def": {"signature_def": defs},
            "feature_names": schema["feature_names"],
            "classes": schema.get("classes"),
        },
    }
