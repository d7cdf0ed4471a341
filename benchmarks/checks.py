"""Before any timing: every app must answer correctly (and warm up its workers)."""

from __future__ import annotations

import http.client
import json

import numpy as np


def post(port: int, path: str, body: bytes, headers: dict[str, str]):
    """One POST on a new connection; return (status, decoded JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/json", **headers},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def hit(port: int, path: str, body: bytes, headers: dict[str, str], times: int):
    """Send ``times`` requests, each on a new connection (so every worker gets some)."""
    for _ in range(times):
        status, answer = post(port, path, body, headers)
        if status != 200:
            raise AssertionError(f"{path} answered {status}: {answer}")


def _same(answer_labels, answer_proba, estimator, rows, where: str) -> None:
    if answer_labels != estimator.predict(rows).tolist():
        raise AssertionError(f"{where}: labels differ from scikit-learn")
    if answer_proba is not None:
        gap = np.abs(np.asarray(answer_proba) - estimator.predict_proba(rows)).max()
        if gap > 1e-5:
            raise AssertionError(f"{where}: probabilities differ by {gap}")


def check_answers(
    servers: dict, key: str, X, models: dict, bodies: dict, only: str | None = None
) -> list[str]:
    """Compare every app's answers with scikit-learn's on the benchmark bodies."""
    done = []
    auth = {"X-API-Key": key}
    for model, estimator in models.items():
        for size, body in bodies.items():
            rows, native = body["rows"], json.dumps(body["native"]).encode()
            targets = [
                (name, f"/api/v1/models/{model}/predict", auth)
                for name in servers
                if name.startswith("modeldock")
            ]
            if "raw" in servers:
                targets.append(("raw", f"/predict/{model}", {}))
            for name, path, headers in targets:
                if only is not None and name != only:
                    continue
                for _ in range(10):  # new connections: each worker answers some
                    status, answer = post(servers[name].port, path, native, headers)
                    assert status == 200, (name, answer)
                    _same(
                        answer["predictions"],
                        answer["probabilities"],
                        estimator,
                        rows,
                        f"{name}/{model}/{size} rows",
                    )
                done.append(f"{name}/{model}/{size}")
            if body["tutorial"] is not None and only is None:
                tutorial = json.dumps(body["tutorial"]).encode()
                for _ in range(10):
                    status, answer = post(
                        servers[f"tutorial-{model}"].port, "/predict", tutorial, {}
                    )
                    assert status == 200, answer
                    _same(
                        answer["prediction"], None, estimator, rows, f"tutorial/{model}"
                    )
                done.append(f"tutorial/{model}/{size}")
    if only is None:
        for name in ("constant", "flask-constant"):
            status, _ = post(servers[name].port, "/predict", b"{}", {})
            assert status == 200, name
    return done
