"""Hostile model files are refused, name the global, execute nothing, store nothing."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, ModelArtifact, ModelVersion
from app.registry.errors import ModelFileError, UnsafeModelError
from app.registry.loading import load_bytes
from tests import evil
from tests.conftest import upload


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload was executed"


HOSTILE = [
    ("os.system", lambda m: evil.global_reduce("os", "system", f"touch {m}")),
    ("posix.system", lambda m: evil.pickled(evil.Payload(os.system, f"touch {m}"))),
    (
        "builtins.eval",
        lambda m: evil.global_reduce(
            "builtins", "eval", f"__import__('os').system('touch {m}')"
        ),
    ),
    (
        "builtins.exec",
        lambda m: evil.pickled(evil.Payload(builtins.exec, f"open('{m}', 'w')")),
    ),
    (
        "subprocess.Popen",
        lambda m: evil.stack_global_reduce("subprocess", "Popen", f"touch {m}"),
    ),
    (
        "subprocess.call",
        lambda m: evil.pickled(evil.Payload(subprocess.call, ["touch", str(m)])),
    ),
    # Reached through an allowed package: judged by what it resolves to.
    (
        "joblib.numpy_pickle.os.system",
        lambda m: evil.stack_global_reduce(
            "joblib.numpy_pickle", "os.system", f"touch {m}"
        ),
    ),
    (
        "numpy.testing",
        lambda m: evil.stack_global_reduce("numpy", "testing.assert_", "x"),
    ),
    ("builtins.getattr", lambda m: evil.global_reduce("__builtin__", "getattr", "x")),
]


@pytest.mark.parametrize(("reference", "make"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_restricted_unpickler_refuses_and_names_the_global(reference, make, marker):
    with pytest.raises(UnsafeModelError) as caught:
        load_bytes(make(marker), "pickle")
    assert reference in caught.value.message
    assert caught.value.code == "unsafe_model_file"


@pytest.mark.parametrize("compress", [0, 3])
def test_joblib_object_arrays_go_through_the_same_policy(compress, marker):
    with pytest.raises(UnsafeModelError, match="posix.system"):
        load_bytes(evil.joblib_with_object_array(marker, compress), "joblib")


def test_joblib_payload_is_refused(marker):
    with pytest.raises(UnsafeModelError, match="subprocess.call"):
        load_bytes(evil.joblib_payload(marker), "joblib")


def test_skops_refuses_types_outside_the_server_policy(marker):
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    data = skops.io.dumps(FunctionTransformer(func=os.system))
    with pytest.raises(UnsafeModelError, match="posix.system"):
        load_bytes(data, "skops")


def test_garbage_bytes_are_a_clear_error_not_a_crash():
    for fmt in ("pickle", "joblib", "skops"):
        with pytest.raises(ModelFileError):
            load_bytes(b"\x00not a model at all", fmt)


def test_plain_pickle_and_joblib_of_real_models_load(iris):
    for fmt, data in (
        ("pickle", iris.as_pickle()),
        ("joblib", iris.as_joblib(3)),
        ("skops", iris.as_skops()),
    ):
        model = load_bytes(data, fmt)
        assert (model.predict(iris.X) == iris.estimator.predict(iris.X)).all()


def _registry_counts(app):
    with app.app_context():
        return (
            db.session.scalar(select(func.count(ModelVersion.id))),
            db.session.scalar(select(func.count()).select_from(ModelArtifact)),
        )


UPLOADS = [
    (
        "evil.pkl",
        lambda m: evil.global_reduce("os", "system", f"touch {m}"),
        "os.system",
    ),
    (
        "evil.pkl",
        lambda m: evil.global_reduce("builtins", "eval", "1"),
        "builtins.eval",
    ),
    ("evil.joblib", lambda m: evil.joblib_with_object_array(m, 3), "posix.system"),
    ("evil.joblib", evil.joblib_payload, "subprocess.call"),
]


@pytest.mark.parametrize(("filename", "make", "reference"), UPLOADS)
def test_malicious_upload_is_refused_and_registry_unchanged(
    client, app, keys, iris, marker, filename, make, reference
):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    before = _registry_counts(app)
    response = upload(client, keys.admin, "iris", make(marker), filename)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "unsafe_model_file" and error["field"] == "file"
    assert reference in error["message"]
    assert _registry_counts(app) == before
    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action)).all()
    assert actions.count("version.upload") == 1


def test_decompression_bomb_is_stopped_by_the_memory_limit(client, app, keys):
    app.config["MODELDOCK_VALIDATION_MEMORY_MB"] = 700
    response = upload(
        client, keys.admin, "bomb", evil.decompression_bomb(), "bomb.joblib"
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] in {
        "model_validation_failed",
        "invalid_model_file",
    }
    assert _registry_counts(app) == (0, 0)


@pytest.mark.config(
    MODELDOCK_TRUSTED_MODULES=["tests.slow_estimators"],
    MODELDOCK_VALIDATION_CPU_SECONDS=3,
)
def test_endless_predict_is_stopped_by_the_cpu_limit(client, app, keys, iris):
    from tests.slow_estimators import EndlessClassifier

    data = pickle.dumps(EndlessClassifier().fit(iris.X, [0, 1] * 75))
    response = upload(client, keys.admin, "endless", data, "endless.pkl")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "model_validation_failed"
    assert "CPU" in response.get_json()["error"]["message"]
    assert _registry_counts(app) == (0, 0)


def test_trusted_modules_come_from_config_only(client, keys, iris):
    from tests.slow_estimators import EndlessClassifier

    data = pickle.dumps(EndlessClassifier().fit(iris.X, [0, 1] * 75))
    response = upload(client, keys.admin, "endless", data, "endless.pkl")
    assert response.status_code == 422
    assert (
        "tests.slow_estimators.EndlessClassifier"
        in response.get_json()["error"]["message"]
    )


@pytest.mark.config(MODELDOCK_MAX_UPLOAD_MB=1)
def test_oversized_upload_gets_413(client, keys):
    response = upload(client, keys.admin, "big", b"\x00" * (2 * 1024 * 1024), "big.pkl")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_unsupported_extension_is_refused(client, keys, iris):
    response = upload(client, keys.admin, "iris", iris.as_pickle(), "model.exe")
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "file"
