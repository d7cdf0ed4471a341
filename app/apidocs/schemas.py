"""JSON Schemas (OpenAPI 3.1 / JSON Schema 2020-12) of ModelDock's bodies."""

from __future__ import annotations

from app.models.registry import FORMATS
from app.registry.service import LABEL_PATTERN, NAME_PATTERN


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


STRING, INTEGER, NUMBER, BOOLEAN = (
    {"type": t} for t in ("string", "integer", "number", "boolean")
)
ANY_ARRAY = {"type": "array"}
OBJECT = {"type": "object"}
LABEL = {"type": ["integer", "number", "string", "boolean"]}
TIMESTAMP = {"type": "string", "format": "date-time"}


def obj(required: list[str], **properties) -> dict:
    return {"type": "object", "required": required, "properties": properties}


ROW = {
    "oneOf": [
        {"type": "array", "items": NUMBER, "minItems": 1},
        {"type": "object", "additionalProperties": NUMBER, "minProperties": 1},
    ]
}
TENSOR_DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]

SCHEMAS: dict[str, dict] = {
    # --- shared
    "Error": {
        **obj(
            ["error"],
            error=obj(["code", "message"], code=STRING, message=STRING, field=STRING),
            request_id=STRING,
        ),
        "description": "Native API error with a stable code.",
    },
    "PlainError": {
        **obj(["error"], error=STRING),
        "description": "TensorFlow Serving and Open Inference error shape.",
    },
    "Health": obj(
        ["status"],
        status={"enum": ["ok", "unavailable"]},
        database={"enum": ["ok", "unreachable"]},
    ),
    "Reason": obj([], reason=STRING),
    # --- native API
    "Alias": obj(["version", "weight"], version=INTEGER, weight=INTEGER),
    "Model": obj(
        [
            "name",
            "description",
            "task",
            "active_version",
            "aliases",
            "versions",
            "batching",
            "timeout",
            "created_at",
        ],
        name=STRING,
        description=STRING,
        task={"enum": ["classification", "regression", "other"]},
        active_version=nullable(INTEGER),
        aliases={"type": "object", "additionalProperties": ref("Alias")},
        versions={"type": "array", "items": INTEGER},
        batching=obj(
            ["max_rows", "max_wait_ms", "effective"],
            max_rows=nullable(INTEGER),
            max_wait_ms=nullable(NUMBER),
            effective=nullable(
                obj(["max_rows", "max_wait_ms"], max_rows=INTEGER, max_wait_ms=NUMBER)
            ),
        ),
        timeout=obj(
            ["seconds", "effective"], seconds=nullable(NUMBER), effective=NUMBER
        ),
        created_at=TIMESTAMP,
    ),
    "ModelList": obj(["models"], models={"type": "array", "items": ref("Model")}),
    "Version": obj(
        [
            "model",
            "version",
            "status",
            "aliases",
            "format",
            "sha256",
            "size_bytes",
            "estimator",
            "task",
            "feature_names",
            "n_features",
            "classes",
            "allow_nan",
            "runtime",
            "runtime_setting",
            "runtime_verdict",
            "runtime_reason",
            "onnx_speedup",
            "runtime_check",
            "metrics",
            "notes",
            "created_by",
            "created_at",
        ],
        model=STRING,
        version=INTEGER,
        status={"enum": ["active", "ready", "archived"]},
        aliases={"type": "array", "items": STRING},
        format={"enum": list(FORMATS)},
        runtime={"enum": ["onnx", "sklearn"]},
        runtime_setting={"enum": ["auto", "onnx", "sklearn"]},
        runtime_verdict={
            "enum": ["verified", "mismatch", "not_convertible", "native", "unchecked"]
        },
        runtime_reason=STRING,
        onnx_speedup=nullable(NUMBER),
        runtime_check=nullable(OBJECT),
        sha256={"type": "string", "pattern": "^[0-9a-f]{64}$"},
        size_bytes=INTEGER,
        estimator=STRING,
        task={"enum": ["classification", "regression", "other"]},
        feature_names={"type": "array", "items": STRING},
        n_features=INTEGER,
        classes=nullable({"type": "array", "items": LABEL}),
        allow_nan=BOOLEAN,
        metrics=nullable(OBJECT),
        notes=STRING,
        created_by=nullable(STRING),
        created_at=TIMESTAMP,
    ),
    "VersionList": obj(
        ["model", "versions"],
        model=STRING,
        versions={"type": "array", "items": ref("Version")},
    ),
    "RuntimeRequest": obj(
        ["runtime"], runtime={"enum": ["auto", "onnx", "sklearn"]}, reason=STRING
    ),
    "BatchingRequest": obj(
        [],
        max_rows=nullable({"type": "integer", "minimum": 0, "maximum": 1024}),
        max_wait_ms=nullable({"type": "number", "minimum": 0, "maximum": 1000}),
        reason=STRING,
    ),
    "TimeoutRequest": obj(
        [],
        seconds=nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 600}),
        reason=STRING,
    ),
    "CanaryRequest": obj(
        ["version", "weight"],
        version=INTEGER,
        weight={"type": "integer", "minimum": 0, "maximum": 100},
        reason=STRING,
    ),
    "ShadowRequest": obj(["version"], version=INTEGER, reason=STRING),
    "ShadowReport": obj(
        ["model", "shadow", "hours"],
        model=STRING,
        shadow=nullable(ref("Alias")),
        hours={
            "type": "array",
            "items": obj(
                ["hour", "stable_version", "shadow_version", "requests", "rows"],
                hour=TIMESTAMP,
                stable_version=INTEGER,
                shadow_version=INTEGER,
                requests=INTEGER,
                rows=INTEGER,
                agreement_rate=NUMBER,
                mae=NUMBER,
                rmse=NUMBER,
            ),
        },
    ),
    "Drift": obj(
        ["model", "version", "window", "source", "reference", "windows"],
        model=STRING,
        version=nullable(INTEGER),
        window={"type": "string", "enum": ["hour", "day"]},
        source={"type": "string", "enum": ["sketch", "payloads", "off"]},
        message=STRING,
        reference=nullable(
            obj(
                ["rows", "source", "features"],
                rows=INTEGER,
                source=STRING,
                features={"type": "array", "items": STRING},
            )
        ),
        windows={
            "type": "array",
            "items": obj(
                ["start", "rows", "features"],
                start=TIMESTAMP,
                rows=INTEGER,
                features={
                    "type": "array",
                    "items": obj(
                        ["feature", "rows", "psi", "pvalue", "test", "verdict"],
                        feature=STRING,
                        rows=INTEGER,
                        psi=NUMBER,
                        pvalue=nullable(NUMBER),
                        test={"type": "string", "enum": ["chi2", "ks"]},
                        verdict={
                            "type": "string",
                            "enum": ["drift", "watch", "stable", "too_few_rows"],
                        },
                    ),
                },
            ),
        },
    ),
    "History": obj(
        ["model", "history"],
        model=STRING,
        history={
            "type": "array",
            "items": obj(
                [
                    "alias",
                    "from_version",
                    "to_version",
                    "weight",
                    "actor",
                    "reason",
                    "at",
                ],
                alias=STRING,
                from_version=nullable(INTEGER),
                to_version=nullable(INTEGER),
                weight=INTEGER,
                actor=STRING,
                reason=STRING,
                at=TIMESTAMP,
            ),
        },
    ),
    "Upload": {
        **obj(
            ["file"],
            file={
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "description": "A .skops, .joblib or .pkl file.",
            },
            description=STRING,
            notes=STRING,
            metrics={
                "type": "string",
                "description": 'A JSON object, e.g. {"accuracy": 0.97}.',
            },
            sample={
                "type": "string",
                "description": "JSON rows the validator predicts.",
            },
            reference={
                "type": "string",
                "description": "Drift reference: a CSV file of training rows "
                "(first row: feature names), or `sample` to use the sample.",
            },
        )
    },
    "NativePredictRequest": {
        "type": "object",
        "description": "Exactly one of `instances` (rows) or `inputs` (columns).",
        "properties": {
            "instances": {"type": "array", "items": ROW, "minItems": 1},
            "inputs": {
                "oneOf": [
                    {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": NUMBER},
                        "minProperties": 1,
                    },
                    {"type": "array", "items": ROW, "minItems": 1},
                ]
            },
        },
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        "example": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]},
    },
    "NativePrediction": obj(
        ["model", "version", "predictions", "request_id"],
        model=STRING,
        version=INTEGER,
        predictions=ANY_ARRAY,
        classes={"type": "array", "items": LABEL},
        probabilities={"type": "array", "items": {"type": "array", "items": NUMBER}},
        request_id=STRING,
    ),
    "TutorialRequest": {
        **obj(
            ["features"],
            features={
                "oneOf": [
                    {"type": "array", "items": NUMBER, "minItems": 1},
                    {
                        "type": "array",
                        "items": {"type": "array", "items": NUMBER},
                        "minItems": 1,
                    },
                ]
            },
        ),
        "example": {"features": [5.1, 3.5, 1.4, 0.2]},
    },
    "TutorialPrediction": obj(["prediction"], prediction=ANY_ARRAY),
    # --- TensorFlow Serving REST
    "TFVersionStatus": obj(
        ["version", "state", "status"],
        version=STRING,
        state={
            "enum": ["UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END"]
        },
        status=obj(
            ["error_code", "error_message"], error_code=STRING, error_message=STRING
        ),
    ),
    "TFModelStatus": obj(
        ["model_version_status"],
        model_version_status={"type": "array", "items": ref("TFVersionStatus")},
    ),
    "TFMetadata": obj(
        ["model_spec", "metadata"],
        model_spec=obj(
            ["name", "signature_name", "version"],
            name=STRING,
            signature_name=STRING,
            version=STRING,
        ),
        metadata=obj(
            ["signature_def"],
            signature_def=obj(["signature_def"], signature_def={"type": "object"}),
            feature_names={"type": "array", "items": STRING},
            classes=nullable({"type": "array", "items": LABEL}),
        ),
    ),
    "TFPredictRequest": {
        "type": "object",
        "description": "Row format (`instances`) or columnar format (`inputs`), as "
        "TensorFlow Serving takes them. `signature_name` is "
        "`serving_default` (labels) or `predict_proba` (classifiers).",
        "properties": {
            "signature_name": STRING,
            "instances": {"type": "array", "minItems": 1},
            "inputs": {"type": ["array", "object", "number"]},
        },
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        "example": {"instances": [[5.1, 3.5, 1.4, 0.2]]},
    },
    "TFPrediction": {
        "oneOf": [
            obj(["predictions"], predictions=ANY_ARRAY),
            obj(["outputs"], outputs=ANY_ARRAY),
        ]
    },
    "TFExamplesRequest": {
        **obj(
            ["examples"],
            signature_name=STRING,
            examples={"type": "array", "minItems": 1, "items": OBJECT},
            context=OBJECT,
        ),
        "description": "tf.Example-style features by name: `context` is common to "
        "every example; an example's own value wins. A value is a "
        "number or a one-number list.",
        "example": {"examples": [{"x0": 5.1, "x1": 3.5, "x2": 1.4, "x3": 0.2}]},
    },
    "TFClassification": obj(
        ["results"],
        results={
            "type": "array",
            "description": "Per example: [label, score] for every class.",
            "items": {
                "type": "array",
                "items": {
                    "type": "array",
                    "items": {"type": ["string", "number"]},
                    "minItems": 2,
                    "maxItems": 2,
                    "description": "[label, score]",
                },
            },
        },
    ),
    "TFRegression": obj(["results"], results={"type": "array", "items": NUMBER}),
    # --- Open Inference Protocol (KServe v2)
    "V2ServerMetadata": obj(
        ["name", "version", "extensions"],
        name=STRING,
        version=STRING,
        extensions={"type": "array", "items": STRING},
    ),
    "V2Live": obj(["live"], live=BOOLEAN),
    "V2Ready": obj(["ready"], ready=BOOLEAN),
    "V2TensorMetadata": obj(
        ["name", "datatype", "shape"],
        name=STRING,
        datatype={"enum": TENSOR_DATATYPES},
        shape={"type": "array", "items": INTEGER},
    ),
    "V2ModelMetadata": obj(
        ["name", "versions", "platform", "inputs", "outputs"],
        name=STRING,
        versions={"type": "array", "items": STRING},
        platform=STRING,
        inputs={"type": "array", "items": ref("V2TensorMetadata")},
        outputs={"type": "array", "items": ref("V2TensorMetadata")},
    ),
    "V2ModelReady": obj(
        ["name", "version", "ready"], name=STRING, version=STRING, ready=BOOLEAN
    ),
    "V2InputTensor": obj(
        ["name", "shape", "datatype"],
        name={"type": "string", "minLength": 1},
        shape={
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 1,
        },
        datatype={"enum": TENSOR_DATATYPES},
        parameters=obj([], binary_data_size={"type": "integer", "minimum": 0}),
        data={
            "type": "array",
            "description": "Row-major values, flattened or nested; absent with "
            "binary_data_size.",
        },
    ),
    "V2RequestedOutput": obj(
        ["name"],
        name={"enum": ["predict", "predict_proba"]},
        parameters=obj(
            [], binary_data=BOOLEAN, classification={"type": "integer", "minimum": 0}
        ),
    ),
    "V2InferRequest": {
        **obj(
            ["inputs"],
            id=STRING,
            parameters=obj([], binary_data_output=BOOLEAN),
            inputs={"type": "array", "items": ref("V2InputTensor"), "minItems": 1},
            outputs={"type": "array", "items": ref("V2RequestedOutput"), "minItems": 1},
        ),
        "example": {
            "id": "42",
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "data": [5.1, 3.5, 1.4, 0.2, 6.2, 3.4, 5.4, 2.3],
                }
            ],
        },
    },
    "V2OutputTensor": obj(
        ["name", "shape", "datatype"],
        name=STRING,
        shape={"type": "array", "items": INTEGER},
        datatype={"enum": TENSOR_DATATYPES},
        parameters=obj([], binary_data_size=INTEGER),
        data=ANY_ARRAY,
    ),
    "V2InferResponse": obj(
        ["model_name", "model_version", "outputs"],
        model_name=STRING,
        model_version=STRING,
        id=STRING,
        parameters=OBJECT,
        outputs={"type": "array", "items": ref("V2OutputTensor")},
    ),
    "FeedbackItem": obj(
        ["request_id"],
        request_id={"type": "string", "minLength": 1, "maxLength": 64},
        row={"type": "integer", "minimum": 0, "default": 0},
        label=LABEL,
        value=NUMBER,
    ),
    "FeedbackRequest": {
        "oneOf": [
            ref("FeedbackItem"),
            obj(
                ["feedback"],
                feedback={"type": "array", "items": ref("FeedbackItem"), "minItems": 1},
            ),
            obj(
                ["instances"],
                instances={"type": "array", "items": ROW, "minItems": 1},
                labels={"type": "array", "items": LABEL},
                values={"type": "array", "items": NUMBER},
            ),
        ]
    },
    "FeedbackAnswer": obj(
        ["model", "accepted"], model=STRING, accepted=INTEGER, request_id=STRING
    ),
    "Estimate": obj(
        ["value", "low", "high", "n"],
        value=nullable(NUMBER),
        low=nullable(NUMBER),
        high=nullable(NUMBER),
        n=INTEGER,
    ),
    "Quality": obj(
        ["model", "task", "window", "since", "until", "versions", "canary"],
        model=STRING,
        task=STRING,
        window={"enum": ["hour", "day"]},
        since=TIMESTAMP,
        until=TIMESTAMP,
        intervals=OBJECT,
        versions={
            "type": "array",
            "items": obj(
                ["version", "total", "periods"],
                version=INTEGER,
                alias=nullable(STRING),
                total=OBJECT,
                periods={"type": "array", "items": OBJECT},
            ),
        },
        canary=nullable(OBJECT),
    ),
    "NativeExplanation": obj(
        [
            "model",
            "version",
            "explained_output",
            "method",
            "outputs",
            "features",
            "per_input_feature",
            "explanations",
            "request_id",
        ],
        model=STRING,
        version=INTEGER,
        explained_output={
            "enum": ["probability", "log_odds", "decision_function", "prediction"]
        },
        method={"enum": ["linear", "saabas"]},
        outputs={"type": "array", "items": LABEL},
        features={"type": "array", "items": STRING},
        per_input_feature=BOOLEAN,
        explanations={
            "type": "array",
            "items": obj(
                ["base_value", "output", "contributions"],
                base_value={"type": "array", "items": NUMBER},
                output={"type": "array", "items": NUMBER},
                contributions={
                    "type": "array",
                    "items": {"type": "array", "items": NUMBER},
                },
            ),
        },
        request_id=STRING,
    ),
    "BatchJobRequest": {
        "type": "object",
        "description": "Rows as in a prediction (`instances` or `inputs`); or send "
        "a CSV file instead, as `multipart/form-data` (field `file`) or a `text/csv` "
        "body, with a header naming every feature.",
        "properties": {
            "instances": {"type": "array", "items": ROW, "minItems": 1},
            "inputs": {
                "oneOf": [
                    {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": NUMBER},
                        "minProperties": 1,
                    },
                    {"type": "array", "items": ROW, "minItems": 1},
                ]
            },
        },
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        "example": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]},
    },
    "BatchJobUpload": obj(["file"], file={"type": "string", "format": "binary"}),
    "BatchJob": obj(
        [
            "id",
            "model",
            "version",
            "status",
            "runner",
            "percent",
            "rows",
            "chunks",
            "error",
            "created_at",
            "finished_at",
            "links",
        ],
        id=STRING,
        model=STRING,
        version=INTEGER,
        status={"enum": ["queued", "running", "done", "failed"]},
        runner={"enum": ["in-process", "celery"]},
        percent=INTEGER,
        rows=obj(["total", "done"], total=INTEGER, done=INTEGER),
        chunks=obj(
            ["total", "done", "running", "failed", "redone", "rows"],
            total=INTEGER,
            done=INTEGER,
            running=INTEGER,
            failed=INTEGER,
            redone=INTEGER,
            rows=INTEGER,
        ),
        error=nullable(obj(["code", "message"], code=STRING, message=STRING)),
        created_at=TIMESTAMP,
        finished_at=nullable(TIMESTAMP),
        links=obj(
            ["self", "results_csv", "results_jsonl"],
            self=STRING,
            results_csv=STRING,
            results_jsonl=STRING,
        ),
    ),
    # --- MLflow scoring protocol
    "MLflowError": {
        **obj(
            ["error_code", "message"],
            error_code=STRING,
            message=STRING,
            error=obj(["code"], code=STRING, field=STRING),
        ),
        "description": "MLflow's error shape (`error_code` from "
        "mlflow.protos.databricks_pb2, e.g. `BAD_REQUEST`, `INVALID_PARAMETER_VALUE`), "
        "with ModelDock's own `error.code` and `error.field`.",
    },
    "MLflowRequest": {
        "type": "object",
        "description": "Exactly one of `dataframe_split` (pandas' split orient; "
        "`index` is ignored), `dataframe_records` (records orient), `instances` "
        "(rows) or `inputs` (rows, or lists by column name); optional `params` "
        "(accepted, unused). Columns are matched to the model's feature names.",
        "properties": {
            "dataframe_split": obj(
                ["data"],
                columns={"type": "array", "items": {"type": ["string", "integer"]}},
                data={"type": "array", "minItems": 1},
                index={},
            ),
            "dataframe_records": {"type": "array", "items": OBJECT, "minItems": 1},
            "instances": {"type": "array", "minItems": 1},
            "inputs": {"type": ["array", "object"]},
            "params": nullable(OBJECT),
        },
        "oneOf": [
            {"required": [name]}
            for name in ("dataframe_split", "dataframe_records", "instances", "inputs")
        ],
        "example": {
            "dataframe_split": {
                "columns": [
                    "sepal_length",
                    "sepal_width",
                    "petal_length",
                    "petal_width",
                ],
                "data": [[5.1, 3.5, 1.4, 0.2]],
            }
        },
    },
    "MLflowPrediction": obj(["predictions"], predictions=ANY_ARRAY),
}

PATH_PARAMETERS = {
    "name": {"type": "string", "pattern": NAME_PATTERN.pattern, "example": "demo"},
    "number": {"type": "integer", "minimum": 1, "example": 1},
    "label": {"type": "string", "pattern": f"^{LABEL_PATTERN}$", "example": "stable"},
    "filename": {"type": "string", "example": "css/app.css"},
    "job_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
