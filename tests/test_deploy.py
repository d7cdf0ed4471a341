"""deploy/: the Kubernetes manifests validate against a pinned Kubernetes version's
schemas (kubernetes-validate, offline) and agree with the settings table; the
systemd units pass `systemd-analyze verify`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
SYSTEMD = ROOT / "deploy" / "systemd"
KUBERNETES_VERSION = "1.31.0"  # schemas shipped inside kubernetes-validate
HOST = "modeldock.example.com"
# Variables the manifests may set that are not ModelDock settings of the table:
# Flask's own, and the one the Celery batch work (issue 14) adds to the table.
NOT_IN_TABLE = {"FLASK_APP"}


def manifests() -> dict[str, list[dict]]:
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(KUBE.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def resources() -> list[dict]:
    return [doc for docs in manifests().values() for doc in docs]


def of_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in resources() if doc["kind"] == kind}


def containers() -> dict[str, dict]:
    found = {}
    for kind in ("Deployment", "Job"):
        for name, doc in of_kind(kind).items():
            for container in doc["spec"]["template"]["spec"]["containers"]:
                found[f"{name}/{container['name']}"] = container
    return found


def known_variables() -> set[str]:
    """The settings table (docs/configuration.md, which tests/test_config.py keeps
    equal to the app's settings) and what gunicorn.conf.py reads."""
    table = set(
        re.findall(
            r"^\| `([A-Z0-9_]+)` \|",
            (ROOT / "docs" / "configuration.md").read_text(),
            re.M,
        )
    )
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= table
    gunicorn = set(
        re.findall(
            r"""os\.environ(?:\.get\(|\[)["']([A-Z0-9_]+)["']""",
            (ROOT / "gunicorn.conf.py").read_text(),
        )
    )
    assert {"WEB_CONCURRENCY", "MODELDOCK_BIND", "PROMETHEUS_MULTIPROC_DIR"} <= gunicorn
    return table | gunicorn | NOT_IN_TABLE


def test_every_manifest_validates_against_kubernetes_schemas():
    import kubernetes_validate

    checked = []
    for filename, docs in manifests().items():
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(
                    f"{filename} {doc['kind']}/{doc['metadata']['name']}: "
                    f"{'.'.join(map(str, error.path))}: {error.message}"
                )
            checked.append(doc["kind"])
    assert {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
        "Job",
    } <= set(checked)
    # The HorizontalPodAutoscaler is autoscaling/v2 and scales the web Deployment.
    [hpa] = of_kind("HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] in of_kind("Deployment")


def test_kustomization_lists_every_manifest_but_the_migration_job():
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        name for name in manifests() if name != "migrate-job.yaml"
    )


def test_every_variable_the_manifests_set_is_a_known_setting():
    set_here: dict[str, set[str]] = {}
    for name, doc in of_kind("ConfigMap").items():
        set_here[f"ConfigMap {name}"] = set(doc["data"])
    for name, doc in of_kind("Secret").items():
        set_here[f"Secret {name}"] = set(doc.get("stringData", {})) | set(
            doc.get("data", {})
        )
    for name, container in containers().items():
        set_here[name] = {item["name"] for item in container.get("env", [])}
        for source in container.get("envFrom", []):  # each refers to one of ours
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in of_kind("ConfigMap"), name
            if "secretRef" in source:
                assert source["secretRef"]["name"] in of_kind("Secret"), name
    known = known_variables()
    unknown = {
        where: sorted(names - known)
        for where, names in set_here.items()
        if names - known
    }
    assert unknown == {}
    secret = set_here["Secret modeldock-secrets"]
    assert {
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "MODELDOCK_CELERY_BROKER_URL",
    } <= secret


def test_web_tier_probes_drain_and_commands():
    from app import create_app

    web = containers()["modeldock-web/web"]
    assert web["command"] == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The probes name the host the app accepts (MODELDOCK_TRUSTED_HOSTS); so does
    # the Ingress.
    config = of_kind("ConfigMap")["modeldock-settings"]["data"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        headers = {h["name"]: h["value"] for h in web[probe]["httpGet"]["httpHeaders"]}
        assert headers["Host"] == config["MODELDOCK_TRUSTED_HOSTS"] == HOST, probe
    for ingress in of_kind("Ingress").values():
        assert [rule["host"] for rule in ingress["spec"]["rules"]] == [HOST]
        assert ingress["spec"]["tls"][0]["secretName"] == "modeldock-tls"
    # Those routes exist.
    app = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x"})
    assert {"/readyz", "/healthz"} <= {rule.rule for rule in app.url_map.iter_rules()}
    # Drain: the grace period outlasts the preStop sleep and gunicorn's own.
    graceful = int(
        re.search(
            r"^graceful_timeout = (\d+)$", (ROOT / "gunicorn.conf.py").read_text(), re.M
        ).group(1)
    )
    pod = of_kind("Deployment")["modeldock-web"]["spec"]["template"]["spec"]
    sleep = web["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(sleep[1]) + graceful
    assert web["resources"]["requests"]["cpu"] and web["resources"]["limits"]["memory"]
    worker = containers()["modeldock-worker/worker"]
    assert worker["command"][:4] == ["celery", "-A", "app.batch.celery", "worker"]
    assert containers()["modeldock-migrate/migrate"]["command"] == [
        "flask",
        "db",
        "upgrade",
    ]


def test_prediction_ingress_retries_the_same_paths_as_the_nginx_site():
    template = (ROOT / "nginx" / "modeldock.conf.template").read_text()
    [site_regex] = re.findall(
        r"^ *location ~ \^(\S+) \{\n[^}]*non_idempotent;", template, re.M
    )
    ingresses = of_kind("Ingress")
    retried = ingresses["modeldock-predictions"]["metadata"]["annotations"]
    assert (
        "non_idempotent" in retried["nginx.ingress.kubernetes.io/proxy-next-upstream"]
    )
    assert (
        "non_idempotent"
        not in ingresses["modeldock"]["metadata"]["annotations"][
            "nginx.ingress.kubernetes.io/proxy-next-upstream"
        ]
    )
    [path] = ingresses["modeldock-predictions"]["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == site_regex


def _systemd_copies(folder: Path) -> list[Path]:
    """The units with /srv/modeldock pointed at this checkout, so that verify finds
    the programs: gunicorn and celery of this environment (a missing one fails)."""
    bin_dir = Path(sys.executable).parent
    copies = []
    for unit in sorted(SYSTEMD.glob("*.service")):
        text = unit.read_text().replace("/srv/modeldock/.venv/bin/", f"{bin_dir}/")
        text = text.replace("/srv/modeldock", str(ROOT))
        copy = folder / unit.name
        copy.write_text(text)
        copies.append(copy)
    return copies


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    # Skipped on a developer's machine without it, never in CI (make test installs
    # the systemd package).
    if analyze is None and not os.environ.get("CI"):
        pytest.skip("systemd-analyze is missing (`make test` installs it)")
    assert analyze, "systemd-analyze is missing (`make test` installs it)"
    units = _systemd_copies(tmp_path)
    assert [u.name for u in units] == [
        "modeldock-web.service",
        "modeldock-worker.service",
    ]
    result = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    ours = [
        line for line in output.splitlines() if any(unit.name in line for unit in units)
    ]
    assert result.returncode == 0 and ours == [], output
    for unit in units:
        text = unit.read_text()
        assert "Restart=on-failure" in text.splitlines()
        assert "EnvironmentFile=/etc/modeldock/env" in text
        assert re.search(r"^User=modeldock$", text, re.M)
        variables = set(re.findall(r"^Environment=([A-Z0-9_]+)=", text, re.M))
        assert variables <= known_variables()
    web = units[0].read_text()
    assert re.search(
        r"^ExecStart=\S+/gunicorn -c gunicorn\.conf\.py wsgi:app$", web, re.M
    )
    assert "ExecReload=/bin/kill -HUP $MAINPID" in web
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", web, re.M).group(1))
    assert stop > 30  # gunicorn's graceful_timeout
    assert re.search(
        r"^ExecStart=\S+/celery -A app\.batch\.celery worker ",
        units[1].read_text(),
        re.M,
    )
    # Hardened: systemd's own exposure score of the web unit stays "OK" or better.
    security = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(units[0])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert level and float(level.group(1)) <= 5.0, security.stdout[-2000:]
