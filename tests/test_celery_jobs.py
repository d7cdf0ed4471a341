"""Batch jobs on real Celery workers: the machine's RabbitMQ, two `celery worker`
processes started (and stopped) here, PostgreSQL, a queue of this run's own.

A 200,000-row job is shared by both workers and its results equal the model's own
predictions; a worker killed with SIGKILL in the middle of a chunk has that chunk
redone by the other (acks late), with no row lost or duplicated; rows/s with one
and with two workers are printed (not asserted: the machine is shared).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import orjson
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import BatchChunk
from tests.conftest import auth, build_app, make_keys, upload
from tests.live import BIN, ROOT, postgres_database

pytestmark = pytest.mark.slow

BROKER = os.environ.get("TEST_CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
ROWS = 200_000
CHUNK_ROWS = 10_000  # 20 chunks: long enough to be caught in the middle of one
JOB_TIMEOUT = 240.0


def broker_answers() -> None:
    import kombu

    try:
        with kombu.Connection(BROKER, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # a missing broker is a failure, not a skip
        pytest.fail(f"RabbitMQ is not reachable at {BROKER}: {exc}")


class Worker:
    """One `celery -A app.batch.celery worker` process group, logging to a file."""

    def __init__(self, name: str, env: dict[str, str], log: Path):
        self.name, self.log = name, log
        self.node = f"{name}@{os.uname().nodename}"
        self.output = log.open("wb")
        self.proc = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "app.batch.celery",
                "worker",
                "--loglevel=INFO",
                "--concurrency=1",
                "--prefetch-multiplier=1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                self.node,
            ],
            cwd=ROOT,
            env=env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its pool and inference processes die with it
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log.read_text(errors="replace"):
                return
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready:\n{self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL after 15 s."""
        self.kill(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(5)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of its group
        except ProcessLookupError:
            pass
        self.output.close()


@contextmanager
def own_queue(name: str):
    """A queue for this run only; deleted at the end, whatever is left in it."""
    import kombu

    try:
        yield name
    finally:
        with kombu.Connection(BROKER, connect_timeout=3) as conn:
            try:
                conn.default_channel.queue_delete(name)
            except Exception:  # never declared (the test failed early)
                pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory, iris):
    broker_answers()
    logs = tmp_path_factory.mktemp("celery")
    with (
        postgres_database() as url,
        own_queue(f"modeldock-test-{uuid.uuid4().hex[:12]}") as queue,
    ):
        settings = {
            "MODELDOCK_CELERY_BROKER_URL": BROKER,
            "MODELDOCK_CELERY_QUEUE": queue,
            "MODELDOCK_BATCH_CHUNK_ROWS": CHUNK_ROWS,
        }
        app = build_app(url, {}, **settings)
        keys = make_keys(app)
        client = app.test_client()
        assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
        env = {
            **os.environ,
            **{k: str(v) for k, v in settings.items()},
            "DATABASE_URL": url,
            "SECRET_KEY": "test-secret",
            "MODELDOCK_LOG_FORMAT": "text",
            "MODELDOCK_REQUEST_LOG_ENABLED": "false",
        }
        workers: list[Worker] = []

        def start(name: str) -> Worker:
            worker = Worker(name, env, logs / f"{name}.log")
            workers.append(worker)
            worker.wait_ready()
            return worker

        try:
            yield app, client, keys, start
        finally:
            for worker in workers:
                worker.stop()
            app.extensions["modeldock"].close()
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def submit(client, key, rows: np.ndarray) -> str:
    with client.post(
        "/api/v1/models/iris/jobs",
        data=orjson.dumps({"instances": rows}, option=orjson.OPT_SERIALIZE_NUMPY),
        content_type="application/json",
        headers=auth(key),
    ) as response:
        assert response.status_code == 202, response.text
        assert response.json["runner"] == "celery"
        return response.json["id"]


def wait_done(client, key, job_id: str, timeout: float = JOB_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with client.get(f"/api/v1/jobs/{job_id}", headers=auth(key)) as response:
            state = response.json
        assert state["status"] != "failed", state
        if state["status"] == "done":
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {state}")


def chunk_workers(app, job_id: str) -> dict[str, int]:
    """Chunks done per worker node."""
    with app.app_context():
        pairs = db.session.execute(
            select(BatchChunk.worker, func.count())
            .where(BatchChunk.job_id == job_id, BatchChunk.status == "done")
            .group_by(BatchChunk.worker)
        ).all()
        db.session.remove()
    return dict(pairs)


def warm_up(app, client, key, nodes: set[str]) -> None:
    """Small chunks until every worker has loaded the model (so the timed jobs
    measure predicting, not model loading)."""
    app.config["MODELDOCK_BATCH_CHUNK_ROWS"] = 5
    try:
        for _ in range(5):
            job_id = submit(client, key, np.tile([5.1, 3.5, 1.4, 0.2], (60, 1)))
            wait_done(client, key, job_id)
            if nodes <= set(chunk_workers(app, job_id)):
                return
        raise AssertionError("a worker took no chunk of the warm-up jobs")
    finally:
        app.config["MODELDOCK_BATCH_CHUNK_ROWS"] = CHUNK_ROWS


def timed_job(client, key, rows) -> tuple[str, float]:
    job_id = submit(client, key, rows)
    started = time.perf_counter()
    wait_done(client, key, job_id)
    return job_id, time.perf_counter() - started


def check_results(client, key, job_id: str, expected: np.ndarray) -> None:
    """Every row once, in order, equal to the model's own prediction."""
    with client.get(
        f"/api/v1/jobs/{job_id}/results?format=jsonl", headers=auth(key)
    ) as response:
        assert response.status_code == 200
        lines = [orjson.loads(line) for line in response.text.splitlines()]
    assert [line["row"] for line in lines] == list(range(len(expected)))
    assert [line["prediction"] for line in lines] == expected.tolist()


def test_jobs_shared_by_two_workers_survive_a_sigkill(stack, iris, capsys):
    app, client, keys, start = stack
    key = keys.predict
    rng = np.random.default_rng(14)
    low, high = iris.X.min(axis=0), iris.X.max(axis=0)
    rows = rng.uniform(low, high, size=(ROWS, 4)).round(2)
    expected = iris.estimator.predict(rows)

    # One worker.
    first = start("w1")
    warm_up(app, client, key, {first.node})
    job_one, seconds_one = timed_job(client, key, rows)
    assert chunk_workers(app, job_one) == {first.node: ROWS // CHUNK_ROWS}
    check_results(client, key, job_one, expected)

    # Two workers share one job.
    second = start("w2")
    warm_up(app, client, key, {first.node, second.node})
    job_two, seconds_two = timed_job(client, key, rows)
    shares = chunk_workers(app, job_two)
    assert set(shares) == {first.node, second.node}, shares
    assert sum(shares.values()) == ROWS // CHUNK_ROWS
    check_results(client, key, job_two, expected)

    # SIGKILL the second worker while it predicts a chunk: the broker gives that
    # chunk (unacknowledged) to the first, which redoes it.
    job_three = submit(client, key, rows)
    killed_chunk = None
    deadline = time.monotonic() + JOB_TIMEOUT
    with app.app_context():
        while killed_chunk is None and time.monotonic() < deadline:
            running = db.session.execute(
                select(BatchChunk.chunk_index).where(
                    BatchChunk.job_id == job_three,
                    BatchChunk.status == "running",
                    BatchChunk.worker == second.node,
                )
            ).first()
            db.session.rollback()
            if running is not None:
                second.kill()
                killed_chunk = running[0]
            else:
                time.sleep(0.005)
        assert killed_chunk is not None, "the second worker took no chunk"
        second.proc.wait(10)
        # Still "running" after its worker is dead: it was killed mid-chunk.
        status = db.session.scalar(
            select(BatchChunk.status).where(
                BatchChunk.job_id == job_three,
                BatchChunk.chunk_index == killed_chunk,
            )
        )
        db.session.remove()
    assert status == "running", "the chunk finished before the kill landed"
    state = wait_done(client, key, job_three)
    assert state["rows"] == {"total": ROWS, "done": ROWS}
    assert state["chunks"]["total"] == state["chunks"]["done"] == ROWS // CHUNK_ROWS
    assert state["chunks"]["redone"] >= 1
    with app.app_context():
        chunk = db.session.get(BatchChunk, (job_three, killed_chunk))
        assert (chunk.attempts, chunk.worker) == (2, first.node)
        count = db.session.scalar(
            select(func.count()).where(BatchChunk.job_id == job_three)
        )
        db.session.remove()
    assert count == ROWS // CHUNK_ROWS  # one row per chunk, however often it ran
    check_results(client, key, job_three, expected)

    with capsys.disabled():
        print(
            f"\nCelery batch jobs, {ROWS:,} rows in chunks of {CHUNK_ROWS:,} "
            f"(iris, {os.cpu_count()} cores):\n"
            f"  1 worker : {ROWS / seconds_one:10,.0f} rows/s ({seconds_one:.1f} s)\n"
            f"  2 workers: {ROWS / seconds_two:10,.0f} rows/s ({seconds_two:.1f} s)"
            f"  shares {sorted(shares.values())}\n"
            f"  SIGKILL of a worker mid-chunk: {state['chunks']['redone']} chunk(s) "
            f"redone (chunk {killed_chunk}), {state['rows']['done']:,} rows, "
            "none lost or duplicated"
        )
