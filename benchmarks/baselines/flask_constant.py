"""Reference: Flask itself, answering a constant JSON body (what the framework costs).

Not one of the issue's baselines; it separates Flask's own cost from ModelDock's in
the benchmark's attribution of the gap to the constant-JSON ceiling.
"""

from flask import Flask, Response, request

app = Flask(__name__)
BODY = b'{"predictions":[0]}'


@app.post("/predict")
def predict():
    request.get_data()
    return Response(BODY, mimetype="application/json")
