"""Fixtures: apps on SQLite and PostgreSQL (fresh schema each), users, keys, models."""

from __future__ import annotations

import io
import os
import pickle
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import joblib
import numpy as np
import pytest
import skops.io
import sqlalchemy as sa
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from app import create_app
from app.auth.credentials import create_api_key, create_user
from app.extensions import db

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def database(backend: str, tmp_dir):
    """Yield (url, engine options) for a fresh, empty database of ``backend``."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir / f'{uuid.uuid4().hex}.db'}", {}
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield POSTGRES_URL, {"connect_args": {"options": f"-csearch_path={schema}"}}
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def build_app(url: str, engine_options: dict, **overrides):
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": url,
        "SQLALCHEMY_ENGINE_OPTIONS": dict(engine_options),
        "MODELDOCK_ROUTING_REFRESH_SECONDS": 0.0,
        "MODELDOCK_REQUEST_LOG_FLUSH_SECONDS": 0.0,  # tests flush by hand
        "RATELIMIT_ENABLED": False,
        "MODELDOCK_VALIDATION_MEMORY_MB": 1024,
    }
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        db.create_all()
    BUILT.append(app)
    return app


def close_app(app) -> None:
    """Stop the app's inference processes and close its database connections."""
    app.extensions["modeldock"].close()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# Apps built so far in this process: the ones a test builds are closed after it
# (``closes_its_apps``), so that no connection of a finished test is left for the
# garbage collector to find in the middle of another one (a ResourceWarning there).
BUILT: list = []


@pytest.fixture(autouse=True)
def closes_its_apps():
    kept = len(BUILT)  # wider-scoped fixtures' apps, set up before this one
    yield
    while len(BUILT) > kept:
        close_app(BUILT.pop())


@contextmanager
def running_app(backend, tmp_dir, **overrides):
    with database(backend, tmp_dir) as (url, options):
        app = build_app(url, options, **overrides)
        try:
            yield app
        finally:
            close_app(app)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def app(backend, tmp_path, request):
    overrides = getattr(request, "param", None) or {}
    marker = request.node.get_closest_marker("config")
    if marker:
        overrides = {**overrides, **marker.kwargs}
    with running_app(backend, tmp_path, **overrides) as application:
        yield application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@dataclass
class Keys:
    """Plaintext keys of the users made for a test."""

    admin: str
    predict: str
    admin_user_id: int
    user_id: int


def make_keys(app) -> Keys:
    with app.app_context():
        admin = create_user("root", "correct horse battery", "admin")
        user = create_user("alice", "alice password 1", "user")
        _, admin_key = create_api_key(admin, "admin", ["predict", "admin"])
        _, predict_key = create_api_key(user, "predict", ["predict"])
        db.session.commit()
        return Keys(admin_key, predict_key, admin.id, user.id)


@pytest.fixture
def keys(app) -> Keys:
    return make_keys(app)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(
    client, key: str, name: str, data: bytes, filename: str = "model.skops", **fields
):
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    # Encoded in memory: the test client's own encoder leaks a temp file for
    # bodies over 500 kB.
    boundary, body = encode_multipart(
        {
            "file": FileStorage(io.BytesIO(data), filename=filename, name="file"),
            **fields,
        }
    )
    return client.post(
        f"/api/v1/models/{name}/versions",
        data=body,
        headers=auth(key),
        content_type=f"multipart/form-data; boundary={boundary}",
    )


# --- reference models, trained once per session on data shipped with scikit-learn


@dataclass
class Trained:
    estimator: object
    X: np.ndarray

    def as_skops(self) -> bytes:
        return skops.io.dumps(self.estimator)

    def as_joblib(self, compress=0) -> bytes:
        buffer = io.BytesIO()
        joblib.dump(self.estimator, buffer, compress=compress)
        return buffer.getvalue()

    def as_pickle(self) -> bytes:
        return pickle.dumps(self.estimator, protocol=pickle.HIGHEST_PROTOCOL)


@pytest.fixture(scope="session")
def iris() -> Trained:
    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    return Trained(model, X)


@pytest.fixture(scope="session")
def iris_v2() -> Trained:
    X, y = load_iris(return_X_y=True)
    return Trained(LogisticRegression(C=0.01, max_iter=500).fit(X, y), X)


@pytest.fixture(scope="session")
def diabetes() -> Trained:
    X, y = load_diabetes(return_X_y=True)
    return Trained(Ridge(alpha=0.5).fit(X, y), X)


@pytest.fixture(scope="session")
def iris_nan() -> Trained:
    X, y = load_iris(return_X_y=True)
    return Trained(HistGradientBoostingClassifier(max_iter=5).fit(X, y), X)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database (not only a schema) for servers started by tests."""
    from tests.live import postgres_database

    with postgres_database() as url:
        yield url


# --- browser-session helpers for the pages (CSRF tokens are required on every form)


def csrf_token(client, path: str = "/auth/login") -> str:
    """The CSRF token of the client's session, read from a page's form."""
    import re

    with client.get(path) as page:
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)


def sign_in(client, username: str, password: str) -> str:
    """Sign ``client`` in through the login form; return a CSRF token for later
    posts."""
    token = csrf_token(client)
    with client.post(
        "/auth/login",
        data={"username": username, "password": password, "csrf_token": token},
    ) as response:
        assert response.status_code == 302, response.text[-500:]
    return csrf_token(client, "/account")


def clear_of_the_hour(margin: float = 90.0) -> None:
    """Wait for the next hour if it starts within ``margin`` seconds, so that the
    traffic a test sends next falls in one hour (and one day) window."""
    import time

    left = 3600 - time.time() % 3600
    if left < margin:
        time.sleep(left + 1)


def concrete_rule(rule: str) -> str:
    """Fill a URL rule's variables with plausible values (ints 1, strings 'demo')."""
    import re

    return re.sub(
        r"<(?:(\w+):)?(\w+)>", lambda m: "1" if m.group(1) == "int" else "demo", rule
    )


def pytest_terminal_summary(terminalreporter):
    """Show the tables tests attach as a ``terminal_report`` user property (the
    scale-out numbers of tests/test_scaleout.py), passed or failed, without -s."""
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == "terminal_report":
                    terminalreporter.write_sep("-", report.nodeid)
                    terminalreporter.write_line(value)


# The files that take longest, started first when `make test` spreads whole files
# over several pytest processes (pytest-xdist, --dist loadfile), so that none of
# them starts last and runs alone at the end.
LONGEST_FIRST = (
    "test_scaleout.py",
    "test_rollout_live.py",
    "test_faults.py",
    "test_celery_jobs.py",
    "test_production_stack.py",
    "test_prometheus.py",
    "test_docs_session.py",
    "test_client_live.py",
    "test_rollout.py",
    "test_drift.py",
    "test_isolation.py",
    "test_explain.py",
    "test_monitoring.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
