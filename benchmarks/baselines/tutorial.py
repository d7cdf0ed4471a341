"""Baseline 1: the classic tutorial model server (Flask, joblib.load at import).

    model = joblib.load("model.pkl")
    @app.route("/predict", methods=["POST"]) ... model.predict([features])

Started by the benchmark as ``gunicorn tutorial:app`` with ``TUTORIAL_MODEL`` set.
"""

import os

import joblib
import numpy as np
from flask import Flask, jsonify, request

app = Flask(__name__)
model = joblib.load(os.environ["TUTORIAL_MODEL"])


@app.route("/predict", methods=["POST"])
def predict():
    data = request.get_json(force=True)
    prediction = model.predict([np.array(data["features"])])
    return jsonify({"prediction": prediction.tolist()})
