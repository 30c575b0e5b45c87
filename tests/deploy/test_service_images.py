"""Each image's install, reproduced: one service and its own dependencies, and it starts.

The Dockerfile runs `uv sync --locked --no-dev --no-editable --package herald-<service>`; here
the same command fills a throwaway virtual environment per service (built once per session,
uv's cache makes it take about a second). The service then runs from it with the compose
file's herald.yaml against a Mosquitto running the production configuration (deploy/mosquitto) and
a password per service account, and answers /readyz 200; SIGTERM stops it with exit status 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from herald_testkit.mosquitto import Mosquitto, ShippedMosquitto
from herald_testkit.ports import free_port
from herald_testkit.tls import make_certificates

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
MODULES = {service: "herald_" + service.replace("-", "_") for service in SERVICES}
SECTIONS = {service: service.replace("-", "_") for service in SERVICES}
PASSWORD = "s3cret-for-tests"


@pytest.fixture(scope="session")
def service_venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    uv = shutil.which("uv")
    assert uv is not None, "uv is not installed"
    root = tmp_path_factory.mktemp("service-venvs")
    venvs = {}
    for service in SERVICES:
        venv = root / service
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("VIRTUAL_ENV", None)
        result = subprocess.run(
            [
                uv,
                "sync",
                "--quiet",
                "--locked",
                "--no-dev",
                "--no-editable",
                "--package",
                f"herald-{service}",
                # uv reuses a built wheel of a workspace member until its pyproject.toml
                # changes; a module added since would be missing from the install.
                "--reinstall-package",
                "herald-shared",
                "--reinstall-package",
                f"herald-{service}",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        venvs[service] = venv
    return venvs


@pytest.fixture(scope="module")
def acl_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """Mosquitto with the production configuration and one account per service (and the operator)."""
    workdir = tmp_path_factory.mktemp("acl-mosquitto")
    accounts = {f"herald-{service}": PASSWORD for service in SERVICES}
    certificates = make_certificates(workdir / "certs")
    with ShippedMosquitto(workdir, DEPLOY / "mosquitto", accounts, certificates) as broker:
        yield broker


@pytest.fixture(scope="module")
def qlik_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates as the QMC exports them (ingest loads them at start)."""
    folder = tmp_path_factory.mktemp("qlik-certs")
    subprocess.run(
        [str(VENV_BIN / "herald"), "qlik-sim", "certs", "--certs", str(folder)],
        check=True,
        capture_output=True,
    )
    return folder


def importable(venv: Path, module: str) -> bool:
    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)",
        ],
        capture_output=True,
        check=False,
        timeout=60,
    )
    return result.returncode == 0


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_install_holds_that_service_only(
    service: str, service_venvs: dict[str, Path]
) -> None:
    venv = service_venvs[service]
    assert importable(venv, MODULES[service])
    others = [MODULES[other] for other in SERVICES if other != service]
    for module in [*others, "herald_qlik_sim", "herald_testkit", "pytest", "amqtt"]:
        assert not importable(venv, module), f"{module} is installed in the {service} image"
    listed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from herald_shared.runtime import installed_service_names as n; print(*n())",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert listed.stdout.split() == [service]


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_starts_from_its_image_install_and_is_ready(
    service: str,
    service_venvs: dict[str, Path],
    acl_mosquitto: Mosquitto,
    qlik_certs: Path,
    tmp_path: Path,
) -> None:
    password = tmp_path / "mqtt-password"
    password.write_text(PASSWORD + "\n")
    health_port = free_port()
    section = SECTIONS[service]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HERALD_", "VIRTUAL_ENV"))
    }
    env.update(
        {
            # What the container gets from the compose file, with this machine's addresses.
            "HERALD_BROKER__HOST": acl_mosquitto.host,
            "HERALD_BROKER__PORT": str(acl_mosquitto.port),
            "HERALD_BROKER__USERNAME": f"herald-{service}",
            "HERALD_BROKER__PASSWORD_FILE": str(password),
            "HERALD_BROKER__INSTANCE": f"test-{uuid.uuid4().hex[:8]}",
            "HERALD_HEALTH__HOST": "127.0.0.1",
            "HERALD_HEALTH__PORT": str(health_port),
            f"HERALD_{section.upper()}__STATE_DIR": str(tmp_path / "state"),
        }
    )
    if service == "ingest":
        env.update(
            {
                "HERALD_INGEST__UDP__HOST": "127.0.0.1",
                "HERALD_INGEST__UDP__PORT": "0",
                "HERALD_QLIK__QRS__CLIENT_CERT": str(qlik_certs / "client.pem"),
                "HERALD_QLIK__QRS__CLIENT_KEY": str(qlik_certs / "client_key.pem"),
                "HERALD_QLIK__QRS__CA_CERT": str(qlik_certs / "root.pem"),
            }
        )
    if service == "log-archiver":
        env["HERALD_LOG_ARCHIVER__DIRECTORY"] = str(tmp_path / "script-logs")
    if service == "console":
        # Its account's hash is a compose secret; here an account made for the test.
        account_hash = tmp_path / "console-admin"
        account_hash.write_text(bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode())
        env["HERALD_CONSOLE__LISTEN"] = f"127.0.0.1:{free_port()}"
        env["HERALD_CONSOLE__USERS__ADMIN__PASSWORD_HASH_FILE"] = str(account_hash)
    log = tmp_path / "service.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(service_venvs[service] / "bin" / "herald"),
                "run",
                service,
                "--config",
                str(DEPLOY / "config" / "herald.compose.yaml"),
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and process.poll() is None:
            status = readyz(health_port)
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, f"/readyz answered {status}; log:\n{log.read_text()}"
        process.send_signal(signal.SIGTERM)  # what `docker stop` and the kubelet send
        assert process.wait(timeout=40) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "not authorized" not in log.read_text().lower()
