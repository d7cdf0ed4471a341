"""Scale-out: three ModelDock hosts behind one nginx upstream, sharing one PostgreSQL
and one Redis, under load while a version is activated and hosts fail.

Each host is a gunicorn (`gunicorn -c gunicorn.conf.py wsgi:app`, 2 workers) in a
Linux network namespace of its own with an address on a bridge this test makes
(tests/netns.py; removed at the end, also after a failure). nginx runs in the root
namespace with the site nginx/render.py writes for three `--upstream` addresses
(passive health checks; predictions retried on the next host even once sent). The
machine's PostgreSQL and Redis listen on 127.0.0.1 only: a forwarder
(tests/forwarder.py) bound to the bridge's address alone passes the hosts'
connections to them. A fresh database and a Redis key prefix of its own per run.
The deploy steps run as an operator would: `flask db upgrade` and the other
commands inside host 1's namespace, the new version activated through host 1's
admin API.

The load: 8 keep-alive HTTPS connections to nginx, each sending one iris row at a
time to the stable version and checking the answer against the local model of the
version that answered (the prediction cache is off so that every answer is
computed by the host that sent it). Every response is recorded, and nginx's access
log says which hosts each request went to.

1. The same load through an nginx with one upstream and through one with three,
   three turns of 5 s each: req/s with 1 and 3 hosts and where the CPU went
   (reported, not asserted: on a 2-core machine three hosts share the same two
   cores, with nginx, the client and whatever else runs there).
2. At least 24 s with events: activate version 2 through host 1, poll every host
   directly until it serves version 2; `kill -9` every process of host 2, start it
   again (cold) and wait until nginx sends it requests again; drain host 3 with
   SIGTERM and start it again likewise.
3. Every host answers the same 150 rows with each version, compared.

Target: no failed request apart from those in flight on the killed host (and those
are retried by nginx, so none is expected). The numbers are printed at the end of
the pytest run (tests/conftest.py), put in the assertion messages and written to
scaleout.json in the test's tmp folder; docs/scaling.md quotes a run.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy as sa

from tests import netns
from tests.conftest import POSTGRES_URL
from tests.stack import env_with, free_port, start_logged, stop, wait_for, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.scaleout, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHARED_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HOST = "modeldock.test"
MODEL = "iris"
PREDICT = f"/api/v1/models/{MODEL}/predict"
HOSTS = 3
WORKERS = 2  # gunicorn workers per host (WEB_CONCURRENCY)
APP_PORT = 8000  # each host's gunicorn, on its own address
CONNECTIONS = 8  # keep-alive client connections to nginx
MEASURE_SECONDS = 5.0  # one turn of the 1-host / 3-hosts comparison
ROUNDS = 3  # turns of each
EVENTS_MIN_SECONDS = 24.0
LOAD_CAP_SECONDS = 300.0  # the load threads stop by themselves after this at most
# nginx's access log: which hosts each request went to ("a, b" when retried).
LOG_FORMAT = (
    'log_format scaleout escape=json \'{"msec":$msec,'
    '"id":"$http_x_request_id","status":$status,'
    '"upstream":"$upstream_addr",'
    '"upstream_status":"$upstream_status",'
    '"request_time":$request_time}\';'
)


class _TLS(http.client.HTTPSConnection):
    """HTTPS to nginx on 127.0.0.1, presenting (and verifying) the site's name."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@dataclass
class Host:
    index: int
    net: netns.Host
    env: dict[str, str]
    tmp: Path
    process: subprocess.Popen | None = None
    log: Path | None = None
    starts: int = 0

    @property
    def upstream(self) -> str:
        return f"{self.net.address}:{APP_PORT}"

    def start(self) -> None:
        """`gunicorn -c gunicorn.conf.py wsgi:app` inside the host's namespace."""
        self.starts += 1
        self.log = self.tmp / f"host{self.index}-{self.starts}.log"
        self.process = start_logged(
            self.net.argv(
                [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"]
            ),
            self.log,
            cwd=ROOT,
            env=self.env,
        )

    def wait_warm(self, timeout: float = 180.0) -> None:
        def warm():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"host {self.index} exited with "
                    f"{self.process.returncode}: "
                    f"{self.log.read_text(errors='replace')[-3000:]}"
                )
            return self.log.read_text(errors="replace").count("warmed up") >= WORKERS

        wait_for(warm, timeout, 0.2, f"host {self.index}'s {WORKERS} warm workers")

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        key: str | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, dict]:
        """Straight to this host's gunicorn over the bridge, bypassing nginx."""
        conn = http.client.HTTPConnection(self.net.address, APP_PORT, timeout=timeout)
        headers = {"Host": HOST, "Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            conn.request(
                method, path, json.dumps(body).encode() if body else None, headers
            )
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, {"raw": data[:300].decode(errors="replace")}

    def serves_version(self, key: str) -> int | None:
        status, body = self.request(
            "POST", PREDICT, {"instances": [[5.1, 3.5, 1.4, 0.2]]}, key, 10
        )
        return body.get("version") if status == 200 else None


@dataclass
class Outcome:
    """One request as the client saw it."""

    sent: float
    done: float
    status: int  # 0: no HTTP answer (connection error)
    version: int | None
    right: bool  # 200 and the local model's prediction for that version
    request_id: str
    error: str = ""


@dataclass
class Nginx:
    process: subprocess.Popen
    port: int
    access_log: Path

    def entries(self, prefix: str) -> list[dict]:
        rows = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row["id"].startswith(prefix):
                rows.append(row)
        return rows


@dataclass
class Run:
    tmp: Path
    keys: dict[str, str] = field(default_factory=dict)
    hosts: list[Host] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    expected: dict[int, list] = field(default_factory=dict)
    context: ssl.SSLContext | None = None

    def load(
        self,
        nginx: Nginx,
        tag: str,
        stop_event: threading.Event,
        seconds: float | None = None,
    ) -> list[Outcome]:
        """CONNECTIONS keep-alive connections sending one row each, until
        ``stop_event`` (or ``seconds``, or LOAD_CAP_SECONDS at most)."""
        started = time.monotonic()
        deadline = started + min(seconds or LOAD_CAP_SECONDS, LOAD_CAP_SECONDS)
        headers = {
            "Authorization": f"Bearer {self.keys['predict']}",
            "Content-Type": "application/json",
        }

        def connection(n: int) -> list[Outcome]:
            rng = random.Random(n)
            conn, outcomes, i = None, [], 0
            while not stop_event.is_set() and time.monotonic() < deadline:
                index = rng.randrange(len(self.bodies))
                request_id = f"{tag}-{n}-{i}"
                i += 1
                sent = time.time()
                try:
                    if conn is None:
                        conn = _TLS(HOST, nginx.port, context=self.context, timeout=60)
                    conn.request(
                        "POST",
                        PREDICT,
                        self.bodies[index],
                        {**headers, "X-Request-ID": request_id},
                    )
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    outcomes.append(
                        Outcome(
                            sent, time.time(), 0, None, False, request_id, repr(exc)
                        )
                    )
                    if conn is not None:
                        conn.close()
                    conn = None
                    continue
                version, right = None, False
                if response.status == 200:
                    body = json.loads(data)
                    version = body.get("version")
                    right = body.get("predictions") == [
                        self.expected.get(version, [None] * 150)[index]
                    ]
                outcomes.append(
                    Outcome(
                        sent,
                        time.time(),
                        response.status,
                        version,
                        right,
                        request_id,
                        "" if right else data[:200].decode("replace"),
                    )
                )
            if conn is not None:
                conn.close()
            return outcomes

        with ThreadPoolExecutor(CONNECTIONS) as pool:
            futures = [pool.submit(connection, n) for n in range(CONNECTIONS)]
            if seconds is not None:
                stop_event.wait(seconds)
                stop_event.set()
            return [o for f in futures for o in f.result()]


def _forwarder(tmp: Path, listen: str, targets: list[str]):
    with open(tmp / "forwarder.log", "wb") as log:  # the child keeps its own
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "forwarder.py"), listen, *targets],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    ports = {}
    with process.stdout:
        for _ in targets:
            line = process.stdout.readline().split()
            if len(line) != 2:
                _stop_forwarder(process)
                raise RuntimeError(
                    "the forwarder did not start: "
                    f"{(tmp / 'forwarder.log').read_text()[-2000:]}"
                )
            ports[line[1]] = int(line[0].rsplit(":", 1)[1])
    return process, ports


def _stop_forwarder(process: subprocess.Popen) -> None:
    process.stdin.close()  # it stops at the end of its input
    stop(process, timeout=10)


def _nginx(tmp: Path, name: str, upstreams: list[str], cert: Path) -> Nginx:
    prefix = tmp / name
    https_port, http_port = free_port(), free_port()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "nginx" / "render.py"),
            "--server-name",
            HOST,
            "--cert",
            str(cert),
            "--key",
            str(cert.with_suffix(".key")),
            *[arg for u in upstreams for arg in ("--upstream", u)],
            "--listen",
            "127.0.0.1",
            "--http-port",
            str(http_port),
            "--https-port",
            str(https_port),
            "--standalone",
            str(prefix),
        ],
        check=True,
        capture_output=True,
        timeout=60,
        env=env_with(),
    )
    conf = prefix / "nginx.conf"
    line = f"access_log {prefix}/access.log;"
    text = conf.read_text()
    assert line in text, "nginx/nginx.conf.template's access_log line changed"
    conf.write_text(
        text.replace(
            line, f"{LOG_FORMAT}\n    access_log {prefix}/access.log scaleout;"
        )
    )
    process = start_logged(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        tmp / f"{name}.log",
    )
    wait_for_port(https_port, 20, process)
    return Nginx(process, https_port, prefix / "access.log")


def _flask(host: Host, *args: str) -> str:
    """An operator command, run inside ``host``'s namespace with its settings."""
    env = {k: v for k, v in host.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        host.net.argv([str(BIN / "flask"), *args]),
        cwd=ROOT,
        env={**env, "MODELDOCK_LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"flask {' '.join(args)}: {result.stdout[-2000:]} {result.stderr[-3000:]}"
    )
    return result.stdout


def _rate(outcomes: list[Outcome]) -> dict:
    """req/s over the turns (each turn's own span, added up) and latencies."""
    ok = [o for o in outcomes if o.status == 200 and o.right]
    turns: dict[str, list[Outcome]] = {}
    for o in outcomes:
        turns.setdefault(o.request_id.split("-", 1)[0], []).append(o)
    spans = [max(o.done for o in t) - min(o.sent for o in t) for t in turns.values()]
    rates = [
        sum(o.status == 200 and o.right for o in t) / span
        for t, span in zip(turns.values(), spans, strict=True)
    ]
    latencies = sorted((o.done - o.sent) * 1000 for o in ok)
    return {
        "sent": len(outcomes),
        "ok": len(ok),
        "seconds": round(sum(spans), 1),
        "req_per_s": round(len(ok) / sum(spans), 1),
        "turns_req_per_s": [round(r, 1) for r in rates],
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 1),
    }


def _tree(pid: int) -> set[int]:
    """``pid`` and its descendants."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        path = Path(f"/proc/{current}/task/{current}/children")
        if path.exists():
            todo.extend(int(p) for p in path.read_text().split())
    return found


def _cpu_of(pids: set[int]) -> float:
    """CPU seconds (user + system) the live processes ``pids`` have used."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every process."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK"), sum(values) / os.sysconf(
        "SC_CLK_TCK"
    )


@dataclass
class CPU:
    """Where the CPU went while one configuration was measured: the hosts (every
    process in their namespaces), nginx, this test's client threads, and the rest
    of the machine (other people's work on a shared machine)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def measure(self, pids: dict[str, set[int]]):
        before = {name: _cpu_of(group) for name, group in pids.items()}
        busy, total = _machine_busy()
        yield
        for name, group in pids.items():
            self.seconds[name] = (
                self.seconds.get(name, 0) + _cpu_of(group) - before[name]
            )
        busy2, total2 = _machine_busy()
        self.seconds["machine_busy"] = (
            self.seconds.get("machine_busy", 0) + busy2 - busy
        )
        self.seconds["machine_total"] = (
            self.seconds.get("machine_total", 0) + total2 - total
        )

    def summary(self, requests: int) -> dict:
        """CPU ms per request of the hosts, and each part's share of the machine's
        CPU time (2 cores x the measured seconds)."""
        s = dict(self.seconds)
        busy, total = s.pop("machine_busy"), s.pop("machine_total")
        shares = {name: value / total for name, value in s.items()}
        shares["others"] = max(0.0, busy - sum(s.values())) / total
        shares["idle"] = (total - busy) / total
        return {
            "cpu_ms_per_request_hosts": round(s["hosts"] / requests * 1000, 2),
            "cpu_share": {k: round(v, 2) for k, v in shares.items()},
        }


def _switch_times(
    hosts: list[Host], key: str, since: float, timeout: float = 60.0
) -> dict[int, float]:
    """Seconds from ``since`` until each host answered version 2 on 6 connections
    in a row (new connections spread over its workers)."""
    switched: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(switched) < len(hosts) and time.monotonic() < deadline:
        for host in hosts:
            if host.index not in switched and all(
                host.serves_version(key) == 2 for _ in range(6)
            ):
                switched[host.index] = round(time.time() - since, 2)
        time.sleep(0.05)
    return switched


def _until_nginx_uses(
    nginx: Nginx, host: Host, tag: str, since: float, timeout: float = 60.0
) -> float:
    """Wait until nginx's log shows a request answered by ``host`` after ``since``."""

    def answered():
        return any(
            e["upstream"].split(", ")[-1] == host.upstream
            and e["msec"] > since
            and e["status"] == 200
            for e in nginx.entries(tag)
        )

    wait_for(answered, timeout, 0.2, f"nginx sending requests to host {host.index}")
    return time.time()


@pytest.fixture
def network():
    why = netns.available()
    if why:
        pytest.skip(why)
    with netns.Network(HOSTS) as net:
        yield net


def test_three_hosts_behind_nginx_under_load_with_failures(
    tmp_path, network, iris, iris_v2, request
):
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed: `make test` installs it (apt-get)")
    run = Run(tmp_path)
    tag = uuid.uuid4().hex[:10]
    database = f"scaleout_{tag}"
    prefix = f"scaleout-{tag}:"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    pg, rd = urlsplit(POSTGRES_URL), urlsplit(SHARED_REDIS)
    forwarder = nginx1 = nginx3 = None
    stop_load = threading.Event()
    try:
        forwarder, ports = _forwarder(
            tmp_path,
            network.gateway,
            [f"{pg.hostname}:{pg.port or 5432}", f"{rd.hostname}:{rd.port or 6379}"],
        )
        pg_port = ports[f"{pg.hostname}:{pg.port or 5432}"]
        redis_port = ports[f"{rd.hostname}:{rd.port or 6379}"]
        user = f"{pg.username}@" if pg.username else ""
        common = dict(
            MODELDOCK_ENV="production",
            SECRET_KEY=uuid.uuid4().hex,  # one for all
            DATABASE_URL=f"postgresql+psycopg://{user}{network.gateway}:{pg_port}/"
            f"{database}",
            REDIS_URL=f"redis://{network.gateway}:{redis_port}{rd.path or '/0'}",
            MODELDOCK_REDIS_PREFIX=prefix,
            MODELDOCK_PROXY_HOPS="1",
            MODELDOCK_TRUSTED_HOSTS=HOST,
            WEB_CONCURRENCY=str(WORKERS),
            # Every answer computed by the host that sends it (docs/scaling.md).
            MODELDOCK_PREDICTION_CACHE_SECONDS="0",
            FLASK_APP="wsgi",
        )
        run.hosts = [
            Host(
                i + 1,
                net_host,
                env_with(
                    **common,
                    MODELDOCK_BIND=f"{net_host.address}:{APP_PORT}",
                    PROMETHEUS_MULTIPROC_DIR=str(tmp_path / f"metrics-h{i + 1}"),
                ),
                tmp_path,
            )
            for i, net_host in enumerate(network.hosts)
        ]
        first, second, third = run.hosts

        # The deploy step, on host 1: migrations, an operator, a key, two versions.
        for number, trained in ((1, iris), (2, iris_v2)):
            (tmp_path / f"iris-v{number}.skops").write_bytes(trained.as_skops())
            run.expected[number] = trained.estimator.predict(iris.X).tolist()
        _flask(first, "db", "upgrade")
        _flask(first, "users", "create-admin", "ops", "--password", "a long password")
        run.keys["predict"] = _flask(
            first,
            "keys",
            "create",
            "ops",
            "--name",
            "load",
            "--scope",
            "predict",
            "--scope",
            "admin",
            "--rate-limit",
            "10000000 per minute",
        ).split()[-1]
        _flask(first, "models", "upload", MODEL, str(tmp_path / "iris-v1.skops"))
        _flask(first, "models", "upload", MODEL, str(tmp_path / "iris-v2.skops"))
        run.bodies = [
            json.dumps({"instances": [row]}).encode() for row in iris.X.tolist()
        ]

        for host in run.hosts:
            host.start()
        subprocess.run(
            [
                "sh",
                str(ROOT / "nginx" / "self-signed-cert.sh"),
                HOST,
                str(tmp_path / "certs"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cert = tmp_path / "certs" / f"{HOST}.crt"
        run.context = ssl.create_default_context(cafile=str(cert))
        nginx1 = _nginx(tmp_path, "nginx-1", [first.upstream], cert)
        nginx3 = _nginx(tmp_path, "nginx-3", [h.upstream for h in run.hosts], cert)
        for host in run.hosts:
            host.wait_warm()
        assert {h.serves_version(run.keys["predict"]) for h in run.hosts} == {1}

        # 1. The same load through one host and through three, in turns (the
        # machine is shared: turns spread what others run over both).
        one, three = [], []
        cpu = {"one": CPU(), "three": CPU()}
        for turn in range(ROUNDS):
            for name, nginx, outcomes in (
                ("one", nginx1, one),
                ("three", nginx3, three),
            ):
                pids = {
                    "hosts": {p for h in run.hosts for p in h.net.pids()},
                    "nginx": _tree(nginx.process.pid),
                    "client": {os.getpid()},
                    "forwarder": {forwarder.pid},
                }
                with cpu[name].measure(pids):
                    outcomes.extend(
                        run.load(
                            nginx, f"{name}{turn}", threading.Event(), MEASURE_SECONDS
                        )
                    )

        # 2. The load with events.
        events: dict[str, float] = {}
        with ThreadPoolExecutor(1) as pool:
            started = time.time()
            future = pool.submit(run.load, nginx3, "ev", stop_load)
            try:
                time.sleep(2)
                events["activate"] = time.time()
                status, body = first.request(
                    "POST",
                    f"/api/v1/models/{MODEL}/versions/2/activate",
                    {"reason": "scale-out test"},
                    run.keys["predict"],
                )
                assert status == 200, body
                events["activated"] = time.time()
                switch = _switch_times(
                    run.hosts, run.keys["predict"], events["activated"]
                )
                events["all_switched"] = time.time()
                time.sleep(2)

                events["kill"] = time.time()
                killed = second.net.kill_all(signal.SIGKILL)
                # Listing the namespace's processes then signalling each takes a
                # while on a loaded machine: a request sent meanwhile is in flight
                # at the kill too.
                events["killed"] = time.time()
                second.process.wait(timeout=10)
                time.sleep(3)
                events["restart_2"] = time.time()
                second.start()
                second.wait_warm()
                events["warm_2"] = time.time()
                cold_version = second.serves_version(run.keys["predict"])
                events["back_2"] = _until_nginx_uses(
                    nginx3, second, "ev", events["warm_2"]
                )

                events["term"] = time.time()
                third.process.send_signal(signal.SIGTERM)
                drained_code = third.process.wait(timeout=90)
                events["drained"] = time.time()
                time.sleep(1)
                events["restart_3"] = time.time()
                third.start()
                third.wait_warm()
                events["warm_3"] = time.time()
                events["back_3"] = _until_nginx_uses(
                    nginx3, third, "ev", events["warm_3"]
                )
                time.sleep(max(2.0, started + EVENTS_MIN_SECONDS - time.time()))
            finally:
                stop_load.set()
                outcomes = future.result()
        ended = time.time()

        # 3. The same rows to every host, with each version.
        answers = {}
        for host in run.hosts:
            for number in (1, 2):
                status, body = host.request(
                    "POST",
                    f"/api/v1/models/{MODEL}/versions/{number}/predict",
                    {"instances": iris.X.tolist()},
                    run.keys["predict"],
                )
                assert status == 200, body
                answers[host.index, number] = (
                    body["predictions"],
                    body.get("probabilities"),
                )

        # --- counting
        entries = {e["id"]: e for e in nginx3.entries("ev-")}
        retried = [e for e in entries.values() if "," in e["upstream"]]

        def first_try(entry):
            return entry["upstream"].split(", ")[0]

        def overlaps_kill(entry):
            started = entry["msec"] - entry["request_time"]
            return started <= events["killed"] and entry["msec"] >= events["kill"]

        in_flight_killed = [
            e for e in retried if first_try(e) == second.upstream and overlaps_kill(e)
        ]
        failed = [o for o in outcomes if not (o.status == 200 and o.right)]
        excused = [
            o
            for o in failed
            if o.request_id in entries
            and second.upstream in entries[o.request_id]["upstream"]
            and overlaps_kill(entries[o.request_id])
        ]
        connection_errors = [o for o in failed if o.status == 0]
        wrong = [o for o in failed if o.status == 200]
        late_v1 = [
            o
            for o in outcomes
            if o.version == 1 and o.sent > events["all_switched"] + 5
        ]
        by_host = {h.index: 0 for h in run.hosts}
        for entry in entries.values():
            for host in run.hosts:
                if entry["upstream"].split(", ")[-1] == host.upstream:
                    by_host[host.index] += 1
        agree = all(
            answers[h.index, n] == answers[1, n] for h in run.hosts for n in (1, 2)
        )
        local = all(
            answers[h.index, n][0] == run.expected[n] for h in run.hosts for n in (1, 2)
        )
        rate_one = {**_rate(one), **cpu["one"].summary(len(one))}
        rate_three = {**_rate(three), **cpu["three"].summary(len(three))}
        numbers = {
            "hosts": HOSTS,
            "workers_per_host": WORKERS,
            "connections": CONNECTIONS,
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "one_host": rate_one,
            "three_hosts": rate_three,
            "ratio_3_to_1": round(rate_three["req_per_s"] / rate_one["req_per_s"], 2),
            "failed_one_host": sum(not (o.status == 200 and o.right) for o in one),
            "failed_three_hosts": sum(not (o.status == 200 and o.right) for o in three),
            "events": {
                "seconds": round(ended - started, 1),
                "sent": len(outcomes),
                "failed": len(failed),
                "failed_not_in_flight_on_killed": len(failed) - len(excused),
                "connection_errors": len(connection_errors),
                "wrong_answers": len(wrong),
                "retried_by_nginx": len(retried),
                "retried_first_on_killed_host": sum(
                    first_try(e) == second.upstream for e in retried
                ),
                "retried_first_on_drained_host": sum(
                    first_try(e) == third.upstream for e in retried
                ),
                "in_flight_on_killed_host_retried": len(in_flight_killed),
                "in_flight_on_killed_host_failed": len(excused),
                "answers_by_version": {
                    v: sum(o.version == v for o in outcomes) for v in (1, 2)
                },
                "v1_answers_5s_after_switch": len(late_v1),
                "answered_by_host": by_host,
                "slowest_ms": round(max((o.done - o.sent) * 1000 for o in outcomes), 1),
            },
            "switch_seconds_after_activation": switch,
            "activation_request_seconds": round(
                events["activated"] - events["activate"], 2
            ),
            "killed_processes": len(killed),
            "host2_restart_to_warm_s": round(events["warm_2"] - events["restart_2"], 1),
            "host2_warm_to_nginx_traffic_s": round(
                events["back_2"] - events["warm_2"], 1
            ),
            "host2_cold_start_version": cold_version,
            "host3_drain_s": round(events["drained"] - events["term"], 1),
            "host3_drain_exit_code": drained_code,
            "host3_restart_to_warm_s": round(events["warm_3"] - events["restart_3"], 1),
            "host3_warm_to_nginx_traffic_s": round(
                events["back_3"] - events["warm_3"], 1
            ),
            "agreement_3_hosts_2_versions_150_rows": agree,
            "agreement_with_local_model": local,
        }
        (tmp_path / "scaleout.json").write_text(json.dumps(numbers, indent=2))
        table = _table(numbers)
        print(table)
        request.node.user_properties.append(("terminal_report", table))
        examples = "\n".join(
            f"{o.request_id} {o.status} {o.error[:120]} "
            f"{entries.get(o.request_id, {}).get('upstream')}"
            for o in failed[:10]
        )

        # A request in flight on the killed host is retried by nginx when the host
        # died before answering; once its answer had begun (nginx has passed the
        # headers on), nginx can only cut it. Nothing else may fail.
        assert wrong == [], f"{table}\n{examples}"
        excused_ids = {o.request_id for o in excused}
        assert [o for o in failed if o.request_id not in excused_ids] == [], (
            f"{table}\n{examples}"
        )
        assert len(excused) <= CONNECTIONS, table  # at most one in flight each
        assert numbers["failed_one_host"] == numbers["failed_three_hosts"] == 0, table
        assert sorted(switch) == [1, 2, 3], f"not every host switched:\n{table}"
        assert cold_version == 2, table  # a cold host serves what the others do
        assert late_v1 == [], table
        assert drained_code == 0, table
        assert agree and local, f"{table}\n{answers}"
        assert all(by_host.values()), table
    finally:
        stop_load.set()
        for process in (nginx1 and nginx1.process, nginx3 and nginx3.process):
            stop(process)
        for host in run.hosts:
            stop(host.process, timeout=40)
        network.close()  # anything left in the namespaces, then the links
        if forwarder is not None:
            _stop_forwarder(forwarder)
        shared = redis.Redis.from_url(SHARED_REDIS)
        for key in shared.scan_iter(f"{prefix}*"):
            shared.delete(key)
        shared.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def _table(n: dict) -> str:
    e = n["events"]
    switch = ", ".join(
        f"host {h} {s} s"
        for h, s in sorted(n["switch_seconds_after_activation"].items())
    )
    one, three = n["one_host"], n["three_hosts"]
    return "\n".join(
        [
            f"scale-out: {n['hosts']} hosts x {n['workers_per_host']} gunicorn workers "
            f"behind nginx, {n['connections']} keep-alive HTTPS connections, "
            f"{n['cpus']} CPUs shared by everything (load average at the end "
            f"{n['load_average_at_end'][0]:.1f})",
            *[
                f"  {label}: {r['req_per_s']:7.1f} req/s "
                f"(turns {r['turns_req_per_s']}) "
                f"p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms, {r['ok']} in "
                f"{r['seconds']} s, {failed} failed; host CPU "
                f"{r['cpu_ms_per_request_hosts']} ms/request; "
                f"CPU share {r['cpu_share']}"
                for label, r, failed in (
                    ("1 host ", one, n["failed_one_host"]),
                    ("3 hosts", three, n["failed_three_hosts"]),
                )
            ],
            f"  3 hosts / 1 host = {n['ratio_3_to_1']}",
            f"  with events ({e['seconds']} s): sent {e['sent']}, failed {e['failed']} "
            f"({e['failed_not_in_flight_on_killed']} not in flight on the killed host; "
            f"connection errors {e['connection_errors']}, wrong answers "
            f"{e['wrong_answers']}), slowest {e['slowest_ms']} ms",
            f"  retried by nginx: {e['retried_by_nginx']} "
            f"(first try on the killed host "
            f"{e['retried_first_on_killed_host']}, of which in flight at the kill "
            f"{e['in_flight_on_killed_host_retried']}; on the drained host "
            f"{e['retried_first_on_drained_host']}); in flight on the killed host and "
            f"failed (answer already begun): {e['in_flight_on_killed_host_failed']}",
            f"  version 2 activated through host 1 "
            f"({n['activation_request_seconds']} s); "
            f"served by every host after: {switch}",
            f"  answers by version {e['answers_by_version']}, "
            f"version 1 answers sent 5 s "
            f"after the switch: {e['v1_answers_5s_after_switch']}; answered by host "
            f"{e['answered_by_host']}",
            f"  kill -9 host 2 ({n['killed_processes']} processes): restart to warm "
            f"{n['host2_restart_to_warm_s']} s, then nginx traffic after "
            f"{n['host2_warm_to_nginx_traffic_s']} s; cold start serves version "
            f"{n['host2_cold_start_version']}",
            f"  SIGTERM host 3: drained in {n['host3_drain_s']} s (exit "
            f"{n['host3_drain_exit_code']}), restart to warm "
            f"{n['host3_restart_to_warm_s']} s, nginx traffic after "
            f"{n['host3_warm_to_nginx_traffic_s']} s",
            f"  same 150 rows x 2 versions on every host: identical "
            f"{n['agreement_3_hosts_2_versions_150_rows']}, equal to the local model "
            f"{n['agreement_with_local_model']}",
        ]
    )
