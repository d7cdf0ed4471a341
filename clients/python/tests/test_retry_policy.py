"""The retry policy and the error mapping on their own (no server): what is retried,
how long a wait may be, how Retry-After is read."""

from __future__ import annotations

import email.utils
import time

import pytest
from urllib3.exceptions import (
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.retry import RequestHistory

from modeldock_client import (
    BadRequestError,
    ConflictError,
    ModelDockError,
    RateLimitedError,
    ServerError,
)
from modeldock_client._retry import policy
from modeldock_client.errors import error_from_response


def retry(**overrides):
    settings = {"retries": 5, "backoff": 1.0, "backoff_max": 5.0, "retry_after_max": 60}
    return policy(**{**settings, **overrides})


def after(n: int, **overrides):
    """The policy as it stands after ``n`` failed attempts."""
    failed = RequestHistory("POST", "/", None, 503, None)
    return retry(**overrides).new(history=(failed,) * n)


@pytest.mark.parametrize(
    ("failures", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 5.0)]
)
def test_backoff_is_full_jitter_under_an_exponential_cap(failures, ceiling):
    waits = [after(failures).get_backoff_time() for _ in range(400)]
    assert all(0 <= w <= ceiling for w in waits)
    # Full jitter spreads over the whole range, not just above some floor.
    assert min(waits) < 0.1 * ceiling and max(waits) > 0.9 * ceiling


def test_no_backoff_when_asked_for_none():
    assert after(3, backoff=0).get_backoff_time() == 0


@pytest.mark.parametrize(
    ("status", "retried"),
    [(429, True), (502, True), (503, True), (504, True), (500, False), (400, False),
     (401, False), (404, False), (409, False), (413, False), (422, False)],
)  # fmt: skip
def test_only_busy_answers_are_retried(status, retried):
    # A Retry-After header does not make other 4xx retryable (urllib3 would for 413).
    for method in ("GET", "POST"):
        assert retry().is_retry(method, status, has_retry_after=True) is retried


def test_retry_after_in_seconds_or_as_a_date_is_capped():
    policy_ = retry(retry_after_max=30)
    assert policy_.parse_retry_after("3") == 3
    assert policy_.parse_retry_after("7200") == 30
    soon = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= policy_.parse_retry_after(soon) <= 10
    past = email.utils.formatdate(time.time() - 100, usegmt=True)
    assert policy_.parse_retry_after(past) == 0
    assert policy_.parse_retry_after("soon") == -1  # unreadable: back off instead


def test_connection_failures_and_resets_are_retried_read_timeouts_are_not():
    policy_ = retry()
    refused = NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert len(policy_.increment("POST", "/", error=refused).history) == 1
    reset = ProtocolError("Connection aborted.", ConnectionResetError())
    assert len(policy_.increment("POST", "/", error=reset).history) == 1
    with pytest.raises(ReadTimeoutError):
        policy_.increment("POST", "/", error=ReadTimeoutError(None, "/", "slow"))


def test_server_error_shape_becomes_the_error():
    body = {
        "error": {"code": "wrong_feature_count", "message": "expected 4", "field": "x"},
        "request_id": "r1",
    }
    error = error_from_response(400, body, attempts=1)
    assert isinstance(error, BadRequestError)
    assert (error.status, error.code, error.field, error.request_id) == (
        400,
        "wrong_feature_count",
        "x",
        "r1",
    )
    assert str(error) == "400 wrong_feature_count expected 4 (field 'x')"
    assert isinstance(error_from_response(409, body, attempts=1), ConflictError)
    limited = error_from_response(429, {}, attempts=4, retry_after="60")
    assert isinstance(limited, RateLimitedError) and limited.retry_after == "60"
    assert str(limited).endswith("[gave up after 4 attempts]")
    page = error_from_response(502, None, attempts=5, text="<html>Bad Gateway</html>")
    assert isinstance(page, ServerError) and page.code is None
    assert "Bad Gateway" in page.message
    plain = error_from_response(404, {"error": "Not Found"}, attempts=1)
    assert plain.message == "Not Found" and isinstance(plain, ModelDockError)


def test_retry_after_is_a_floor_with_the_backoff_on_top(monkeypatch):
    slept = []
    monkeypatch.setattr("modeldock_client._retry.time.sleep", slept.append)

    class Answer:
        headers = {"Retry-After": "0"}

    policy_ = after(4, backoff=1.0, backoff_max=5.0)
    for _ in range(200):
        assert policy_.sleep_for_retry(Answer())  # type: ignore[arg-type]
    # "Retry-After: 0" refused four times: still a spread-out wait up to 5 s.
    assert all(0 <= s <= 5 for s in slept) and max(slept) > 4
    Answer.headers = {"Retry-After": "2"}
    slept.clear()
    policy_.sleep_for_retry(Answer())  # type: ignore[arg-type]
    assert 2 <= slept[0] <= 7
