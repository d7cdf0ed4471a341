"""The client against a real ModelDock under gunicorn (tests/conftest.py): answers,
errors, what is retried and what is not, a 429 storm, a timeout, and a server
killed and started again while a call waits to retry.

Attempts are counted twice: by the client (``attempts``) and by the server's
access log, which also shows each request's Idempotency-Key."""

from __future__ import annotations

import ast
import builtins
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modeldock_client import (
    AuthenticationError,
    BadRequestError,
    Client,
    ConnectionFailedError,
    ExplainUnavailableError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    UnexpectedResponseError,
)

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow  # the suite's 300 s timeout covers the server's start

ROW = [5.1, 3.5, 1.4, 0.2]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = ["setosa", "versicolor", "virginica"]


def mark(server) -> int:
    """How many lines the access log has once the previous calls' lines are in
    (gunicorn writes a line just after the answer, so it may lag the client)."""
    count = -1
    while count != (count := len(server.hits())):
        time.sleep(0.2)
    return count


def new_hits(server, before: int, settle: float = 0.3):
    """The access-log lines written since ``before`` once the log stops growing."""
    deadline = time.monotonic() + 5
    count = len(server.hits())
    while count == before and time.monotonic() < deadline:
        time.sleep(0.05)
        count = len(server.hits())
    time.sleep(settle)  # one more line would be a retry that should not be
    return server.hits()[before:]


@pytest.fixture(scope="module")
def demo_model():
    """The demo model the server holds, loaded here: the oracle of its answers."""
    import skops.io

    from app.cli.demo import train_demo_model

    data = train_demo_model()
    return skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))


def is_uuid4(text: str) -> bool:
    try:
        return uuid.UUID(text).version == 4
    except ValueError:
        return False


def test_predict_probabilities_and_models(md, demo_model):
    with Client(md.url, md.keys["predict"]) as client:
        models = client.list_models()
        assert [m.name for m in models] == ["demo", "diabetes"]
        assert models[0].task == "classification" and models[0].active_version == 1

        before = mark(md)
        answer = client.predict("demo", [ROW, [6.2, 3.4, 5.4, 2.3]])
        assert answer.model == "demo" and answer.version == 1
        assert answer.predictions == ["setosa", "virginica"]
        assert answer.classes == SPECIES
        assert answer.attempts == 1 and answer.request_id
        (hit,) = new_hits(md, before)
        assert (hit.method, hit.status) == ("POST", 200)
        assert is_uuid4(hit.idempotency_key)  # sent on every POST

        columns = {name: [value] for name, value in zip(FEATURES, ROW, strict=True)}
        assert client.predict("demo", columns, version=1).predictions == ["setosa"]
        named = [dict(zip(FEATURES, ROW, strict=True))]
        assert client.predict("demo", named).predictions == ["setosa"]
        assert client.predict("demo", np.array([ROW])).predictions == ["setosa"]

        proba = client.predict_proba("demo", [ROW])
        assert proba.classes == SPECIES
        want = demo_model.predict_proba(pd.DataFrame([ROW], columns=FEATURES))[0]
        np.testing.assert_allclose(proba.probabilities[0], want, atol=1e-6)
        assert client.predict("diabetes", [[0.0] * 10]).classes is None
        with pytest.raises(UnexpectedResponseError) as refused:
            client.predict_proba("diabetes", [[0.0] * 10])
        assert refused.value.code == "no_probabilities"


def test_explain_is_called_or_refused_clearly(md, demo_model):
    # The first explanation starts the worker's inference process (its zygote's
    # imports first): seconds on a loaded machine, past the client's default 10 s.
    with Client(
        md.url, md.keys["predict"], retries=5, backoff=0.01, timeout=90
    ) as client:
        explained = client.explain("demo", [ROW])
        # A missing model is a missing model, not a missing route.
        with pytest.raises(NotFoundError) as missing:
            client.explain("nope", [ROW])
    assert not isinstance(missing.value, ExplainUnavailableError)
    assert (missing.value.code, missing.value.attempts) == ("model_not_found", 1)
    assert (explained.model, explained.version, explained.attempts) == ("demo", 1, 1)
    assert explained.body["features"] == FEATURES
    assert explained.body["outputs"] == SPECIES
    # Contributions add up to the model's own decision function, class by class.
    [row] = explained.body["explanations"]
    total = np.asarray(row["base_value"]) + np.sum(row["contributions"], axis=1)
    want = demo_model.decision_function(pd.DataFrame([ROW], columns=FEATURES))[0]
    np.testing.assert_allclose(total, want, atol=1e-6)
    # A server without the route (an older release) answers 404: said once, clearly.
    with Client(md.url + "/older", md.keys["predict"], retries=5, backoff=0.01) as old:
        with pytest.raises(ExplainUnavailableError) as refused:
            old.explain("demo", [ROW])
    assert (refused.value.status, refused.value.attempts) == (404, 1)
    assert "no explain route" in str(refused.value)


CASES = {
    "wrong_feature_count": ("predict", "demo", [[1]], BadRequestError, "instances[0]"),
    "model_not_found": ("predict", "nope", [ROW], NotFoundError, "model"),
    "invalid_api_key": ("md_x", "demo", [ROW], AuthenticationError, "Authorization"),
}


@pytest.mark.parametrize("code", CASES)
def test_a_4xx_is_sent_once(md, code):
    key, model, rows, kind, field = CASES[code]
    api_key = md.keys.get(key, "md_0000_not-a-key")
    with Client(md.url, api_key, retries=5, backoff=0.01) as client:
        before = mark(md)
        with pytest.raises(kind) as raised:
            client.predict(model, rows)
    error = raised.value
    assert (error.code, error.field, error.attempts) == (code, field, 1)
    assert error.status == {BadRequestError: 400, NotFoundError: 404}.get(kind, 401)
    assert error.message and error.request_id
    hits = new_hits(md, before)
    assert len(hits) == 1, hits  # exactly one request reached the server


def test_a_timeout_is_not_retried(md):
    client = Client(md.url, md.keys["predict"], timeout=0.5, retries=5, backoff=0.01)
    before = mark(md)
    md.pause()
    try:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError) as raised:
            client.predict("demo", [ROW])
        elapsed = time.monotonic() - started
    finally:
        md.resume()
    assert raised.value.attempts == 1 and isinstance(
        raised.value, builtins.TimeoutError
    )
    assert 0.45 < elapsed < 1.5
    # The frozen server answers the one request it had once it runs again: one line.
    assert len(new_hits(md, before, settle=0.5)) == 1
    assert client.predict("demo", [ROW], timeout=5).predictions == ["setosa"]
    client.close()


def test_nothing_listening_is_retried_then_reported():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    client = Client(f"http://127.0.0.1:{port}", "k", retries=3, backoff=0.01)
    with pytest.raises(ConnectionFailedError) as raised:
        client.list_models()
    assert raised.value.attempts == 4 and raised.value.status is None
    assert isinstance(raised.value, builtins.ConnectionError)
    assert "[gave up after 4 attempts]" in str(raised.value)


def test_rate_limited_call_gives_up_after_its_retries(md):
    key = md.keys["starved"]  # 1 per hour
    with Client(md.url, key, retries=2, backoff=0.05, retry_after_max=0.3) as client:
        assert client.predict("demo", [ROW]).attempts == 1
        before = mark(md)
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as raised:
            client.predict("demo", [ROW])
        elapsed = time.monotonic() - started
    error = raised.value
    assert (error.status, error.code, error.attempts) == (429, "rate_limited", 3)
    assert int(error.retry_after) > 60  # the server asked for much longer …
    assert 0.6 <= elapsed < 2.5  # … and the cap (0.3 s per wait) held
    assert "gave up after 3 attempts" in str(error)
    hits = new_hits(md, before)
    assert [h.status for h in hits] == [429, 429, 429]
    assert len({h.idempotency_key for h in hits}) == 1  # one key for the whole call
    assert is_uuid4(hits[0].idempotency_key)


def test_429_storm_every_call_gets_through(md):
    """24 calls from 8 threads at a key allowed 4 per second: every call succeeds
    by waiting as told, and each one's retries carry its own key."""
    calls, threads = 24, 8
    before = mark(md)
    results, failures = [], []
    client = Client(
        md.url, md.keys["storm"], retries=15, backoff=0.1, retry_after_max=2
    )

    def work(n: int) -> None:
        for _ in range(n):
            try:
                results.append(client.predict("demo", [ROW]))
            except Exception as exc:  # noqa: BLE001 (reported below)
                failures.append(exc)

    started = time.monotonic()
    workers = [
        threading.Thread(target=work, args=(calls // threads,)) for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    elapsed = time.monotonic() - started
    client.close()
    assert not failures and len(results) == calls
    attempts = sorted(r.attempts for r in results)
    assert sum(attempts) > calls  # the storm did refuse some

    by_key = defaultdict(list)
    for hit in new_hits(md, before):
        by_key[hit.idempotency_key].append(hit.status)
    assert len(by_key) == calls and all(is_uuid4(key) for key in by_key)
    for statuses in by_key.values():  # refused until it got through, then done
        assert statuses == [429] * (len(statuses) - 1) + [200]
    assert sorted(len(s) for s in by_key.values()) == attempts
    assert elapsed > (calls - 4) / 4  # the limit held: no more than 4 a second
    print(
        f"\n429 storm: {calls} calls, {sum(attempts)} requests, {elapsed:.1f} s, "
        f"attempts per call {dict(sorted(Counter(attempts).items()))}"
    )


def test_server_killed_and_restarted_while_a_call_waits(md, caplog):
    """A call refused with 429 waits; meanwhile the server is killed with SIGKILL
    and started again on the same port. The call's retries meet a refused
    connection, then the new server, and it succeeds with the same key."""
    caplog.set_level(logging.INFO, logger="modeldock_client")
    client = Client(
        md.url,
        md.keys["restart"],  # 1 per 2 seconds
        retries=150,  # about a minute: a loaded machine boots gunicorn slowly
        backoff=0.2,
        backoff_max=1.0,
        retry_after_max=5,
    )
    assert client.predict("demo", [ROW]).attempts == 1
    before = mark(md)
    outcome = {}

    def call() -> None:
        try:
            outcome["answer"] = client.predict("demo", [ROW])
        except Exception as exc:  # noqa: BLE001 (asserted below)
            outcome["error"] = exc

    waiting = threading.Thread(target=call)
    waiting.start()
    (refused,) = new_hits(md, before, settle=0)
    assert refused.status == 429, refused  # the call now sleeps for Retry-After
    md.kill()
    time.sleep(3)  # past Retry-After: at least one retry finds nothing listening
    md.start()
    waiting.join(150)
    client.close()

    assert "error" not in outcome, outcome.get("error")
    answer = outcome["answer"]
    assert answer.predictions == ["setosa"]
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert any("NewConnectionError" in message for message in retries), retries
    hits = md.hits_of(refused.idempotency_key, timeout=10, at_least=2)
    assert [h.status for h in hits] == [429, 200]  # the old server, then the new
    assert answer.attempts == len(retries) + 1 > len(hits)


def test_the_documented_example_runs_as_written(md):
    """docs/client.md's example, with this server's URL, prints what the page says
    (the model list aside: this server has a second model)."""
    page = (ROOT / "docs" / "client.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    shown = re.search(r"```text\n(.*?)```", page, re.S).group(1).splitlines()
    assert "http://127.0.0.1:5000" in code
    run = subprocess.run(
        [sys.executable, "-c", code.replace("http://127.0.0.1:5000", md.url)],
        env={**os.environ, "MODELDOCK_KEY": md.keys["predict"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    assert ast.literal_eval(printed[0]) == ["demo", "diabetes"]
    assert ast.literal_eval(shown[0]) == ["demo"]
    assert printed[1:] == shown[1:]
