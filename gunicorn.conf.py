"""gunicorn settings for ModelDock: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every value can be overridden on the command line (``--workers 4``) or with
``GUNICORN_CMD_ARGS``; the environment variables below are the usual knobs.
"""

import importlib
import os
import shutil
import tempfile

# Prometheus multiprocess mode: every worker writes its metrics to files in one
# folder that /metrics adds up. It must be in the environment before a worker
# imports prometheus_client; it is kept across HUP reloads (this file is read
# again then) and emptied once at start (on_starting below).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="modeldock-metrics-"
    )
# numpy/BLAS would start one thread per core in every worker: with several
# workers that oversubscribes the CPU. One thread each; the workers use the cores.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

# Heavy libraries are imported once, here in the master, and shared with every
# worker by fork (copy-on-write): a worker then boots in about a second instead of
# five, which keeps a HUP reload short. The app itself is not preloaded, so a HUP
# still reloads ModelDock's code; upgrading these libraries needs a restart.
# (Safe to fork: the thread limits above keep BLAS from starting threads.)
for _module in (
    "numpy",
    "scipy.sparse",
    "sklearn.base",
    "sklearn.pipeline",
    "sklearn.linear_model",
    "sklearn.preprocessing",
    "sklearn.tree",
    "sklearn.ensemble",
    "skops.io",
    "joblib",
    "flask",
    "sqlalchemy",
    "flask_sqlalchemy",
    "flask_migrate",
    "flask_limiter",
    "flask_wtf",
    "psycopg",
    "redis",
    "orjson",
    "prometheus_client",
):
    importlib.import_module(_module)

# Loopback (or a unix socket: "unix:/run/modeldock/gunicorn.sock") only: nginx is
# the one public listener.
bind = os.environ.get("MODELDOCK_BIND", "127.0.0.1:8000")

# Worker model. Prediction is CPU-bound (numpy/scikit-learn) so processes, not
# threads, give parallelism: one worker per core keeps every core busy without
# making them fight (2×cores+1, the classic advice, is for I/O-bound apps and here
# would only multiply the memory of loaded models). Each worker runs a few threads
# (gthread) so that a request waiting on PostgreSQL, Redis or a slow upload does
# not idle its core; numpy releases the GIL for much of the arithmetic.
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2))
worker_class = (
    "app.web.gunicorn_worker.ReusePortThreadWorker"  # gthread, see reuse_port
)
threads = int(os.environ.get("MODELDOCK_THREADS", "4"))

# Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads
# connections over them by a hash of each connection. With one shared socket,
# keep-alive clients stuck to whichever worker won the accept race: at 32
# connections one worker served them all while the other idled (829 req/s; about
# 2,500-3,000 with reuse_port, split 51:49). A worker that stops closes its socket
# at once (app/web/gunicorn_worker.py); set net.ipv4.tcp_migrate_req=1 so that a
# worker killed with -9 hands the connections queued on its socket to the others.
# MODELDOCK_REUSE_PORT=0 goes back to one shared socket (always so for a unix socket,
# which the kernel does not balance).
reuse_port = os.environ.get("MODELDOCK_REUSE_PORT", "1") != "0" and not bind.startswith(
    "unix:"
)

# A worker that stops answering its heartbeat for `timeout` seconds is replaced.
# With gthread the heartbeat runs beside the requests, so a long prediction does
# not trip it; the sandboxed upload validation has its own (shorter) limits.
timeout = 60
# On HUP, TERM or a max_requests restart a worker stops accepting and finishes its
# requests for up to this long before it is killed.
graceful_timeout = 30
keepalive = 5
# Worker recycling is off by default, as in TF Serving, MLServer or BentoML: a new
# worker must load and warm every served model again, and at a few thousand
# requests per second a limit like 5000 would restart a worker every few seconds.
# Model memory is bounded by MODELDOCK_MODEL_CACHE_MB instead. To recycle anyway
# (a leak in a custom estimator), set MODELDOCK_MAX_REQUESTS; a 10 % jitter keeps
# workers from restarting at the same moment.
max_requests = int(os.environ.get("MODELDOCK_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
# Import the app in each worker, not in the master: a HUP reload then picks up new
# code, and no database or Redis connection is ever shared across a fork.
preload_app = False

# Managed with signals (HUP, TERM); gunicorn's control socket would live at one
# path per user, shared by every gunicorn that user runs.
control_socket_disable = True

# Logs: JSON lines on stderr (errors) and stdout (access, with the request id).
logger_class = "app.observability.jsonlog.GunicornLogger"
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def on_starting(server):
    """Start with empty metrics: files left by a previous run would be counted."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def post_worker_init(worker):
    """Load the served models before this worker accepts its first request."""
    from app.extensions import db
    from app.serving.predict import warm_up

    with worker.wsgi.app_context():
        try:
            worker.log.info("warmed up %d model versions", warm_up())
        except Exception as exc:  # the database may be away: serve and retry lazily
            worker.log.warning("warm-up skipped: %s", exc)
        finally:
            db.session.remove()


def child_exit(server, worker):
    """A dead worker's gauges stop counting; its counters stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """Graceful stop of a worker: write its queued request logs before it goes."""
    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", {})
    if "modeldock.request_log" in extensions:
        extensions["modeldock.request_log"].close()
    if "modeldock.drift_sketch" in extensions:
        extensions["modeldock.drift_sketch"].close()
    if "modeldock" in extensions:  # stop this worker's inference processes
        extensions["modeldock"].close()
