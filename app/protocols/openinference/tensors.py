"""Open Inference Protocol (KServe v2) tensors: request tensors → the float matrix, and
predictions → output tensors, in JSON or in the binary tensor data extension."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.protocols.common import INPUT_NAME, flatten, label_datatype
from app.serving.inputs import _check_batch, matrix_from_columns, matrix_from_rows
from app.web.errors import APIError, quote

# Output names as MLServer's scikit-learn runtime spells them.
PREDICT, PREDICT_PROBA = "predict", "predict_proba"

NUMPY_TYPES = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = (*NUMPY_TYPES, "BYTES")
INTEGER_TYPES = {name for name in NUMPY_TYPES if "INT" in name}
# What JSON data of a datatype must hold (floats also take integers): (test, words).
JSON_CHECKS = {
    "BOOL": (lambda v: isinstance(v, bool), "true or false"),
    "INT": (lambda v: isinstance(v, int) and not isinstance(v, bool), "integers"),
    "BYTES": (lambda v: isinstance(v, str), "strings"),
}


@dataclass
class Tensor:
    """One decoded input tensor: its name, shape and row-major Python scalars."""

    name: str
    shape: list[int]
    datatype: str
    values: list
    field: str

    @property
    def rows(self) -> int:
        return self.shape[0]

    def as_rows(self) -> list[list]:
        """Split the values into ``shape[0]`` rows of equal width."""
        width = math.prod(self.shape[1:])
        return [self.values[i * width : (i + 1) * width] for i in range(self.rows)]


def _error(message: str, field: str, code: str = "invalid_tensor") -> APIError:
    return APIError(400, code, message, field)


def _shape(raw: Any, field: str, max_rows: int) -> list[int]:
    if (
        not isinstance(raw, list)
        or not raw
        or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw
        )
    ):
        raise _error(
            "shape must be a non-empty list of non-negative integers", f"{field}.shape"
        )
    _check_batch(raw[0], f"{field}.shape", max_rows)
    return raw


def _from_json(
    data: Any, datatype: str, count: int, field: str, name: str = INPUT_NAME
) -> list:
    if not isinstance(data, list):
        raise _error(
            "data must be a list (nested or flattened in row-major order)",
            f"{field}.data",
        )
    values = flatten(data, count)
    if len(values) != count:
        got = f"more than {count}" if len(values) > count else str(len(values))
        raise _error(
            f"shape holds {count} elements but data has {got}",
            f"{field}.data",
            "shape_mismatch",
        )
    check = JSON_CHECKS.get("INT" if datatype in INTEGER_TYPES else datatype)
    if check is not None:
        accepts, wanted = check
        for i, value in enumerate(values):
            if not accepts(value):
                raise _error(
                    f"{datatype} data must be {wanted}, got {quote(value)}",
                    f"{field}.data[{i}]",
                    "datatype_mismatch",
                )
    _check_range(values, datatype, name, field)
    return values


def _check_range(values: list, datatype: str, name: str, field: str) -> None:
    """Refuse JSON numbers the datatype cannot hold (UINT8 300, FP16 65536)."""
    if datatype in INTEGER_TYPES:
        info = np.iinfo(NUMPY_TYPES[datatype])
        low, high = int(info.min), int(info.max)
    elif datatype in ("FP16", "FP32"):
        high = float(np.finfo(NUMPY_TYPES[datatype]).max)
        low = -high
    else:
        return
    for i, value in enumerate(values):
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and not low <= value <= high
        ):
            raise _error(
                f"input {quote(name)}: {datatype} holds {low} to {high}, "
                f"got {quote(value)}",
                f"{field}.data[{i}]",
                "value_out_of_range",
            )


def _bytes_elements(chunk: bytes, count: int, field: str) -> list[str]:
    """Decode binary BYTES: each element follows its 4-byte little-endian length."""
    out, offset = [], 0
    while offset < len(chunk) and len(out) <= count:
        if offset + 4 > len(chunk):
            break
        (size,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if offset + size > len(chunk):
            break
        out.append(chunk[offset : offset + size].decode("utf-8", "replace"))
        offset += size
    if len(out) != count or offset != len(chunk):
        raise _error(
            f"binary BYTES data does not hold {count} length-prefixed elements",
            f"{field}.parameters.binary_data_size",
            "shape_mismatch",
        )
    return out


def _from_binary(chunk: bytes, datatype: str, count: int, field: str) -> list:
    if datatype == "BYTES":
        return _bytes_elements(chunk, count, field)
    dtype = np.dtype(NUMPY_TYPES[datatype])
    if len(chunk) != count * dtype.itemsize:
        raise _error(
            f"binary data of {len(chunk)} bytes does not match {count} "
            f"{datatype} elements",
            f"{field}.parameters.binary_data_size",
            "shape_mismatch",
        )
    return np.frombuffer(chunk, dtype=dtype).tolist()


def _as_numbers(values: list, datatype: str) -> list:
    """BOOL → 0/1 and BYTES → parsed numbers; the rest is left to input validation."""
    if datatype == "BOOL":
        return [1.0 if v else 0.0 for v in values]
    if datatype == "BYTES":
        out = []
        for text in values:
            try:
                out.append(float(text))
            except ValueError:
                out.append(text)  # reported as non-numeric by the matrix check
        return out
    return values


def decode_tensors(raw_inputs: Any, binary: bytes, max_rows: int) -> list[Tensor]:
    """Validate the request's ``inputs`` and read their data (JSON or binary)."""
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise _error("inputs must be a non-empty list of tensors", "inputs")
    tensors, offset = [], 0
    for i, raw in enumerate(raw_inputs):
        field = f"inputs[{i}]"
        if not isinstance(raw, dict):
            raise _error("each input must be an object", field)
        name, datatype = raw.get("name"), raw.get("datatype")
        if not isinstance(name, str) or not name:
            raise _error("name must be a non-empty string", f"{field}.name")
        if datatype not in DATATYPES:
            raise _error(
                f"datatype must be one of {', '.join(DATATYPES)}",
                f"{field}.datatype",
                "unsupported_datatype",
            )
        shape = _shape(raw.get("shape"), field, max_rows)
        parameters = raw.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise _error("parameters must be an object", f"{field}.parameters")
        if "shared_memory_region" in parameters:
            raise _error("shared memory is not supported", f"{field}.parameters")
        count = math.prod(shape)
        size = parameters.get("binary_data_size")
        if size is not None:
            if (
                isinstance(size, bool)
                or not isinstance(size, int)
                or size < 0
                or offset + size > len(binary)
            ):
                raise _error(
                    "binary_data_size runs past the binary part of the body",
                    f"{field}.parameters.binary_data_size",
                    "shape_mismatch",
                )
            values = _from_binary(
                binary[offset : offset + size], datatype, count, field
            )
            offset += size
        else:
            values = _from_json(raw.get("data"), datatype, count, field, name)
        tensors.append(
            Tensor(name, shape, datatype, _as_numbers(values, datatype), field)
        )
    if offset != len(binary):
        raise _error(
            "the binary part of the body is longer than the inputs declare",
            "inputs",
            "shape_mismatch",
        )
    return tensors


def tensors_to_matrix(tensors: list[Tensor], schema: dict, max_rows: int) -> np.ndarray:
    """One tensor [rows, features…] or one tensor per feature → the validated matrix."""
    names = schema["feature_names"]
    one_wide = (
        len(tensors) == 1 and len(tensors[0].shape) > 1 and tensors[0].shape[1] > 1
    )
    if all(t.name in names for t in tensors) and not one_wide:
        columns = {}
        for t in tensors:
            if math.prod(t.shape[1:]) != 1:
                raise _error(
                    f"a per-feature input has shape [rows] or [rows, 1], got {t.shape}",
                    f"{t.field}.shape",
                )
            columns[t.name] = t.values
        return matrix_from_columns(columns, schema, "inputs", max_rows)
    if len(tensors) != 1:
        raise _error(
            f"send one input tensor of shape [rows, {schema['n_features']}] "
            f"or one tensor per feature named {names}",
            "inputs",
        )
    tensor = tensors[0]
    if len(tensor.shape) == 1:
        if schema["n_features"] != 1:
            raise _error(
                f"expected shape [rows, {schema['n_features']}], got {tensor.shape}",
                f"{tensor.field}.shape",
            )
        rows = [[value] for value in tensor.values]
    else:
        rows = tensor.as_rows()
    return matrix_from_rows(rows, schema, tensor.name, max_rows)


# --- outputs


def output_names(schema: dict) -> list[str]:
    return [PREDICT, PREDICT_PROBA] if schema.get("has_proba") else [PREDICT]


def output_metadata(schema: dict) -> list[dict]:
    """The outputs a version answers, as model metadata lists them."""
    outputs = [{"name": PREDICT, "datatype": label_datatype(schema), "shape": [-1]}]
    if schema.get("has_proba"):
        outputs.append(
            {
                "name": PREDICT_PROBA,
                "datatype": "FP64",
                "shape": [-1, len(schema["classes"])],
            }
        )
    return outputs


def input_metadata(schema: dict) -> list[dict]:
    return [
        {"name": INPUT_NAME, "datatype": "FP64", "shape": [-1, schema["n_features"]]}
    ]


def _typed(values: np.ndarray, datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.asarray(values).astype(str)
    try:
        return np.asarray(values).astype(NUMPY_TYPES[datatype])
    except (TypeError, ValueError):
        return np.asarray(values).astype(str)


def top_classes(probabilities: np.ndarray, classes: list, count: int) -> np.ndarray:
    """Triton's classification extension: "score:index:label" for the top classes."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :count]
    return np.array(
        [
            [f"{row[j]:f}:{j}:{classes[j]}" for j in idx]
            for row, idx in zip(probabilities, order, strict=True)
        ]
    )


def encode(name: str, values: np.ndarray, datatype: str, binary: bool):
    """Return (output tensor JSON, binary bytes or None)."""
    values = _typed(values, datatype)
    if values.dtype.kind == "U":
        datatype = "BYTES"
    tensor: dict[str, Any] = {
        "name": name,
        "datatype": datatype,
        "shape": list(values.shape),
    }
    if not binary:
        tensor["data"] = values.reshape(-1).tolist()
        return tensor, None
    if datatype == "BYTES":
        chunks = []
        for item in values.reshape(-1):
            encoded = str(item).encode("utf-8")
            chunks.append(struct.pack("<I", len(encoded)) + encoded)
        data = b"".join(chunks)
    else:
        data = np.ascontiguousarray(values).tobytes()
    tensor["parameters"] = {"binary_data_size": len(data)}
    return tensor, data
