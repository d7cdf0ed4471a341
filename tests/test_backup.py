"""Registry backup: export from SQLite, import into an empty PostgreSQL: same."""

from __future__ import annotations

import json
import zipfile

from sqlalchemy import select

from app.extensions import db
from app.models import Activation, MLModel, ModelVersion
from tests.conftest import auth, make_keys, running_app, upload


def registry_view(app) -> dict:
    """Everything the export promises, by name and number (never database ids)."""
    with app.app_context():
        view = {}
        for model in db.session.scalars(select(MLModel).order_by(MLModel.name)):
            number = {v.id: v.number for v in model.versions}
            view[model.name] = {
                "task": model.task,
                "description": model.description,
                "created_at": model.created_at,
                "batching": (model.batch_max_rows, model.batch_max_wait_ms),
                "versions": [
                    (
                        v.number,
                        v.status,
                        v.file_format,
                        v.sha256,
                        v.size_bytes,
                        v.input_schema,
                        v.metrics,
                        v.notes,
                        v.created_at,
                        v.created_by.username if v.created_by else None,
                        v.runtime,
                        v.runtime_verdict,
                        v.onnx_sha256,
                        v.onnx_speedup,
                    )
                    for v in model.versions
                ],
                "aliases": sorted(
                    (a.alias, number[a.version_id], a.weight) for a in model.aliases
                ),
                "history": [
                    (
                        a.alias,
                        number.get(a.from_version_id),
                        number.get(a.to_version_id),
                        a.actor,
                        a.reason,
                        a.created_at,
                    )
                    for a in db.session.scalars(
                        select(Activation)
                        .where(Activation.model_id == model.id)
                        .order_by(Activation.id)
                    )
                ],
            }
        return view


def manifest(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("manifest.json"))
    data.pop("exported_at")
    return data


def test_sqlite_to_postgresql_round_trip(tmp_path, iris, iris_v2, diabetes):
    export = tmp_path / "registry.zip"
    with running_app("sqlite", tmp_path) as source:
        keys = make_keys(source)
        client = source.test_client()
        for name, data, filename in (
            ("iris", iris.as_skops(), "a.skops"),
            ("iris", iris_v2.as_joblib(), "b.joblib"),
            ("diabetes", diabetes.as_pickle(), "c.pkl"),
        ):
            assert upload(client, keys.admin, name, data, filename).status_code == 201
        # An admin's runtime and micro-batching choices are part of what a backup keeps.
        assert (
            client.put(
                "/api/v1/models/iris/batching",
                headers=auth(keys.admin),
                json={"max_rows": 16, "max_wait_ms": 1.5},
            ).status_code
            == 200
        )
        assert (
            client.put(
                "/api/v1/models/diabetes/versions/1/runtime",
                headers=auth(keys.admin),
                json={"runtime": "sklearn", "reason": "compare"},
            ).status_code
            == 200
        )
        for path in (
            "/api/v1/models/iris/versions/2/activate",
            "/api/v1/models/iris/rollback",
            "/api/v1/models/iris/versions/2/archive",
        ):
            assert (
                client.post(
                    path, headers=auth(keys.admin), json={"reason": path}
                ).status_code
                == 200
            ), path
        rows = iris.X[[0, 70, 140]].tolist()
        expected = client.post(
            "/api/v1/models/iris/versions/1/predict",
            headers=auth(keys.predict),
            json={"instances": rows},
        ).get_json()
        result = source.test_cli_runner().invoke(
            args=["registry", "export", str(export)]
        )
        assert result.exit_code == 0, result.output
        assert (
            "exported 2 models, 3 versions (3 artifacts, 3 ONNX graphs)"
            in result.output
        )
        before = registry_view(source)
        assert [v[10:13] for v in before["diabetes"]["versions"]] == [
            ("sklearn", "verified", before["diabetes"]["versions"][0][12])
        ]
        assert all(v[12] for m in before.values() for v in m["versions"])
        assert before["iris"]["batching"] == (16, 1.5)

    with running_app("postgresql", tmp_path) as target:
        keys = make_keys(target)  # same usernames, so created_by maps back
        runner = target.test_cli_runner()
        result = runner.invoke(args=["registry", "import", str(export)])
        assert result.exit_code == 0, result.output
        assert "imported 2 models, 3 versions, 4 activations" in result.output
        assert registry_view(target) == before
        client = target.test_client()
        answer = client.post(
            "/api/v1/models/iris/predict",
            headers=auth(keys.predict),
            json={"instances": rows},
        ).get_json()
        assert answer["version"] == 1
        # Same runtime (the ONNX graph came along), so the very same numbers.
        assert answer["predictions"] == expected["predictions"]
        assert answer["probabilities"] == expected["probabilities"]
        again = tmp_path / "again.zip"
        assert runner.invoke(args=["registry", "export", str(again)]).exit_code == 0
        assert manifest(again) == manifest(export)
        # A second import would mix two registries: refused, nothing changes.
        twice = runner.invoke(args=["registry", "import", str(export)])
        assert twice.exit_code != 0 and "registry_not_empty" in twice.output
        assert registry_view(target) == before


def test_a_damaged_backup_changes_nothing(tmp_path, iris):
    export, damaged = tmp_path / "good.zip", tmp_path / "bad.zip"
    with running_app("sqlite", tmp_path) as source:
        keys = make_keys(source)
        assert (
            upload(
                source.test_client(), keys.admin, "iris", iris.as_skops()
            ).status_code
            == 201
        )
        source.test_cli_runner().invoke(args=["registry", "export", str(export)])
    with zipfile.ZipFile(export) as good, zipfile.ZipFile(damaged, "w") as bad:
        for info in good.infolist():
            data = good.read(info)
            if info.filename.startswith("artifacts/"):
                data = data[:-1] + bytes([data[-1] ^ 1])  # one flipped bit
            bad.writestr(info.filename, data)
    with running_app("sqlite", tmp_path) as target:
        result = target.test_cli_runner().invoke(
            args=["registry", "import", str(damaged)]
        )
        assert result.exit_code != 0
        assert "does not match its checksum" in result.output
        with target.app_context():
            assert db.session.scalars(select(ModelVersion)).all() == []
            assert db.session.scalars(select(MLModel)).all() == []
        not_zip = tmp_path / "notes.txt"
        not_zip.write_text("hello")
        result = target.test_cli_runner().invoke(
            args=["registry", "import", str(not_zip)]
        )
        assert result.exit_code != 0 and "invalid_backup" in result.output
