"""Predicting in the browser pages, through the Flask test client: the form, CSV jobs
(their results, download, size cap, progress, state shared by workers), the account."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import timedelta

import numpy as np
import pytest

from app.extensions import db
from app.models import ApiKey, BatchChunk, BatchJob
from app.models._time import utcnow
from tests.conftest import BACKENDS, auth, build_app, make_keys, running_app, sign_in

ALICE = ("alice", "alice password 1")
ROOT = ("root", "correct horse battery")


@pytest.fixture(scope="module", params=BACKENDS)
def site(request, tmp_path_factory, iris, diabetes):
    """One app per backend with a classifier and a regressor."""
    with running_app(request.param, tmp_path_factory.mktemp("db")) as app:
        keys = make_keys(app)
        with app.app_context():
            from app.rollout import versions as service

            service.upload_version("iris", "iris.skops", iris.as_skops())
            service.upload_version("diabetes", "d.joblib", diabetes.as_joblib())
            db.session.commit()
        yield app, keys


def client_for(app, who=ALICE):
    client = app.test_client()
    return client, sign_in(client, *who)


def upload_csv(client, token, model, text, filename="data.csv"):
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    # Encoded in memory: the test client's encoder leaks a temp file for large bodies.
    boundary, body = encode_multipart(
        {
            "csrf_token": token,
            "file": FileStorage(
                io.BytesIO(text.encode()), filename=filename, name="file"
            ),
        }
    )
    return client.post(
        f"/models/{model}/csv",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def finished(client, location, timeout=60.0):
    """Poll a job page like the browser does until it shows results."""
    deadline, seen_progress = time.monotonic() + timeout, False
    while time.monotonic() < deadline:
        with client.get(location) as page:
            if "Results for" in page.text:
                return page.text, seen_progress
            assert "job-error" not in page.text, page.text[-800:]
            assert '<meta http-equiv="refresh" content="1">' in page.text
            seen_progress = seen_progress or "<progress" in page.text
        time.sleep(0.2)
    raise AssertionError("the job did not finish")


def download(client, location):
    with client.get(location + "/download") as response:
        assert response.status_code == 200
        assert response.headers["Content-Disposition"].startswith("attachment;")
        return list(csv.reader(io.StringIO(response.text)))


def test_form_prediction_equals_the_model_and_bad_fields_are_marked(site, iris):
    app, _ = site
    client, token = client_for(app)
    row = iris.X[120]
    data = {"csrf_token": token, **{f"f{i}": str(v) for i, v in enumerate(row)}}
    with client.post("/models/iris", data=data) as page:
        assert page.status_code == 200
        shown = re.search(r'<output id="prediction"[^>]*>([^<]*)<', page.text).group(1)
        assert shown == str(iris.estimator.predict(row.reshape(1, -1))[0])
        assert 'for="f0">x0</label>' in page.text  # one labelled field per feature
    with client.post("/models/iris", data={**data, "f2": "tall"}) as page:
        assert page.status_code == 400
        assert 'id="f2-error" class="error">&#39;tall&#39; is not a number' in page.text
        assert 'aria-invalid="true"' in page.text


def test_csv_results_download_matches_predict_and_neutralises_formulas(site, iris):
    app, _ = site
    client, token = client_for(app)
    rows = iris.X[::3]
    text = "note,x2,x0,x3,x1\n" + "".join(
        f"{'=1+2' if i % 2 else '-7'},{r[2]},{r[0]},{r[3]},{r[1]}\n"
        for i, r in enumerate(rows)
    )
    with upload_csv(client, token, "iris", text, "flowers.csv") as response:
        assert response.status_code == 302
        location = response.headers["Location"]
    page, _ = finished(client, location)
    assert "50 rows predicted by iris version 1" in page
    assert page.count('<svg class="chart"') == 1 and "Rows per predicted class" in page
    table = download(client, location)
    assert table[0] == [
        "note",
        "x2",
        "x0",
        "x3",
        "x1",
        "prediction",
        "probability_0",
        "probability_1",
        "probability_2",
    ]
    assert [int(r[5]) for r in table[1:]] == iris.estimator.predict(rows).tolist()
    np.testing.assert_allclose(
        [[float(v) for v in r[6:]] for r in table[1:]],
        iris.estimator.predict_proba(rows),
        rtol=1e-9,
    )
    assert [r[0] for r in table[1:3]] == ["-7", "'=1+2"]
    np.testing.assert_allclose(
        [[float(r[2]), float(r[4]), float(r[1]), float(r[3])] for r in table[1:]], rows
    )


def test_regressor_results_get_a_histogram_and_negative_numbers_stay_numbers(
    site, diabetes
):
    app, _ = site
    client, token = client_for(app)
    names = [f"x{i}" for i in range(10)]
    out = io.StringIO()
    csv.writer(out).writerows([names, *diabetes.X.tolist()])
    with upload_csv(client, token, "diabetes", out.getvalue()) as response:
        location = response.headers["Location"]
    page, _ = finished(client, location)
    assert "Histogram of predicted values" in page
    table = download(client, location)
    assert table[0] == [*names, "prediction"]
    np.testing.assert_allclose(
        [[float(v) for v in r[:10]] for r in table[1:]], diabetes.X
    )
    np.testing.assert_allclose(
        [float(r[10]) for r in table[1:]], diabetes.estimator.predict(diabetes.X)
    )


def test_missing_columns_are_named_and_nothing_runs(site):
    app, _ = site
    client, token = client_for(app)
    with app.app_context():
        before = db.session.query(BatchJob).count()
    with upload_csv(client, token, "iris", "x0,x2,id\n1,2,3\n") as page:
        assert page.status_code == 400
        assert "missing column(s): x1, x3" in page.text
        assert 'id="file-error"' in page.text
    with app.app_context():
        assert db.session.query(BatchJob).count() == before


def test_row_cap_is_configurable(site):
    app, _ = site
    client, token = client_for(app)
    app.config["MODELDOCK_CSV_MAX_ROWS"] = 3
    try:
        text = "x0,x1,x2,x3\n" + "1,2,3,4\n" * 4
        with upload_csv(client, token, "iris", text) as page:
            assert page.status_code == 413
            assert "more than 3 rows" in page.text
    finally:
        app.config["MODELDOCK_CSV_MAX_ROWS"] = 100_000


def test_bad_cell_fails_the_job_with_its_line_and_column(site):
    app, _ = site
    client, token = client_for(app)
    with upload_csv(
        client, token, "iris", "x0,x1,x2,x3\n1,2,3,4\n1,2,oops,4\n"
    ) as response:
        location = response.headers["Location"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with client.get(location) as page:
            if "job-error" in page.text:
                break
        time.sleep(0.1)
    assert "line 3, column &#39;x2&#39;: &#39;oops&#39; is not a number" in page.text


def test_100k_rows_show_progress_then_results_from_another_worker(site, iris):
    """The cap's full size, with the progress page; a second app (another worker's
    memory) on the same database answers the progress and download too."""
    app, _ = site
    if not app.config["DATABASE_URL"].startswith("sqlite"):
        pytest.skip("on PostgreSQL: tests/test_browser.py (gunicorn, two workers)")
    client, token = client_for(app)
    rng = np.random.default_rng(3)
    rows = rng.uniform(0.1, 7.0, size=(100_000, 4)).round(2)
    out = io.StringIO()
    np.savetxt(out, rows, delimiter=",", header="x3,x2,x1,x0", comments="", fmt="%.2f")
    app.config["MODELDOCK_CSV_WAIT_SECONDS"] = 0.0
    other = build_app(
        app.config["DATABASE_URL"], app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    )
    try:
        started = time.perf_counter()
        with upload_csv(client, token, "iris", out.getvalue(), "big.csv") as response:
            location = response.headers["Location"]
        other_client = other.test_client()
        other_client.set_cookie("session", client.get_cookie("session").value)
        page, seen_progress = finished(other_client, location)
        elapsed = time.perf_counter() - started
        assert seen_progress
        assert "100,000 rows predicted" in page and "Page 1 of 2000" in page
        assert elapsed < 60, elapsed
        table = download(other_client, location)
    finally:
        app.config["MODELDOCK_CSV_WAIT_SECONDS"] = 2.0
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
    assert len(table) == 100_001
    expected = iris.estimator.predict(rows[:, ::-1])  # the header was x3,x2,x1,x0
    assert [int(r[4]) for r in table[1:]] == expected.tolist()


def test_jobs_are_private_and_a_dead_worker_is_reported(site):
    app, keys = site
    with app.app_context():
        for job_id, owner in (("a" * 32, keys.user_id), ("b" * 32, keys.admin_user_id)):
            db.session.add(
                BatchJob(
                    id=job_id,
                    user_id=owner,
                    model_name="iris",
                    version=1,
                    filename="x.csv",
                    input_columns=["x0", "x1", "x2", "x3"],
                    total_rows=10,
                    chunk_rows=5,
                    total_chunks=2,
                    updated_at=utcnow() - timedelta(minutes=10),
                )
            )
            db.session.flush()
            db.session.add(
                BatchChunk(
                    job_id=job_id, chunk_index=0, rows=5, status="done", input=b""
                )
            )
        db.session.commit()
    client, _ = client_for(app)
    with client.get("/jobs/" + "b" * 32) as other_users:
        assert other_users.status_code == 404
    with client.get("/jobs/" + "a" * 32) as page:
        assert "The worker running this job stopped" in page.text
        assert "refresh" not in page.text


def test_account_key_is_shown_once_then_only_by_prefix(site):
    app, keys = site
    client, token = client_for(app)
    with client.post(
        "/account/keys", data={"csrf_token": token, "name": "ci", "scope_predict": "y"}
    ) as page:
        assert page.status_code == 200
        assert page.headers["Cache-Control"] == "no-store"
        key = re.search(
            r'id="new-key" class="key" readonly value="([^"]+)"', page.text
        ).group(1)
    with client.get("/account") as page:
        assert key not in page.text and key[:12] in page.text
    assert app.test_client().get("/api/v1/models", headers=auth(key)).status_code == 200
    with client.post(
        "/account/keys", data={"csrf_token": token, "name": "x", "scope_admin": "y"}
    ) as refused:
        assert refused.status_code == 403
        assert "only admins can hold admin-scope keys" in refused.text
    with app.app_context():
        mine = db.session.query(ApiKey).filter_by(name="ci").one().id
        root_key = (
            db.session.query(ApiKey).filter_by(user_id=keys.admin_user_id).first()
        )
    with client.post(
        f"/account/keys/{root_key.id}/revoke", data={"csrf_token": token}
    ) as not_mine:
        assert not_mine.status_code == 404
    with client.post(
        f"/account/keys/{mine}/revoke", data={"csrf_token": token}
    ) as done:
        assert done.status_code == 302
    assert app.test_client().get("/api/v1/models", headers=auth(key)).status_code == 401
