# The two commands a newcomer needs: `make run` and `make test`.
# Everything else here is what those two call.

VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 5000
FLASK  := FLASK_APP=wsgi $(VENV)/bin/flask
# pytest processes of `make test`, each running whole test files (pytest-xdist); more
# than the cores, since many tests wait on the servers and processes they start.
TEST_PROCESSES ?= 3
# Every pip install here takes its versions from the lock file (make lock refreshes
# it), build dependencies included.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: run test lint docs bench install install-test lock services chromium system-packages oidc-provider

## run: install, migrate the database, register the demo model, serve on 127.0.0.1:5000
run: install
	@$(PY) -c "import socket; s = socket.socket(); s.bind(('$(HOST)', $(PORT)))" \
	  2>/dev/null || { echo "Port $(PORT) on $(HOST) is taken (another server answers" \
	  "there). Start on another port: make run PORT=5001" >&2; exit 1; }
	$(FLASK) db upgrade
	$(FLASK) demo --url http://$(HOST):$(PORT)
	$(VENV)/bin/gunicorn --bind $(HOST):$(PORT) --workers 2 --no-control-socket --access-logfile - wsgi:app

## test: install the test dependencies, make sure PostgreSQL and Redis run, check the
## layers, style and dependencies (lint), build the documentation (warnings are errors:
## a broken link fails), run every test
test: install-test services chromium system-packages oidc-provider lint
	$(PY) -m mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile --ignore tests/test_openapi.py
	@# schemathesis reports each operation it fuzzes only in a single pytest process
	$(PY) -m pytest tests/test_openapi.py

## lint: the import layers (pyproject.toml [tool.importlinter]), ruff's checks and
## formatting, and that every dependency is declared and used (deptry)
lint: install-test
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/deptry .
	cd clients/python && $(abspath $(VENV))/bin/deptry .

## docs: serve the documentation pages on 127.0.0.1:8001
docs: install-test
	$(PY) -m mkdocs serve --dev-addr 127.0.0.1:8001

## bench: issue 18's targets as pass/fail (benchmarks/targets.py), the serving benchmark
## then the CPU cost of each part of the request path, the cost of isolation per call
## and what monitoring costs (issue 15: ≤ 5 % of req/s, benchmarks/monitoring.py)
bench: install-test services
	$(PY) -m pip install --quiet -e '.[test,bench]'
	@command -v wrk >/dev/null || apt-get install -y --no-install-recommends wrk
	$(PY) benchmarks/serving.py
	$(PY) benchmarks/request_path.py
	$(PY) benchmarks/isolation.py
	$(PY) benchmarks/targets.py
	$(PY) benchmarks/monitoring.py

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

## lock: resolve the newest versions pyproject.toml allows into constraints.txt
lock: $(VENV)/bin/python
	env -u PIP_CONSTRAINT $(PY) -m pip install --quiet pip-tools
	env -u PIP_CONSTRAINT $(VENV)/bin/pip-compile --quiet --upgrade --all-extras \
	  --build-deps-for editable --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links --output-file constraints.txt pyproject.toml

install: $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .

install-test: $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet -e ./clients/python

# The browser tests drive Debian's Chromium (Playwright's own download cannot work here).
chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)

# The real OpenID provider tests/test_oidc.py starts (panva's oidc-provider, under
# the machine's Node.js), at the versions package-lock.json pins.
oidc-provider:
	cd tests/oidc && npm ci --no-audit --no-fund

# PostgreSQL, Redis and RabbitMQ are local services on this machine; start them if
# they are down.
RABBIT_UP = python3 -c "import socket; socket.create_connection(('127.0.0.1', 5672), 2).close()" 2>/dev/null
# As root, also let a killed worker's queued connections move to the other workers
# (gunicorn.conf.py's reuse_port; docs/production.md), as production is told to.
services:
	@[ "$$(id -u)" != 0 ] || sysctl -q -w net.ipv4.tcp_migrate_req=1 2>/dev/null || true
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && exit 0; sleep 1; done; echo "PostgreSQL or Redis did not start" >&2; exit 1
	@# RabbitMQ, the broker of the Celery batch workers (tests/test_celery_jobs.py).
	@$(RABBIT_UP) || { rabbitmq-server -detached && for i in $$(seq 1 60); do $(RABBIT_UP) && exit 0; sleep 1; done; echo "RabbitMQ did not start" >&2; exit 1; }

# nginx, for the end-to-end test of the production stack (tests/test_production_stack.py);
# iproute2 for the scale-out test's network namespaces (tests/test_scaleout.py); systemd
# for `systemd-analyze verify` of deploy/systemd (tests/test_deploy.py); Prometheus with
# promtool for the alert rules in deploy/prometheus/ (tests/test_prometheus.py). Each
# installed only when missing; a policy-rc.d keeps the packages from starting services
# (the system nginx on port 80, Prometheus on 9090: the tests run their own on 127.0.0.1).
system-packages:
	@missing=; \
	  { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing="$$missing nginx"; \
	  { command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ]; } || missing="$$missing iproute2"; \
	  command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	  command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	[ -z "$$missing" ] || { \
	  policy=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy=1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; status=$$?; \
	  [ -z "$$policy" ] || rm -f /usr/sbin/policy-rc.d; exit $$status; }
