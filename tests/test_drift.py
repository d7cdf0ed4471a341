"""Feature drift: reference bins at upload, the live sketch and the payload path,
PSI and two-sample tests per feature, the page, the API and the gauges."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import event, func, select
from werkzeug.datastructures import FileStorage

from app.extensions import db
from app.models import DriftCount, DriftReference
from app.observability.reference import BinSpec, describe_rows
from app.observability.request_log import writer
from app.observability.sketch import sketch
from tests.conftest import (
    Trained,
    auth,
    clear_of_the_hour,
    make_keys,
    running_app,
    sign_in,
    upload,
)

SHIFTED = 3  # the feature moved by +3 standard deviations
DRIFT_CONFIG = {"MODELDOCK_DRIFT_FLUSH_SECONDS": 0.0, "MODELDOCK_LOG_PAYLOADS": True}


@pytest.fixture(scope="module")
def cancer() -> Trained:
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return Trained(model.fit(X, y), X)


def reference_csv(X: np.ndarray) -> FileStorage:
    header = ",".join(f"x{j}" for j in range(X.shape[1]))
    lines = [header, *(",".join(repr(float(v)) for v in row) for row in X)]
    return FileStorage(
        io.BytesIO("\n".join(lines).encode()), filename="train.csv", name="reference"
    )


def live_rows(X: np.ndarray, n: int = 600) -> np.ndarray:
    """Rows drawn from the reference, with one feature shifted by 3 std."""
    rows = X[np.random.default_rng(7).integers(0, len(X), n)].copy()
    rows[:, SHIFTED] += 3 * X[:, SHIFTED].std()
    return rows


def send(client, key: str, rows: np.ndarray, batch: int = 20) -> None:
    for start in range(0, len(rows), batch):
        response = client.post(
            "/api/v1/models/cancer/predict",
            json={"instances": rows[start : start + batch].tolist()},
            headers=auth(key),
        )
        assert response.status_code == 200, response.text


def upload_with_reference(client, keys, cancer):
    """Upload the cancer model with its training rows as the reference sample."""
    reference = reference_csv(cancer.X)
    response = upload(
        client, keys.admin, "cancer", cancer.as_skops(), reference=reference
    )
    assert response.status_code == 201, response.text
    return response


def drifted_app(app, cancer):
    """Upload with a reference, send shifted traffic, write sketch and logs."""
    clear_of_the_hour()
    keys = make_keys(app)
    client = app.test_client()
    upload_with_reference(client, keys, cancer)
    send(client, keys.predict, live_rows(cancer.X))
    sketch_of = app.extensions["modeldock.drift_sketch"]
    with app.app_context():
        sketch_of.flush()
        writer().flush()
    return client, keys


def by_feature(body: dict) -> dict[str, dict]:
    return {f["feature"]: f for f in body["windows"][0]["features"]}


def textbook(reference: np.ndarray, live: np.ndarray) -> dict[str, dict]:
    """Per feature, computed here with numpy and scipy (docs/drift.md): PSI over
    the reference's decile bins, empty shares counted as 0.0001; Pearson's
    chi-square on those bins; Kolmogorov-Smirnov on the raw values."""
    expected = {}
    for j in range(reference.shape[1]):
        edges = np.quantile(reference[:, j], np.linspace(0, 1, 11)[1:-1])
        bins = [-np.inf, *edges, np.inf]
        ref_counts = np.histogram(reference[:, j], bins)[0]
        live_counts = np.histogram(live[:, j], bins)[0]
        ref_share = np.maximum(ref_counts / ref_counts.sum(), 1e-4)
        live_share = np.maximum(live_counts / live_counts.sum(), 1e-4)
        table = np.vstack([ref_counts, live_counts])
        expected[f"x{j}"] = {
            "psi": np.sum((live_share - ref_share) * np.log(live_share / ref_share)),
            "chi2": scipy_stats.chi2_contingency(table[:, table.sum(axis=0) > 0])[1],
            "ks": scipy_stats.ks_2samp(reference[:, j], live[:, j]).pvalue,
        }
    return expected


@pytest.mark.config(**DRIFT_CONFIG)
def test_upload_with_a_reference_csv_records_bins(app, client, keys, cancer):
    upload_with_reference(client, keys, cancer)
    with app.app_context():
        reference = db.session.get(DriftReference, 1)
        assert reference.rows == len(cancer.X) and reference.source == "csv"
        first = reference.features[0]
        assert first["kind"] == "numeric" and len(first["edges"]) == 9
        assert sum(first["counts"]) == len(cancer.X)
        counts = np.asarray(first["counts"][:-1])  # deciles: about a tenth each
        assert counts.min() >= 0.08 * len(cancer.X)
        assert len(reference.values[0]) == len(cancer.X)


@pytest.mark.config(**DRIFT_CONFIG)
def test_a_bad_reference_csv_is_refused_with_its_field(client, keys, cancer):
    bad = FileStorage(io.BytesIO(b"x0,x1\n1,2\n"), filename="r.csv", name="reference")
    response = upload(client, keys.admin, "cancer", cancer.as_skops(), reference=bad)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "reference" and "x2" in error["message"]


@pytest.mark.config(**DRIFT_CONFIG)
def test_a_shifted_feature_is_flagged_and_the_others_are_not(app, cancer):
    client, keys = drifted_app(app, cancer)
    expected = textbook(cancer.X, live_rows(cancer.X))
    for window in ("hour", "day"):
        response = client.get(
            f"/api/v1/models/cancer/drift?window={window}", headers=auth(keys.admin)
        )
        assert response.status_code == 200, response.text
        body = response.get_json()
        assert body["reference"]["rows"] == len(cancer.X)
        assert body["windows"][0]["rows"] == 600
        features = by_feature(body)
        shifted = features[f"x{SHIFTED}"]
        assert shifted["psi"] > 0.2 and shifted["pvalue"] < 0.01
        assert shifted["verdict"] == "drift" and shifted["test"] == "chi2"
        others = [f for name, f in features.items() if name != f"x{SHIFTED}"]
        assert len(others) == 29
        assert all(f["psi"] < 0.1 and f["verdict"] != "drift" for f in others)
        assert sum(f["pvalue"] < 0.01 for f in others) <= 1
        for name, want in expected.items():
            assert features[name]["psi"] == pytest.approx(want["psi"], rel=1e-9), name
            assert features[name]["pvalue"] == pytest.approx(want["chi2"], rel=1e-6)


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_the_sketch_and_the_payload_logs_agree(backend_name, tmp_path, cancer):
    """Same traffic, two deployments: one counts in the sketch, one reads logs."""
    results = {}
    for source in ("sketch", "payloads"):
        with running_app(
            backend_name, tmp_path, **DRIFT_CONFIG, MODELDOCK_DRIFT_SOURCE=source
        ) as app:
            client, keys = drifted_app(app, cancer)
            response = client.get(
                "/api/v1/models/cancer/drift?window=day", headers=auth(keys.admin)
            )
            assert response.status_code == 200, response.text
            results[source] = by_feature(response.get_json())
    sketched, logged = results["sketch"], results["payloads"]
    assert sketched.keys() == logged.keys()
    expected = textbook(cancer.X, live_rows(cancer.X))
    for name in sketched:
        assert sketched[name]["rows"] == logged[name]["rows"] == 600
        assert sketched[name]["psi"] == pytest.approx(logged[name]["psi"], abs=1e-12)
        assert logged[name]["test"] == "ks"
        assert logged[name]["pvalue"] == pytest.approx(expected[name]["ks"], rel=1e-6)
        assert (sketched[name]["verdict"] == "drift") == (
            logged[name]["verdict"] == "drift"
        ), name
    assert logged[f"x{SHIFTED}"]["pvalue"] < 1e-10


@pytest.mark.config(**DRIFT_CONFIG)
def test_a_model_without_reference_says_so(app, client, keys, iris):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    response = client.post(
        "/api/v1/models/iris/predict",
        json={"instances": iris.X[:3].tolist()},
        headers=auth(keys.predict),
    )
    assert response.status_code == 200
    response = client.get("/api/v1/models/iris/drift", headers=auth(keys.admin))
    assert response.status_code == 200
    body = response.get_json()
    assert body["reference"] is None and body["windows"] == []
    assert "no reference sample" in body["message"]
    sign_in(client, "root", "correct horse battery")
    page = client.get("/admin/models/iris")
    assert page.status_code == 200
    assert "no reference sample" in page.text


@pytest.mark.config(**DRIFT_CONFIG)
def test_bad_drift_arguments_are_json_errors(app, client, keys, iris):
    upload(client, keys.admin, "iris", iris.as_skops())
    for query, field in (("window=week", "window"), ("version=x", "version")):
        response = client.get(
            f"/api/v1/models/iris/drift?{query}", headers=auth(keys.admin)
        )
        assert response.status_code == 400
        assert response.get_json()["error"]["field"] == field
    response = client.get("/api/v1/models/nope/drift", headers=auth(keys.admin))
    assert response.status_code == 404
    response = client.get("/api/v1/models/iris/drift", headers=auth(keys.predict))
    assert response.status_code == 403


@pytest.mark.config(**DRIFT_CONFIG, MODELDOCK_METRICS_ALLOW=["127.0.0.1/32"])
def test_the_page_and_the_gauges_show_the_drifted_feature(app, cancer):
    client, keys = drifted_app(app, cancer)
    sign_in(client, "root", "correct horse battery")
    page = client.get("/admin/models/cancer")
    assert page.status_code == 200
    assert 'id="drift-table"' in page.text
    row = page.text.split(f'id="drift-x{SHIFTED}"')[1].split("</tr>")[0]
    assert "badge-drift" in row
    assert page.text.count('<svg class="chart"') >= 30
    metrics = client.get("/metrics").text
    psi = [
        line
        for line in metrics.splitlines()
        if line.startswith("modeldock_feature_drift_psi{")
        and f'feature="x{SHIFTED}"' in line
    ]
    assert len(psi) == 2  # the hour and the day window
    assert all('model="cancer"' in line and 'version="1"' in line for line in psi)
    assert all(float(line.rsplit(" ", 1)[1]) > 0.2 for line in psi)
    assert "modeldock_feature_drift_pvalue{" in metrics


@pytest.mark.config(**DRIFT_CONFIG)
def test_the_page_shows_the_canarys_drift_next_to_stable(app, client, keys, cancer):
    """A canary takes all the traffic: its column shows the drift, stable's says it
    saw no predictions."""
    clear_of_the_hour()
    for _ in range(2):
        upload_with_reference(client, keys, cancer)
    response = client.put(
        "/api/v1/models/cancer/canary",
        json={"version": 2, "weight": 100},
        headers=auth(keys.admin),
    )
    assert response.status_code == 200, response.text
    send(client, keys.predict, live_rows(cancer.X))
    with app.app_context():
        sketch().flush()
    sign_in(client, "root", "correct horse battery")
    page = client.get("/admin/models/cancer").text
    stable = page.split('id="drift-summary-stable"')[1].split("</li>")[0]
    assert "version 1" in stable and "no predictions seen" in stable
    canary = page.split('id="drift-summary-canary"')[1].split("</li>")[0]
    assert "version 2" in canary and "600 rows" in canary
    assert 'id="drift-table"' in page and "Version 1 <span" not in page
    cell = page.split(f'id="drift-x{SHIFTED}-canary"')[1].split("</td>")[0]
    assert "badge-drift" in cell
    cell = page.split('id="drift-x0-canary"')[1].split("</td>")[0]
    assert "badge-drift" not in cell and "badge-" in cell
    assert page.count('<svg class="chart"') == 30


@pytest.mark.config(**DRIFT_CONFIG, MODELDOCK_ROUTING_REFRESH_SECONDS=3600)
def test_the_sketch_runs_no_sql_on_the_prediction_path(app, client, keys, cancer):
    upload_with_reference(client, keys, cancer)
    send(client, keys.predict, cancer.X[:20])  # warm up
    statements: list[str] = []

    def listener(*args):
        statements.append(args[2])

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        send(client, keys.predict, cancer.X[:100])
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert statements == []
    with app.app_context():
        assert sketch().flush() > 0


@pytest.mark.config(**DRIFT_CONFIG)
def test_the_sketch_counts_every_row_once_however_requests_come(
    app, client, keys, cancer
):
    """Rows are binned a thousand at a time: small requests and a big one across
    that boundary, and the rows still waiting at the flush, each count once, in
    the bin that binning them all at once gives."""
    upload_with_reference(client, keys, cancer)
    rows = live_rows(cancer.X, 2600)
    send(client, keys.predict, rows[:1200], batch=7)
    send(client, keys.predict, rows[1200:2300], batch=1100)
    send(client, keys.predict, rows[2300:], batch=7)  # waiting at the flush
    with app.app_context():
        sketch().flush()
        spec = BinSpec.build(1, db.session.get(DriftReference, 1).features)
        stored = db.session.execute(
            select(DriftCount.feature, DriftCount.bin, func.sum(DriftCount.count))
            .where(DriftCount.version_id == 1)
            .group_by(DriftCount.feature, DriftCount.bin)
        ).all()
    counted = np.zeros(len(spec.names) * spec.slots, dtype=np.int64)
    for feature, slot, count in stored:
        counted[feature * spec.slots + slot] = count
    assert counted[: spec.slots].sum() == 2600
    assert counted.tolist() == spec.count(rows).tolist()


@pytest.mark.config(**DRIFT_CONFIG)
def test_the_model_page_reads_30_features_by_30_days_in_a_few_queries(
    app, client, keys, cancer
):
    """Statistics are stored per window: the page's queries do not grow with the
    number of features or days (timing: benchmarks/monitoring.py)."""
    from datetime import timedelta

    from app.models import DriftStat, DriftWindow
    from app.models._time import utcnow
    from app.observability.sketch import day_of

    upload_with_reference(client, keys, cancer)
    sign_in(client, "root", "correct horse battery")

    def page_statements(days: int) -> int:
        with app.app_context():
            for i in range(days):
                start = day_of(utcnow()) - timedelta(days=i)
                if db.session.get(DriftWindow, (1, "day", start)) is None:
                    db.session.add(
                        DriftWindow(
                            version_id=1,
                            kind="day",
                            start=start,
                            generation=1,
                            computed=1,
                            rows=500,
                        )
                    )
                    for j in range(30):
                        db.session.add(
                            DriftStat(
                                version_id=1,
                                kind="day",
                                start=start,
                                feature=j,
                                rows=500,
                                psi=0.01 * j,
                                pvalue=0.5,
                                test="chi2",
                            )
                        )
            db.session.commit()
            engine = db.engine
        statements: list[str] = []

        def listener(*args):
            statements.append(args[2])

        event.listen(engine, "before_cursor_execute", listener)
        try:
            page = client.get("/admin/models/cancer")
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert page.status_code == 200
        assert page.text.count('<svg class="chart"') == 30
        return len(statements)

    few = page_statements(2)
    many = page_statements(30)
    assert many == few and many <= 25


def test_binning_matches_searchsorted_for_small_and_big_batches():
    """The cells of every value, whatever the batch size: numeric features with
    fewer distinct edges than others, a categorical one with an unseen category,
    NaN and ±infinity."""
    rng = np.random.default_rng(3)
    reference = np.column_stack(
        [
            rng.normal(size=500),
            rng.integers(0, 3, 500).astype(float),  # categorical: 0, 1, 2
            np.repeat(
                [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.5], 42
            )[:500],  # 12 values, not whole numbers: numeric with few distinct edges
            rng.exponential(size=500),
        ]
    )
    features = describe_rows(reference, ["a", "b", "c", "d"])
    spec = BinSpec.build(1, features)
    assert [f["kind"] for f in features] == [
        "numeric",
        "categorical",
        "numeric",
        "numeric",
    ]
    assert len({len(f["counts"]) for f in features}) > 1  # features of unequal width

    def expected(rows):
        cells = np.empty(rows.shape, dtype=np.intp)
        for j, feature in enumerate(features):
            column = rows[:, j]
            if feature["kind"] == "categorical":
                known = np.asarray(feature["categories"])
                slot = np.searchsorted(known, column)
                found = (slot < len(known)) & (
                    known[np.minimum(slot, len(known) - 1)] == column
                )
                slot = np.where(found, slot, spec.slots - 1)
            else:
                slot = np.searchsorted(feature["edges"], column, side="right")
                slot = np.where(
                    np.isfinite(column) | (column == -np.inf), slot, spec.slots - 1
                )
            cells[:, j] = slot + j * spec.slots
        return cells

    for n in (1, 5, 2000):
        rows = reference[rng.integers(0, 500, n)].copy()
        rows[rng.random(rows.shape) < 0.05] = np.nan
        rows[0] = [np.inf, 7.0, -np.inf, np.nan]  # 7: a category never seen
        assert spec.cells(rows).tolist() == expected(rows).tolist(), n
        assert spec.count(rows).sum() == rows.size


def test_chi_square_equals_scipys_contingency_test():
    """The p-value stored per feature and window, against scipy's own test on the
    same 2 × bins table (empty bins dropped, no continuity correction)."""
    from scipy.stats import chi2_contingency

    from app.monitoring import stats

    rng = np.random.default_rng(11)
    for _ in range(200):
        bins = int(rng.integers(2, 14))
        reference = rng.integers(0, 100, bins).astype(float)
        live = rng.integers(0, 60, bins)
        reference[rng.integers(0, bins)] = live[rng.integers(0, bins)] = 0
        table = np.vstack([reference, live])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2 or live.sum() == 0:
            continue
        expected = chi2_contingency(table, correction=False).pvalue
        assert stats.chi_square(reference, live) == pytest.approx(expected, rel=1e-12)
    assert stats.chi_square(np.array([5.0, 5.0]), np.array([0, 0])) is None
    assert stats.chi_square(np.array([5.0, 0.0]), np.array([3, 0])) == 1.0
