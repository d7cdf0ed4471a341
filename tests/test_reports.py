"""Stats from stored request logs, in SQL that must agree on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from app.extensions import db
from app.models import ApiKey, RequestLog
from app.models._time import utcnow
from app.observability import reports
from tests.conftest import sign_in

NOW = datetime(2026, 5, 4, 12, 30, 20, tzinfo=UTC)


def log(at, model="iris", version=1, status=200, latency=10.0, key=None, **extra):
    return {
        "created_at": at,
        "request_id": extra.pop("request_id", "r"),
        "protocol": "native",
        "model_name": model,
        "version": version,
        "api_key_id": key,
        "user_id": None,
        "status_code": status,
        "error_code": None if status < 400 else "bad",
        "rows": 1,
        "latency_ms": latency,
        "remote_addr": "127.0.0.1",
        **extra,
    }


def store(app, rows):
    with app.app_context():
        db.session.execute(insert(RequestLog), rows)
        db.session.commit()


def test_percentiles_error_rates_and_requests_per_minute(app):
    minute = timedelta(minutes=1)
    rows = [
        log(NOW - 5 * minute, latency=float(ms), status=500 if ms <= 10 else 200)
        for ms in range(1, 101)
    ]  # v1: 1..100 ms, 10 errors
    rows += [
        log(NOW - 2 * minute, version=2, latency=float(10 * i)) for i in range(1, 21)
    ]  # v2: 10..200 ms
    rows += [log(NOW - 3 * timedelta(hours=1), version=2, latency=1.0)]  # only "day"
    store(app, rows)
    with app.app_context():
        hour = reports.dashboard("hour", now=NOW)
        day = reports.dashboard("day", now=NOW)
    by_label = {v.label: v for v in hour.versions}
    v1, v2 = by_label["iris v1"], by_label["iris v2"]
    assert (v1.requests, v1.errors, v1.p50_ms, v1.p95_ms) == (100, 10, 50.0, 95.0)
    assert v1.error_rate == pytest.approx(0.1)
    # Nearest rank: p50 of 20 values is the 10th, p95 the 19th.
    assert (v2.requests, v2.errors, v2.p50_ms, v2.p95_ms) == (20, 0, 100.0, 190.0)
    assert len(hour.bucket_labels) == 60 and hour.bucket_labels[-1] == "12:30"
    assert hour.per_minute["iris v1"][-6] == 100  # 12:25, five minutes back
    assert hour.per_minute["iris v2"][-3] == 20
    assert sum(hour.errors_per_minute) == 10
    day_v2 = {v.label: v for v in day.versions}["iris v2"]
    assert day_v2.requests == 21 and day_v2.p50_ms == 100.0 and day_v2.p95_ms == 190.0
    assert len(day.bucket_labels) == 48
    # 21 requests of v2 spread over 30-minute buckets, shown per minute.
    assert sum(day.per_minute["iris v2"]) * 30 == pytest.approx(21)


def test_request_log_filters_pagination_and_safe_export(app, keys):
    with app.app_context():
        key = db.session.query(ApiKey).filter_by(name="predict").one()
        key_id, prefix = key.id, key.prefix
    now = utcnow()
    rows = [
        log(
            now - timedelta(minutes=i),
            status=200 if i % 4 else 404,
            key=key_id if i < 30 else None,
        )
        for i in range(60)
    ]
    rows.append(
        log(now, model='=HYPERLINK("http://evil")', status=404, request_id="@cmd")
    )
    store(app, rows)
    client = app.test_client()
    sign_in(client, "root", "correct horse battery")
    with app.app_context():

        def count(**args):
            return reports.request_log_page(reports.LogFilters.from_args(args), 1).total

        assert count() == 61
        assert count(model="iris") == 60
        assert count(status="error") == 16 and count(status="404") == 16
        assert count(status="4xx", model="iris") == 15
        assert count(status="ok") == 45 and count(status="5xx") == 0
        assert count(key_prefix=prefix) == 30
        assert count(version="1") == 61 and count(version="2") == 0
        since = (now - timedelta(minutes=9, seconds=30)).strftime("%Y-%m-%dT%H:%M:%S")
        assert count(since=since, model="iris") == 10
        assert reports.LogFilters.from_args({"version": "x"}).problems
    with client.get("/admin/requests?model=iris&page=2") as page:
        assert page.status_code == 200
        assert "Page 2 of 2 (51–60 of 60)" in page.text
    with client.get(f"/admin/requests.csv?key_prefix={prefix}") as export:
        table = list(csv.reader(io.StringIO(export.text)))
    assert table[0][:3] == ["created_at", "request_id", "protocol"]
    assert len(table) == 31 and {r[9] for r in table[1:]} == {prefix}
    with client.get("/admin/requests.csv?status=404") as export:
        table = list(csv.reader(io.StringIO(export.text)))
    evil = [r for r in table if r[3].startswith("'=")]
    assert evil and evil[0][1] == "'@cmd"


def test_models_page_counts_requests_and_errors_of_the_last_day(app, keys):
    now = utcnow()
    store(
        app,
        [
            log(now - timedelta(hours=1), model="iris", status=200),
            log(now - timedelta(hours=2), model="iris", status=422),
            log(now - timedelta(hours=30), model="iris", status=500),
        ],
    )
    with app.app_context():
        assert reports.model_traffic(now - timedelta(hours=24)) == {"iris": (2, 1)}
