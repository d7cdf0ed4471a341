"""The Celery app of the batch workers: ``celery -A app.batch.celery worker``.

Its settings are ModelDock's own (app/config.py: defaults, ``instance/config.py``,
the environment): Celery asks for them the first time it reads its configuration,
in the worker, which then builds the Flask app once per process. Nothing connects
at import. Each chunk task runs in that app's context, through ``chunks.run_chunk``
like the in-process runner.
"""

from __future__ import annotations

import functools

from celery import Celery
from celery.signals import worker_process_init
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from app import create_app
from app.batch import chunks, runner
from app.extensions import db


@functools.cache
def flask_app() -> Flask:
    """This worker process's ModelDock app (settings, database, serving state)."""
    return create_app()


class ModelDockCelery(Celery):
    """A Celery app configured from ModelDock's settings when first configured."""

    def on_configure(self) -> None:
        self.config_from_object(runner.celery_settings(flask_app().config))


celery = ModelDockCelery("modeldock")


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    """A forked pool process opens its own database connections."""
    with flask_app().app_context():
        db.engine.dispose(close=False)


@celery.task(
    name=runner.TASK_NAME,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # The database, not the rows, failed: try the chunk again a little later.
    autoretry_for=(SQLAlchemyError,),
    retry_backoff=True,
    max_retries=5,
)
def run_chunk(self, job_id: str, index: int) -> str:
    """Predict and store one chunk of a batch job."""
    with flask_app().app_context():
        try:
            return chunks.run_chunk(job_id, index, self.request.hostname or "")
        finally:
            db.session.remove()
