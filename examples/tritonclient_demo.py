"""Ask ModelDock's demo model over the Open Inference Protocol with NVIDIA's client."""

import os

import numpy as np
import tritonclient.http as httpclient

URL = os.environ.get("MODELDOCK_URL", "127.0.0.1:5000")
KEY = os.environ["MODELDOCK_KEY"]


def headers():
    # A fresh dict per call: tritonclient adds its own headers to the one it is given.
    return {"Authorization": f"Bearer {KEY}"}


client = httpclient.InferenceServerClient(URL)
try:
    print(
        "live:",
        client.is_server_live(headers=headers()),
        "ready:",
        client.is_server_ready(headers=headers()),
    )
    metadata = client.get_model_metadata("demo", headers=headers())
    print("inputs:", metadata["inputs"])
    print("outputs:", metadata["outputs"])

    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]], dtype=np.float32)
    features = httpclient.InferInput("input", list(rows.shape), "FP32")
    features.set_data_from_numpy(rows)
    result = client.infer(
        "demo",
        [features],
        request_id="readme-1",
        headers=headers(),
        outputs=[
            httpclient.InferRequestedOutput("predict"),
            httpclient.InferRequestedOutput("predict_proba"),
        ],
    )
    print("id:", result.get_response()["id"])
    # Text labels arrive as a BYTES tensor: numpy bytes, one per row.
    print("labels:", [label.decode() for label in result.as_numpy("predict")])
    print("probabilities:", result.as_numpy("predict_proba").round(2).tolist())
    # True once the worker that answers has loaded the active version.
    print("model ready here:", client.is_model_ready("demo", headers=headers()))
finally:
    client.close()
