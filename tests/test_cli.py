"""Operator commands, run through Flask's CLI runner against a real database."""

from __future__ import annotations

import json

from sqlalchemy import select

from app.extensions import db
from app.models import ApiKey, AuditEvent, User
from tests.conftest import auth


def test_demo_registers_a_model_and_prints_a_working_login(
    app, runner, client, tmp_path
):
    app.instance_path = str(tmp_path)
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    key = next(
        line.split("=", 1)[1]
        for line in result.output.splitlines()
        if line.startswith("export MODELDOCK_KEY=")
    )
    password = json.loads((tmp_path / "demo-credentials.json").read_text())["password"]
    assert f"admin / {password}" in result.output
    response = client.post(
        "/api/v1/models/demo/predict",
        headers=auth(key),
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
    )
    assert response.status_code == 200 and response.get_json()["predictions"] == [
        "setosa"
    ]
    assert "http://127.0.0.1:5000/auth/login" in result.output
    # idempotent: same credentials, no new model; the port actually used is printed
    again = runner.invoke(args=["demo", "--url", "http://127.0.0.1:5001"])
    assert again.exit_code == 0 and key in again.output
    assert "http://127.0.0.1:5001/auth/login" in again.output
    assert client.get("/api/v1/models/demo", headers=auth(key)).get_json()[
        "versions"
    ] == [1]


def test_users_keys_and_models_commands(app, runner, client, iris, iris_v2, tmp_path):
    result = runner.invoke(
        args=["users", "create-admin", "ops"], input="s3cret-pass\ns3cret-pass\n"
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        args=[
            "keys",
            "create",
            "ops",
            "--scope",
            "predict",
            "--scope",
            "admin",
            "--name",
            "deploy",
        ]
    )
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]

    path = tmp_path / "iris.skops"
    path.write_bytes(iris.as_skops())
    assert runner.invoke(args=["models", "upload", "iris", str(path)]).exit_code == 0
    path2 = tmp_path / "iris2.pkl"
    path2.write_bytes(iris_v2.as_pickle())
    out = runner.invoke(args=["models", "upload", "iris", str(path2)])
    assert "version 2 stored" in out.output
    assert runner.invoke(args=["models", "activate", "iris", "2"]).exit_code == 0
    listing = runner.invoke(args=["models", "list"]).output
    assert "iris\tclassification\tactive=2\tversions=[1, 2]" in listing
    versions = runner.invoke(args=["models", "versions", "iris"]).output.splitlines()
    assert versions[0].startswith("1\tready\tskops")
    assert versions[1].startswith("2\tactive\tpickle")
    body = client.post(
        "/api/v1/models/iris/predict",
        headers=auth(key),
        json={"instances": iris.X[:1].tolist()},
    ).get_json()
    assert body["version"] == 2

    with app.app_context():
        prefix = db.session.scalar(select(ApiKey.prefix))
    assert runner.invoke(args=["keys", "revoke", prefix]).exit_code == 0
    assert client.get("/api/v1/models", headers=auth(key)).status_code == 401
    assert "revoked" in runner.invoke(args=["keys", "list"]).output


def test_cli_errors_are_messages_not_tracebacks(app, runner, tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    result = runner.invoke(args=["models", "upload", "x", str(evil)])
    assert result.exit_code != 0
    assert "unsafe_model_file" in result.output and "os.system" in result.output
    assert runner.invoke(args=["models", "activate", "nope", "1"]).exit_code != 0
    weak = runner.invoke(args=["users", "create", "bob"], input="short\nshort\n")
    assert "weak_password" in weak.output
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "bob")) is None


def test_cli_changes_to_users_and_keys_are_audited(app, runner):
    def events():
        with app.app_context():
            return [
                (e.actor, e.action, e.target)
                for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))
            ]

    assert (
        runner.invoke(
            args=["users", "create-admin", "ops"], input="s3cret-pass\ns3cret-pass\n"
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(
            args=["users", "create", "bob"], input="bob-password\nbob-password\n"
        ).exit_code
        == 0
    )
    result = runner.invoke(
        args=[
            "keys",
            "create",
            "ops",
            "--scope",
            "admin",
            "--rate-limit",
            "5 per minute",
        ]
    )
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["keys", "create", "bob"]).exit_code == 0
    with app.app_context():
        prefix, bobs = db.session.scalars(select(ApiKey.prefix).order_by(ApiKey.id))
    for args in (
        ["keys", "set-limit", prefix, "none"],
        ["users", "role", "ops", "user"],
        ["users", "disable", "bob"],
        ["users", "enable", "bob"],
        ["keys", "revoke", bobs],
    ):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, (args, result.output)
    assert events() == [
        ("cli", "user.create", "user:ops"),
        ("cli", "user.create", "user:bob"),
        ("cli", "key.create", f"key:{prefix}"),
        ("cli", "key.create", f"key:{bobs}"),
        ("cli", "key.limit", f"key:{prefix}"),
        # demoting revokes the admin-scope key: the role change is the audited act
        ("cli", "user.role", "user:ops"),
        ("cli", "user.disable", "user:bob"),
        ("cli", "user.enable", "user:bob"),
        ("cli", "key.revoke", f"key:{bobs}"),
    ]
    # a no-op (already revoked) and a failed command add nothing
    assert runner.invoke(args=["keys", "revoke", prefix]).exit_code == 0
    missing = runner.invoke(args=["users", "disable", "nobody"])
    assert missing.exit_code == 1 and "user_not_found" in missing.output
    assert len(events()) == 9
