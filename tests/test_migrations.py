"""Migrations: one head, and `upgrade` on an empty database equals the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import upgrade

from app.extensions import db
from tests.conftest import BACKENDS, build_app, database


def test_single_head(tmp_path):
    with database("sqlite", tmp_path) as (url, options):
        app = build_app(url, options)
        with app.app_context():
            config = app.extensions["migrate"].migrate.get_config()
            assert len(ScriptDirectory.from_config(config).get_heads()) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_matches_models(backend, tmp_path):
    with database(backend, tmp_path) as (url, options):
        app = build_app(url, options)
        with app.app_context():
            db.drop_all()  # start from nothing: the migration builds it all
            upgrade()
            with db.engine.connect() as conn:
                context = MigrationContext.configure(conn, opts={"compare_type": True})
                diff = compare_metadata(context, db.metadata)
            assert diff == []
            db.session.remove()
            db.engine.dispose()
