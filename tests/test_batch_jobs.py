"""Batch jobs without a broker (the embedded default): the JSON batch API, CSV files,
chunks stored in the database, idempotent chunk writes, clear errors; on SQLite and
PostgreSQL. The same jobs on Celery workers: tests/test_celery_jobs.py."""

from __future__ import annotations

import csv
import io
import time

import numpy as np
import orjson
import pytest
from sqlalchemy import func, select

from app.batch import chunks, storage
from app.extensions import db
from app.models import BatchChunk, BatchJob
from tests.conftest import auth, upload
from tests.live import free_port

SMALL_CHUNKS = {"MODELDOCK_BATCH_CHUNK_ROWS": 40}


@pytest.fixture
def iris_app(app, keys, iris):
    client = app.test_client()
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    return app, client, keys


def submit(client, key, body=None, model="iris", **kwargs):
    if body is not None:
        kwargs["json"] = body
    return client.post(f"/api/v1/models/{model}/jobs", headers=auth(key), **kwargs)


def wait_done(client, key, location, timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with client.get(location, headers=auth(key)) as response:
            assert response.status_code == 200, response.text
            state = response.json
        if state["status"] in {"done", "failed"}:
            return state
        time.sleep(0.05)
    raise AssertionError(f"the job did not finish: {state}")


def results(client, key, job_id, form="csv"):
    with client.get(
        f"/api/v1/jobs/{job_id}/results?format={form}", headers=auth(key)
    ) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Disposition"].startswith("attachment;")
        return response.text


@pytest.mark.config(**SMALL_CHUNKS)
def test_json_rows_in_chunks_equal_the_model_as_csv_and_json_lines(iris_app, iris):
    app, client, keys = iris_app
    rng = np.random.default_rng(1)
    rows = rng.uniform(0.1, 7.0, size=(1001, 4)).round(3)
    with submit(client, keys.predict, {"instances": rows.tolist()}) as response:
        assert response.status_code == 202, response.text
        job = response.json
        assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["rows"]["total"] == 1001 and job["chunks"]["total"] == 26
    assert job["runner"] == "in-process" and job["status"] in {"queued", "running"}
    state = wait_done(client, keys.predict, response.headers["Location"])
    assert state["status"] == "done", state
    assert state["rows"] == {"total": 1001, "done": 1001}
    assert state["chunks"]["done"] == 26 and state["chunks"]["redone"] == 0
    assert state["percent"] == 100 and state["error"] is None
    expected = iris.estimator.predict(rows)
    proba = iris.estimator.predict_proba(rows)

    table = list(csv.reader(io.StringIO(results(client, keys.predict, job["id"]))))
    assert table[0] == [
        "x0",
        "x1",
        "x2",
        "x3",
        "prediction",
        "probability_0",
        "probability_1",
        "probability_2",
    ]
    assert len(table) == 1002
    assert [int(r[4]) for r in table[1:]] == expected.tolist()
    np.testing.assert_allclose([[float(v) for v in r[:4]] for r in table[1:]], rows)
    np.testing.assert_allclose(
        [[float(v) for v in r[5:]] for r in table[1:]], proba, atol=1e-6
    )

    lines = results(client, keys.predict, job["id"], "jsonl").splitlines()
    parsed = [orjson.loads(line) for line in lines]
    assert [p["row"] for p in parsed] == list(range(1001))
    assert [p["prediction"] for p in parsed] == expected.tolist()
    assert list(parsed[0]["probabilities"]) == ["0", "1", "2"]
    np.testing.assert_allclose(
        [list(p["probabilities"].values()) for p in parsed], proba, atol=1e-6
    )
    with app.app_context():  # one row per chunk, every result stored beside it
        count = db.session.scalar(
            select(func.count()).where(BatchChunk.job_id == job["id"])
        )
        assert count == 26


def test_a_csv_file_by_multipart_or_text_csv_keeps_extra_columns(iris_app, iris):
    app, client, keys = iris_app
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    text = "id,x3,x2,x1,x0\n" + "\n".join(
        f"r{i},{r[3]},{r[2]},{r[1]},{r[0]}" for i, r in enumerate(iris.X[:30])
    )
    boundary, body = encode_multipart(
        {"file": FileStorage(io.BytesIO(text.encode()), filename="f.csv", name="file")}
    )
    kinds = [
        {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"},
        {"data": text.encode(), "content_type": "text/csv"},
    ]
    for kind in kinds:
        with submit(client, keys.predict, **kind) as response:
            assert response.status_code == 202, response.text
        state = wait_done(client, keys.predict, response.headers["Location"])
        assert state["status"] == "done"
        table = list(
            csv.reader(io.StringIO(results(client, keys.predict, state["id"])))
        )
        assert table[0][:6] == ["id", "x3", "x2", "x1", "x0", "prediction"]
        assert [r[0] for r in table[1:]] == [f"r{i}" for i in range(30)]
        assert [int(r[5]) for r in table[1:]] == iris.estimator.predict(
            iris.X[:30]
        ).tolist()


def test_bad_input_gets_a_stable_code_and_field(iris_app):
    app, client, keys = iris_app
    cases = [
        ({"rows": [[1, 2, 3, 4]]}, {}, 400, "invalid_body", "instances"),
        ({"instances": [[1, 2, 3]]}, {}, 400, "wrong_feature_count", "instances[0]"),
        ({"instances": [[1, 2, 3, "x"]]}, {}, 400, "non_numeric_value",
         "instances[0][3]"),
        (None, {"data": "x0,x1\n1,2\n", "content_type": "text/csv"}, 400,
         "missing_feature", "file"),
        (None, {"data": "x0,x1,x2,x3\n", "content_type": "text/csv"}, 400,
         "empty_batch", "file"),
        (None, {"data": b"<xml/>", "content_type": "application/xml"}, 415,
         "unsupported_media_type", "Content-Type"),
    ]  # fmt: skip
    for body, kwargs, status, code, field in cases:
        with submit(client, keys.predict, body, **kwargs) as response:
            assert response.status_code == status, (body, response.text)
            error = response.json["error"]
            assert (error["code"], error["field"]) == (code, field), error
    with submit(client, keys.predict, {"instances": [[1, 2, 3, 4]]}, "nope") as r:
        assert (r.status_code, r.json["error"]["code"]) == (404, "model_not_found")
    with client.post(
        "/api/v1/models/iris/jobs", json={"instances": [[1, 2, 3, 4]]}
    ) as anonymous:
        assert anonymous.status_code == 401
    app.config["MODELDOCK_BATCH_MAX_ROWS"] = 3
    try:
        with submit(client, keys.predict, {"instances": [[1, 2, 3, 4]] * 4}) as r:
            assert (r.status_code, r.json["error"]["code"]) == (413, "batch_too_large")
    finally:
        app.config["MODELDOCK_BATCH_MAX_ROWS"] = 1_000_000
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(BatchJob)) == 0


def test_jobs_are_private_and_unknown_ones_404(iris_app):
    app, client, keys = iris_app
    with submit(client, keys.predict, {"instances": [[1, 2, 3, 4]]}) as response:
        location = response.headers["Location"]
        job_id = response.json["id"]
    wait_done(client, keys.predict, location)
    for path in (location, f"{location}/results", "/api/v1/jobs/" + "0" * 32):
        key = keys.admin if path.startswith(location) else keys.predict
        with client.get(path, headers=auth(key)) as other:
            assert other.status_code == 404, path
            assert other.json["error"] == {
                "code": "job_not_found",
                "message": "no such batch job (results are kept for a limited time)",
                "field": "job",
            }
    with client.get(
        f"/api/v1/jobs/{job_id}/results?format=xml", headers=auth(keys.predict)
    ) as bad:
        assert bad.status_code == 400
        assert (bad.json["error"]["code"], bad.json["error"]["field"]) == (
            "invalid_format",
            "format",
        )


@pytest.mark.config(**SMALL_CHUNKS)
def test_a_bad_cell_fails_the_job_and_results_are_refused(iris_app):
    app, client, keys = iris_app
    text = "x0,x1,x2,x3\n" + "1,2,3,4\n" * 50 + "1,2,oops,4\n"
    with submit(client, keys.predict, data=text, content_type="text/csv") as response:
        location = response.headers["Location"]
    state = wait_done(client, keys.predict, location)
    assert state["status"] == "failed"
    assert state["error"] == {
        "code": "non_numeric_value",
        "message": "line 52, column 'x2': 'oops' is not a number",
    }
    assert state["chunks"]["failed"] == 1 and state["chunks"]["done"] == 1
    with client.get(f"{location}/results", headers=auth(keys.predict)) as refused:
        assert refused.status_code == 409
        assert refused.json["error"]["code"] == "job_failed"


@pytest.mark.config(**SMALL_CHUNKS)
def test_a_redone_chunk_overwrites_its_row_and_a_done_one_is_skipped(iris_app, iris):
    """What acks-late redelivery does to the database: nothing twice."""
    app, client, keys = iris_app
    rows = iris.X[:100]
    with app.app_context():
        from app.batch import jobs
        from app.serving import predict

        _, version = predict.resolve("iris", alias="stable")
        job = jobs.from_matrix(keys.user_id, "iris", version, rows)
        db.session.commit()
        job_id = job.id
        assert chunks.run_chunk(job_id, 0, "w1") == "done"
        assert chunks.run_chunk(job_id, 0, "w1") == "skipped"  # delivered again
        # A worker died while it held chunk 1: it stays "running", then is redone.
        db.session.execute(
            BatchChunk.__table__.update()
            .where(BatchChunk.job_id == job_id, BatchChunk.chunk_index == 1)
            .values(status="running", attempts=1, worker="w-dead")
        )
        db.session.commit()
        assert storage.progress(job).status == "running"
        for index in (1, 2):
            assert chunks.run_chunk(job_id, index, "w2") == "done"
        job = db.session.get(BatchJob, job_id)
        state = storage.progress(job)
        assert (state.status, state.done_rows, state.redone_chunks) == ("done", 100, 1)
        assert (
            db.session.scalar(select(func.count()).where(BatchChunk.job_id == job_id))
            == 3
        )
        labels = [row[4] for row in storage.table_rows(job)]
        assert labels == iris.estimator.predict(rows).tolist()
        db.session.remove()


def test_an_unreachable_broker_fails_the_submission_clearly(app, keys, iris):
    client = app.test_client()
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    app.config["MODELDOCK_CELERY_BROKER_URL"] = (
        f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    )
    from app.batch import runner

    runner.init_app(app)
    with submit(client, keys.predict, {"instances": [[1, 2, 3, 4]]}) as response:
        assert response.status_code == 503
        assert response.json["error"]["code"] == "broker_unavailable"
    with app.app_context():
        job = db.session.scalars(select(BatchJob)).one()
        assert job.runner == "celery"
        assert storage.progress(job).status == "failed"


def test_string_classes_as_the_demo_model_has(app, keys, iris):
    """Labels that are text (an object array in numpy) are stored and read back."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model = LogisticRegression(max_iter=500).fit(
        data.data, data.target_names[data.target]
    )
    client = app.test_client()
    named = type(iris)(model, data.data)
    assert upload(client, keys.admin, "flowers", named.as_skops()).status_code == 201
    with submit(
        client, keys.predict, {"instances": data.data.tolist()}, "flowers"
    ) as r:
        assert r.status_code == 202, r.text
    state = wait_done(client, keys.predict, r.headers["Location"])
    assert state["status"] == "done", state
    lines = results(client, keys.predict, state["id"], "jsonl").splitlines()
    assert [orjson.loads(line)["prediction"] for line in lines] == model.predict(
        data.data
    ).tolist()
    assert list(orjson.loads(lines[0])["probabilities"]) == list(data.target_names)
