"""``flask demo``: a model, an admin and a key for a first try."""

from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from app.auth import accounts
from app.cli.helpers import committed
from app.extensions import db
from app.models import MLModel, User
from app.rollout import versions

CREDENTIALS = "demo-credentials.json"


FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def train_demo_model() -> bytes:
    """A StandardScaler + LogisticRegression on iris (shipped with scikit-learn), as
    skops: its features named after the flower's measurements (in cm), its classes
    the species."""
    import numpy as np
    import skops.io
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    iris = load_iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(iris.data, iris.target_names[iris.target])
    # What fitting on a data frame with these columns records (no pandas needed).
    model.steps[0][1].feature_names_in_ = np.asarray(FEATURES, dtype=object)
    buffer = io.BytesIO(skops.io.dumps(model))
    return buffer.getvalue()


def ensure_demo(instance: Path, url: str = "http://127.0.0.1:5000") -> list[str]:
    """Create what is missing (admin, key, demo model); return lines to print."""
    path = instance / CREDENTIALS
    saved = json.loads(path.read_text()) if path.exists() else {}
    admin = db.session.scalar(select(User).where(User.username == "admin"))
    if admin is None:
        saved["password"] = secrets.token_urlsafe(12)
        admin = accounts.create_user("admin", saved["password"], "admin")
        _, saved["api_key"] = accounts.create_key(admin, "demo", ["predict", "admin"])
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(saved, handle)
    if db.session.scalar(select(MLModel).where(MLModel.name == "demo")) is None:
        versions.upload_version(
            "demo",
            "demo.skops",
            train_demo_model(),
            description="Iris species from 4 flower measurements",
            notes="trained by `flask demo`",
        )
    lines = ["ModelDock demo is ready: model 'demo' (iris, 4 features)."]
    if saved:
        lines += [
            f"Sign in at {url}/auth/login as admin / {saved['password']}",
            f"API key (predict+admin): {saved['api_key']}",
            f"export MODELDOCK_KEY={saved['api_key']}",
            f"(kept in {path}; delete that file after noting them)",
        ]
    return lines


@click.command("demo")
@click.option(
    "--url",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="Where the server will answer (printed in the sign-in line).",
)
@with_appcontext
def demo_command(url: str):
    """Train a small iris classifier, register it as 'demo', print how to sign in."""
    with committed():
        lines = ensure_demo(Path(current_app.instance_path), url.rstrip("/"))
    for line in lines:
        click.echo(line)
