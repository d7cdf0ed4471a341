"""Open Inference Protocol (KServe v2): bodies, responses, metadata and readiness."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from typing import Any

import numpy as np
import orjson

from app.protocols.common import label_datatype
from app.protocols.openinference import tensors
from app.serving.inputs import parse_json
from app.serving.predict import Prediction
from app.serving.snapshot import ModelInfo, VersionInfo
from app.serving.state import serving_state
from app.web.errors import APIError, quote

EXTENSIONS = ["binary_tensor_data", "classification"]
PLATFORM = "scikit-learn"


def server_metadata() -> dict[str, Any]:
    try:
        version = package_metadata.version("modeldock")
    except package_metadata.PackageNotFoundError:  # running from a source tree
        version = "0"
    return {"name": "modeldock", "version": version, "extensions": EXTENSIONS}


def model_metadata(
    model: ModelInfo, version: VersionInfo, pinned: bool = False
) -> dict[str, Any]:
    """The model's servable versions, and the inputs and outputs of ``version``."""
    body: dict[str, Any] = {"name": model.name}
    if pinned:
        body["versions"] = [str(version.number)]
    else:
        body["versions"] = [
            str(n) for n, v in sorted(model.versions.items()) if v.status == "ready"
        ]
    body.update(
        platform=PLATFORM,
        inputs=tensors.input_metadata(version.schema),
        outputs=tensors.output_metadata(version.schema),
    )
    return body


def is_loaded(version: VersionInfo) -> bool:
    """True when this worker holds the version (with its runtime) in its cache."""
    return serving_state().is_loaded(version)


@dataclass
class Output:
    """An output the client asked for (or every output, when it named none)."""

    name: str
    binary: bool
    class_count: int = 0


@dataclass
class InferRequest:
    id: str | None
    parameters: dict
    inputs: list
    binary: bytes
    outputs: list[Output] = field(default_factory=list)


def split_body(
    raw: bytes, header_length: str | None, content_encoding: str | None
) -> tuple[Any, bytes]:
    """Return (JSON header, binary tensor data) of an infer body."""
    if content_encoding and content_encoding.strip().lower() != "identity":
        raise APIError(
            415,
            "unsupported_media_type",
            f"Content-Encoding {quote(content_encoding)} is not supported; "
            "send the body uncompressed",
            "Content-Encoding",
        )
    if header_length is None:
        return parse_json(raw, "application/json"), b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 < length <= len(raw):
        raise APIError(
            400,
            "invalid_header_length",
            "Inference-Header-Content-Length must be the byte length of the "
            "JSON part of the body",
            "Inference-Header-Content-Length",
        )
    return parse_json(raw[:length], "application/json"), raw[length:]


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise APIError(400, "invalid_parameter", "must be true or false", field)
    return value


def parse_request(body: Any, binary: bytes, schema: dict) -> InferRequest:
    """Check the request's shape: id, parameters, inputs and requested outputs."""
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", "the body must be a JSON object", "body")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise APIError(400, "invalid_body", "id must be a string", "id")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise APIError(
            400, "invalid_parameter", "parameters must be an object", "parameters"
        )
    binary_default = _flag(
        parameters.get("binary_data_output", False), "parameters.binary_data_output"
    )
    request = InferRequest(request_id, parameters, body.get("inputs"), binary)
    known = tensors.output_names(schema)
    requested = body.get("outputs")
    if requested is None:
        request.outputs = [Output(name, binary_default) for name in known]
        return request
    if not isinstance(requested, list) or not requested:
        raise APIError(
            400, "invalid_outputs", "outputs must be a non-empty list", "outputs"
        )
    for i, item in enumerate(requested):
        where = f"outputs[{i}]"
        if not isinstance(item, dict) or item.get("name") not in known:
            raise APIError(
                400,
                "unknown_output",
                f"this model answers the outputs {known}",
                f"{where}.name",
            )
        options = item.get("parameters") or {}
        if not isinstance(options, dict):
            raise APIError(
                400,
                "invalid_parameter",
                "parameters must be an object",
                f"{where}.parameters",
            )
        binary_flag = _flag(
            options.get("binary_data", binary_default),
            f"{where}.parameters.binary_data",
        )
        count = options.get("classification", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise APIError(
                400,
                "invalid_parameter",
                "classification must be a non-negative integer",
                f"{where}.parameters.classification",
            )
        if count and item["name"] != tensors.PREDICT_PROBA:
            raise APIError(
                400,
                "invalid_parameter",
                f"classification applies to the '{tensors.PREDICT_PROBA}' output",
                f"{where}.parameters.classification",
            )
        request.outputs.append(
            Output(item["name"], binary_flag, min(count, len(schema["classes"] or [])))
        )
    return request


def matrix(request: InferRequest, schema: dict, max_rows: int) -> np.ndarray:
    """Decode the input tensors and validate them like every other prediction body."""
    decoded = tensors.decode_tensors(request.inputs, request.binary, max_rows)
    return tensors.tensors_to_matrix(decoded, schema, max_rows)


def response(request: InferRequest, prediction: Prediction) -> tuple[bytes, int | None]:
    """Return (body, JSON header length when binary outputs follow it)."""
    schema = prediction.version.schema
    outputs, chunks = [], []
    for wanted in request.outputs:
        if wanted.name == tensors.PREDICT:
            values, datatype = prediction.labels, label_datatype(schema)
        elif wanted.class_count:
            values = tensors.top_classes(
                prediction.probabilities, prediction.classes, wanted.class_count
            )
            datatype = "BYTES"
        else:
            values, datatype = prediction.probabilities, "FP64"
        tensor, data = tensors.encode(wanted.name, values, datatype, wanted.binary)
        outputs.append(tensor)
        if data is not None:
            chunks.append(data)
    body: dict[str, Any] = {
        "model_name": prediction.model.name,
        "model_version": str(prediction.version.number),
    }
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = outputs
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)
