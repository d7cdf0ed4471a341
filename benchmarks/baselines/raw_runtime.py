"""Baseline 2: framework-free WSGI, JSON → the runtime ModelDock picked → JSON.

No framework, no auth, no validation beyond numpy's, no logging: stdlib ``json``
in and out, and the same runtime ModelDock serves the model with (the same ONNX
graph in an onnxruntime session with the same thread settings, or the same
scikit-learn estimator). ``RAW_MODELS`` is ``name=runtime:path,...``; the model is
the last part of the URL path (``POST /predict/<name>``), the body
``{"instances": [[...], ...]}``.
"""

import json
import os

import joblib
import numpy as np
import onnxruntime


def _onnx(path):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with open(path, "rb") as handle:
        session = onnxruntime.InferenceSession(
            handle.read(), options, providers=["CPUExecutionProvider"]
        )
    name = session.get_inputs()[0].name
    single = session.get_inputs()[0].type == "tensor(float)"
    dtype = np.float32 if single else np.float64

    def predict(rows):
        labels, proba = session.run(None, {name: rows.astype(dtype)})[:2]
        return labels, proba

    return predict


def _sklearn(path):
    model = joblib.load(path)
    return lambda rows: (model.predict(rows), model.predict_proba(rows))


MODELS = {}
for spec in os.environ["RAW_MODELS"].split(","):
    model_name, _, rest = spec.partition("=")
    runtime, _, model_path = rest.partition(":")
    load = _onnx if runtime == "onnx" else _sklearn
    MODELS[model_name] = load(model_path)


def application(environ, start_response):
    predict = MODELS[environ["PATH_INFO"].rsplit("/", 1)[-1]]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length))
    labels, proba = predict(np.asarray(body["instances"], dtype=np.float64))
    out = json.dumps(
        {"predictions": labels.tolist(), "probabilities": proba.tolist()}
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(out)))],
    )
    return [out]
