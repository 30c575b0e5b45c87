"""The deployment files, checked offline with the tools an operator would use.

No Docker engine or cluster runs here, so: kustomize renders both overlays and
kubernetes-validate --strict accepts every object (unknown fields included); docker-compose
accepts the compose file; hadolint accepts the Dockerfile; every herald.yaml the compose file
and the manifests mount passes `herald check-config`. A missing tool fails the test.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from herald_qlik_sim.data import TASK_FOR_OUTCOME, default_site

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
SERVICES = (
    "ingest",
    "emailer",
    "chat-notifier",
    "incident-forwarder",
    "metrics-writer",
    "log-archiver",
    "console",
)
SUBSCRIBERS = ("emailer", "chat-notifier", "incident-forwarder", "metrics-writer")


def tool(name: str) -> str:
    """The tool from the project's virtual environment, else the PATH; missing is a failure."""
    if (VENV_BIN / name).exists():
        return str(VENV_BIN / name)
    found = shutil.which(name)
    assert found is not None, f"{name} is not installed (docs/deploy.md, 'Checking the files')"
    return found


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT, env=env
    )


def render(overlay: str) -> list[dict[str, Any]]:
    result = run(tool("kubectl"), "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def herald_pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"].removeprefix("herald-"): o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] == "StatefulSet" and o["metadata"]["name"].startswith("herald-")
    }


# --- Kubernetes -------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_overlay_renders_and_every_object_passes_strict_validation(
    overlay: str, tmp_path: Path
) -> None:
    objects = render(overlay)
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(yaml.safe_dump_all(objects))
    result = run(tool("kubernetes-validate"), "--strict", "-k", "1.30.0", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {o["kind"] for o in objects}
    assert {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert {o["metadata"].get("namespace") for o in objects} == {
        f"herald-{overlay}" if overlay == "dev" else "herald"
    }


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_service_runs_probed_limited_restricted_with_a_stable_client_id(
    overlay: str,
) -> None:
    pods = herald_pods(render(overlay))
    assert set(pods) == set(SERVICES)
    for service, pod in pods.items():
        [container] = pod["containers"]
        assert container["args"][:2] == ["run", service]
        for probe, path in (
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": "health"}, service
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"]
        assert not security["allowPrivilegeEscalation"]
        assert security["capabilities"]["drop"] == ["ALL"]
        assert pod["securityContext"]["runAsNonRoot"]
        assert pod["enableServiceLinks"] is False
        assert pod["terminationGracePeriodSeconds"] > 20  # delivery.shutdown_grace fits
        env = {item["name"]: item for item in container["env"]}
        assert (
            env["HERALD_BROKER__INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        )
        assert env["HERALD_BROKER__USERNAME"]["value"] == f"herald-{service}"


def test_prod_scales_the_shared_subscribers_and_keeps_ingest_source_addresses() -> None:
    objects = render("prod")
    scaled = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    assert scaled == {f"herald-{service}" for service in SUBSCRIBERS}
    [udp] = [
        o
        for o in objects
        if o["kind"] == "Service" and o["metadata"]["name"] == "herald-ingest-udp"
    ]
    assert udp["spec"]["type"] == "LoadBalancer"
    assert udp["spec"]["externalTrafficPolicy"] == "Local"
    assert udp["spec"]["ports"][0]["protocol"] == "UDP"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_shared_subscriptions_are_on_exactly_where_a_service_runs_replicas(overlay: str) -> None:
    objects = render(overlay)
    configured = yaml.safe_load((DEPLOY / "config" / "herald.k8s.yaml").read_text())
    scaled = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    for o in objects:
        if o["kind"] != "StatefulSet" or o["metadata"]["name"] == "mosquitto":
            continue
        [container] = o["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        shared = env.get(
            "HERALD_BROKER__SHARED_SUBSCRIPTIONS",
            str(configured["broker"]["shared_subscriptions"]).lower(),
        )
        replicated = o["spec"].get("replicas", 1) > 1 or o["metadata"]["name"] in scaled
        # One replica with a shared subscription loses what a broker restart drops, for nothing.
        assert shared == ("true" if replicated else "false"), o["metadata"]["name"]


def test_the_manifests_mount_the_checked_configuration() -> None:
    objects = render("prod")
    configs = {
        o["metadata"]["name"].rsplit("-", 1)[0]: o["data"]
        for o in objects
        if o["kind"] == "ConfigMap"
    }
    assert (
        configs["herald-config"]["herald.yaml"]
        == (DEPLOY / "config" / "herald.k8s.yaml").read_text()
    )
    mosquitto = configs["mosquitto-config"]
    assert mosquitto["mosquitto.conf"] == (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    assert mosquitto["acl"] == (DEPLOY / "mosquitto" / "acl").read_text()
    assert mosquitto["acl-consumers"] == (DEPLOY / "mosquitto" / "acl-consumers").read_text()


# --- compose, Dockerfile, Mosquitto ---------------------------------------------------------------


@pytest.mark.parametrize("profile", [None, "demo"])
def test_docker_compose_accepts_the_compose_file(profile: str | None) -> None:
    profiles = ["--profile", profile] if profile else []
    result = run(tool("docker-compose"), "-f", "docker-compose.yml", *profiles, "config", "-q")
    assert result.returncode == 0, result.stderr
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in SERVICES:
        definition = compose["services"][service]
        assert definition["build"]["args"]["SERVICE"] == service
        assert definition["healthcheck"]["test"]
        assert definition["restart"] == "unless-stopped"
        # Docker's default 10 s would SIGKILL a graceful stop (delivery.shutdown_grace is 20 s).
        assert definition["stop_grace_period"] == "30s"


def test_a_plain_compose_up_starts_every_server_the_configuration_sends_to() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    started = {name for name, service in compose["services"].items() if "profiles" not in service}
    configured = yaml.safe_load((DEPLOY / "config" / "herald.compose.yaml").read_text())
    influxdb = configured["metrics_writer"]["influxdb"]
    assert influxdb["enabled"] is True
    # Otherwise `docker compose up` has the metrics writer retrying forever against no one.
    assert urlsplit(influxdb["url"]).hostname in started


def test_the_compose_demo_sends_the_recovery_for_the_task_that_failed() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    [script] = compose["services"]["qlik-scheduler"]["command"]
    emits = [shlex.split(step.strip()) for step in script.split("&&") if "emit" in step]
    by_outcome = {words[3]: words for words in emits}
    succeeded = by_outcome["succeeded"]
    task = succeeded[succeeded.index("--task") + 1]
    # The failure goes to the sim's failing task; its success must be that task's, or the
    # "recovery" the demo promises is just another task's success.
    site = default_site()
    assert site.task(task) == site.task(TASK_FOR_OUTCOME["failed"])
    assert site.task(task) is not None
    assert "--task" not in by_outcome["failed"]


def test_hadolint_accepts_the_dockerfile() -> None:
    result = run(tool("hadolint"), str(DEPLOY / "docker" / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_broker_configuration_keeps_every_queued_message() -> None:
    settings = [
        line.split(None, 1)
        for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    values = dict(settings)
    assert values["persistence"] == "true"
    assert int(values["autosave_interval"]) <= 60
    assert int(values["max_queued_messages"]) >= 100_000  # the default 1000 drops QoS 1 silently
    assert [value for key, value in settings if key == "allow_anonymous"] == ["false"] * 3
    listeners = [value for key, value in settings if key == "listener"]
    assert listeners == ["1883", "8883", "8884"]


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["herald.compose.yaml", "herald.k8s.yaml"])
def test_the_mounted_configuration_passes_check_config(name: str) -> None:
    # What docs/deploy.md gives for CI: the secrets, certificates and keys are files that only
    # the containers have; the check wants their paths absolute and does not read them.
    env = {key: value for key, value in os.environ.items() if not key.startswith("HERALD_")}
    result = run(
        tool("herald"),
        "check-config",
        "--config",
        str(DEPLOY / "config" / name),
        "--secrets-not-mounted",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    for service in SERVICES:
        assert service in result.stdout  # every service's sections were validated


@pytest.mark.parametrize("name", ["herald.compose.yaml", "herald.k8s.yaml"])
def test_without_the_secrets_the_mounted_configuration_names_the_missing_files(name: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HERALD_")}
    path = DEPLOY / "config" / name
    result = run(tool("herald"), "check-config", "--config", str(path), env=env)
    assert result.returncode == 2
    assert f"herald: {path}: broker: Value error, password_file: cannot read /run/secrets/" in (
        result.stderr
    )
