"""Request-log durability: every kind of row in one flush, a refused row set aside
while the others are written, and a queue that keeps working afterwards."""

from __future__ import annotations

import io

from sqlalchemy import func, select

from app.extensions import db
from app.models import RequestLog
from app.observability import metrics
from app.observability.request_log import log_row
from app.rollout import versions as service
from tests.conftest import auth, sign_in


def _table(app) -> dict[str, list[int]]:
    """protocol → sorted status codes of the rows in the table."""
    with app.app_context():
        rows = db.session.execute(
            select(RequestLog.protocol, RequestLog.status_code)
        ).all()
        db.session.remove()
    table: dict[str, list[int]] = {}
    for protocol, status in rows:
        table.setdefault(protocol, []).append(status)
    return {protocol: sorted(codes) for protocol, codes in table.items()}


def _send_every_kind(app, keys, iris) -> int:
    """One request of each kind that writes a log row; return how many were sent."""
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    api = app.test_client()
    row = iris.X[7].tolist()
    sent = [
        api.post(
            "/api/v1/models/iris/predict",
            headers=auth(keys.predict),
            json={"instances": [row]},
        ),
        api.post("/predict", headers=auth(keys.predict), json={"features": row}),
        api.post(
            "/v1/models/iris:predict",
            headers=auth(keys.predict),
            json={"instances": [row]},
        ),
        api.post(
            "/v2/models/iris/infer",
            headers=auth(keys.predict),
            json={
                "inputs": [
                    {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": row}
                ]
            },
        ),
        api.post(
            "/api/v1/models/iris/predict",
            headers=auth(keys.predict),
            json={"instances": [["tall", 1, 2, 3]]},
        ),  # an error row
        api.post(
            "/api/v1/models/nothing/predict",
            headers=auth(keys.predict),
            json={"instances": [row]},
        ),  # one that never reached a model
    ]
    assert [r.status_code for r in sent] == [200, 200, 200, 200, 400, 404], [
        r.get_data(as_text=True)[:200] for r in sent
    ]
    browser = app.test_client()
    token = sign_in(browser, "alice", "alice password 1")
    form = {"csrf_token": token, **{f"f{i}": str(v) for i, v in enumerate(row)}}
    with browser.post("/models/iris", data=form) as page:
        assert page.status_code == 200
    boundary, body = encode_multipart(
        {
            "csrf_token": token,
            "file": FileStorage(
                io.BytesIO(b"x0,x1,x2,x3\n5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n"),
                filename="two.csv",
                name="file",
            ),
        }
    )
    with browser.post(
        "/models/iris/csv",
        data=body,
        content_type=(f"multipart/form-data; boundary={boundary}"),
    ) as page:
        assert page.status_code == 302
    return len(sent) + 2


def test_one_flush_writes_every_kind_of_row(app, keys, iris):
    """API, tutorial, TF Serving, Open Inference, errors, the form and a CSV job."""
    with app.app_context():
        service.upload_version("iris", "iris.skops", iris.as_skops())
        db.session.commit()
    app.config.update(
        MODELDOCK_LOG_PAYLOADS=True,  # the rows with a payload, too
        MODELDOCK_DEFAULT_MODEL="iris",
    )  # the tutorial route's
    sent = _send_every_kind(app, keys, iris)
    writer = app.extensions["modeldock.request_log"]
    assert writer.depth() == sent  # nothing written on the request path
    assert writer.flush() == sent
    assert _table(app) == {
        "native": [200, 400, 404],
        "tutorial": [200],
        "tfserving": [200],
        "v2": [200],
        "web": [200],
        "web-csv": [200],
    }
    assert list(writer.refused) == []
    # And the worker keeps logging afterwards.
    assert _send_every_kind(app, keys, iris) == sent
    assert writer.flush() == sent
    assert sum(len(codes) for codes in _table(app).values()) == 2 * sent


def _refused_total() -> float:
    return metrics.LOG_REFUSED._value.get()


def test_a_row_the_database_refuses_is_set_aside_and_the_others_written(app):
    writer = app.extensions["modeldock.request_log"]
    rows = [
        log_row(
            request_id=f"r{i}",
            protocol="native",
            model_name="iris",
            version=1,
            status_code=200,
            latency_ms=1.5,
            remote_addr="203.0.113.9",
            rows=1,
        )
        for i in range(10)
    ]
    rows[3]["status_code"] = None  # NOT NULL: refused by SQLite and PostgreSQL
    before = _refused_total()
    for row in rows:
        writer.submit(row)
    assert writer.flush() == 9
    assert [row["request_id"] for row in writer.refused] == ["r3"]
    assert _refused_total() == before + 1
    assert writer.depth() == 0  # not requeued: it would wedge every later flush
    with app.app_context():
        written = db.session.scalars(select(RequestLog.request_id)).all()
        db.session.remove()
    assert sorted(written) == sorted(f"r{i}" for i in range(10) if i != 3)
    # The next flush is an ordinary batch again.
    writer.submit(
        log_row(
            request_id="after",
            protocol="v2",
            model_name=None,
            version=None,
            status_code=404,
            latency_ms=0.4,
            remote_addr=None,
            error_code="model_not_found",
        )
    )
    assert writer.flush() == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RequestLog)) == 10
        db.session.remove()
