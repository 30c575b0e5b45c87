"""Configuration mistakes stop the service before it runs, with one clear line.

Each broken file below is given to the real command, as a separate process, three ways:
`herald check-config`, `herald run <service>` and `herald up`. All three must exit 2 with the
same single line, naming the file, the key and the value, without a traceback and before
anything is served (the service's state folder is never created).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from herald_testkit.mosquitto import Mosquitto
from herald_testkit.ports import free_port
from herald_testkit.tls import make_certificates

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Passw0rd-for-tests"


def herald(cwd: Path, *arguments: str) -> tuple[int, str, list[str]]:
    """The real `herald` command, started from ``cwd``: status, stdout, stderr lines."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HERALD_")}
    done = subprocess.run(
        [sys.executable, "-m", "herald_shared.cli", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr.splitlines()


def base(tmp_path: Path) -> str:
    """A broker nobody listens on (so nothing waits for it) and a health port of any number."""
    return (
        f"broker: {{host: 127.0.0.1, port: {free_port()}, instance: preflight}}\n"
        "health: {host: 127.0.0.1, port: 0}\n"
    )


def archiver(tmp_path: Path) -> str:
    return f"log_archiver: {{directory: {tmp_path / 'logs'}, state_dir: {tmp_path / 'state'}}}\n"


def ingest(tmp_path: Path, qrs: str = "url: https://127.0.0.1:4242", qlik: str = "") -> str:
    return (
        f"qlik:\n  qrs: {{{qrs}}}\n{qlik}"
        f"ingest: {{state_dir: {tmp_path / 'state'}, udp: {{host: 127.0.0.1, port: 0}}}}\n"
    )


def emailer(tmp_path: Path, extra: str = "") -> str:
    return f"emailer:\n  state_dir: {tmp_path / 'state'}\n{extra}"


@dataclass
class Broken:
    service: str
    config: Callable[[Path], str]  # the file's text after base()
    line: Callable[[Path, Path], str]  # (tmp_path, config file) -> the one line expected


def _not_pem(tmp_path: Path) -> str:
    (tmp_path / "ca.pem").write_text("this is not a certificate\n")
    return (
        f"broker: {{host: 127.0.0.1, port: {free_port()}, instance: preflight, "
        f"tls: {{enabled: true, ca_file: {tmp_path / 'ca.pem'}}}}}\n"
        "health: {host: 127.0.0.1, port: 0}\n" + archiver(tmp_path)
    )


def _corrupt_state(tmp_path: Path) -> str:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "log-archiver.sqlite3").write_bytes(b"not a database\n" * 400)
    return base(tmp_path) + archiver(tmp_path)


def _templates(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder


SPARE = "<p>\n{% if x %}\n"  # an unclosed block
SLACK = 'text: "{{ no_such_field.name }}"\n'

BROKEN = {
    "a wrong broker CA path": Broken(
        "log-archiver",
        lambda tmp: (
            f"broker: {{host: 127.0.0.1, port: {free_port()}, instance: preflight, "
            "tls: {enabled: true, ca_file: /nope/ca.pem}}\n"
            "health: {host: 127.0.0.1, port: 0}\n" + archiver(tmp)
        ),
        lambda tmp, path: f"herald: {path}: broker.tls.ca_file: /nope/ca.pem does not exist",
    ),
    "a broker CA that is not a certificate": Broken(
        "log-archiver",
        _not_pem,
        lambda tmp, path: (
            f"herald: {path}: broker.tls.ca_file: {tmp / 'ca.pem'} is not a PEM certificate "
            "(no certificate or crl found)"
        ),
    ),
    "a missing QRS client certificate": Broken(
        "ingest",
        lambda tmp: (
            base(tmp) + ingest(tmp, "url: 'https://127.0.0.1:4242', client_cert: /nope/client.pem")
        ),
        lambda tmp, path: f"herald: {path}: qlik.qrs.client_cert: /nope/client.pem does not exist",
    ),
    "a misspelt time zone": Broken(
        "ingest",
        lambda tmp: base(tmp) + ingest(tmp, qlik="  timezone: Europe/Stokholm\n"),
        lambda tmp, path: (
            f"herald: {path}: qlik.timezone: 'Europe/Stokholm' is not a time zone "
            "(an IANA name such as Europe/Stockholm)"
        ),
    ),
    "a relative QMC link": Broken(
        "ingest",
        lambda tmp: base(tmp) + ingest(tmp, qlik="  qmc_url: sense.example.com/qmc\n"),
        lambda tmp, path: (
            f"herald: {path}: qlik.qmc_url: 'sense.example.com/qmc' is not an absolute "
            "http:// or https:// URL"
        ),
    ),
    "ingest without the QRS's address": Broken(
        "ingest",
        lambda tmp: base(tmp) + ingest(tmp, "verify: true"),
        lambda tmp, path: (
            f"herald: {path}: qlik.qrs.url: not set: ingest asks the QRS about every task "
            "(usually https://<central node>:4242)"
        ),
    ),
    "a corrupt state database": Broken(
        "log-archiver",
        _corrupt_state,
        lambda tmp, path: (
            f"herald: {path}: log_archiver.state_dir: {tmp / 'state' / 'log-archiver.sqlite3'} "
            "is not a usable state database (file is not a database); move it aside to start "
            "afresh (what it held is lost)"
        ),
    ),
    "a missing e-mail template folder": Broken(
        "emailer",
        lambda tmp: base(tmp) + emailer(tmp, "  template_dir: /nope/templates\n"),
        lambda tmp, path: f"herald: {path}: emailer.template_dir: /nope/templates does not exist",
    ),
    "a broken e-mail template that no outcome uses yet": Broken(
        "emailer",
        lambda tmp: (
            base(tmp) + emailer(tmp, f"  template_dir: {_templates(tmp, 'spare.html', SPARE)}\n")
        ),
        lambda tmp, path: (
            f"herald: {tmp / 'templates' / 'spare.html'}:2: emailer.template_dir: template "
            "error: Unexpected end of template. Jinja was looking for the following tags: "
            "'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if'."
        ),
    ),
    "a broken e-mail subject": Broken(
        "emailer",
        lambda tmp: base(tmp) + emailer(tmp, "  failed: {subject: 'Failed: {{ task_name '}\n"),
        lambda tmp, path: (
            f"herald: {path}: emailer.failed.subject: line 1: template error: unexpected "
            "end of template, expected 'end of print statement'."
        ),
    ),
    "a recipient that is not an address": Broken(
        "emailer",
        lambda tmp: base(tmp) + emailer(tmp, "  failed: {recipients: [not-an-address]}\n"),
        lambda tmp, path: (
            f"herald: {path}: emailer.failed.recipients[0]: 'not-an-address' is not an e-mail "
            "address: An email address must have an @-sign."
        ),
    ),
    "a Slack template that does not render": Broken(
        "chat-notifier",
        lambda tmp: (
            base(tmp) + f"chat_notifier:\n  state_dir: {tmp / 'state'}\n  slack:\n"
            "    - name: ops\n      webhook_url: https://hooks.example.com/services/T/B/x\n"
            f"      template_dir: {_templates(tmp, 'failed.yaml', SLACK)}\n"
        ),
        lambda tmp, path: (
            f"herald: {tmp / 'templates' / 'failed.yaml'}: chat_notifier.slack[0].template_dir: "
            "the failed template does not render on the sample event (UndefinedError: 'no_such_field' is undefined)"
        ),
    ),
    "a missing webhook CA file": Broken(
        "incident-forwarder",
        lambda tmp: (
            base(tmp) + f"incident_forwarder:\n  state_dir: {tmp / 'state'}\n  webhooks:\n"
            "    - {name: ops, url: 'https://hooks.example.com/x', ca_file: /nope/ca.pem}\n"
        ),
        lambda tmp, path: (
            f"herald: {path}: incident_forwarder.webhooks[0].ca_file: /nope/ca.pem does not exist"
        ),
    ),
    "a missing InfluxDB CA file": Broken(
        "metrics-writer",
        lambda tmp: (
            base(tmp) + f"metrics_writer:\n  state_dir: {tmp / 'state'}\n  influxdb:\n"
            "    {enabled: true, url: 'https://influxdb:8086', ca_file: /nope/influx-ca.pem}\n"
        ),
        lambda tmp, path: (
            f"herald: {path}: metrics_writer.influxdb.ca_file: /nope/influx-ca.pem does not exist"
        ),
    ),
}


@pytest.mark.parametrize("command", ["check-config", "run", "up"])
@pytest.mark.parametrize("case", list(BROKEN))
def test_a_configuration_that_cannot_work_stops_every_command_with_one_line(
    tmp_path: Path, case: str, command: str
) -> None:
    broken = BROKEN[case]
    path = tmp_path / "herald.yaml"
    path.write_text(broken.config(tmp_path))
    arguments = ["run", broken.service] if command == "run" else [command]
    code, out, err = herald(tmp_path, *arguments, "--config", str(path))
    assert err == [broken.line(tmp_path, path)]
    assert code == 2
    assert out == ""
    if case != "a corrupt state database":
        assert not (tmp_path / "state").exists()  # nothing started, nothing created


@pytest.fixture
def busy_tcp_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture
def busy_udp_port() -> Iterator[int]:
    """What Butler does to ingest: it listens on the scheduler's UDP port already."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@pytest.mark.parametrize("command", ["check-config", "run", "up"])
def test_a_busy_health_port_is_named(tmp_path: Path, busy_tcp_port: int, command: str) -> None:
    path = tmp_path / "herald.yaml"
    path.write_text(
        base(tmp_path).replace("port: 0", f"port: {busy_tcp_port}") + archiver(tmp_path)
    )
    arguments = ["run", "log-archiver"] if command == "run" else [command]
    code, _, err = herald(tmp_path, *arguments, "--config", str(path))
    assert err == [
        f"herald: {path}: health.port: cannot listen on TCP 127.0.0.1:{busy_tcp_port}: "
        "Address already in use (does another program, or Herald already running, hold it?)"
    ]
    assert code == 2


@pytest.mark.parametrize("command", ["check-config", "run", "up"])
def test_a_busy_udp_port_is_named(tmp_path: Path, busy_udp_port: int, command: str) -> None:
    path = tmp_path / "herald.yaml"
    path.write_text(base(tmp_path) + ingest(tmp_path).replace("port: 0", f"port: {busy_udp_port}"))
    arguments = ["run", "ingest"] if command == "run" else [command]
    code, _, err = herald(tmp_path, *arguments, "--config", str(path))
    assert err == [
        f"herald: {path}: ingest.udp.port: cannot listen on UDP 127.0.0.1:{busy_udp_port}: "
        "Address already in use (does another program, or Herald already running, hold it?)"
    ]
    assert code == 2


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "herald-archiver", PASSWORD],
        check=True,
        capture_output=True,
    )
    extra = f"password_file {passwords}\nallow_anonymous false"
    with Mosquitto(tmp_path / "mosquitto", extra=extra) as broker:
        yield broker


@pytest.mark.parametrize("command", ["check-config", "run", "up"])
def test_a_wrong_broker_password_is_said_to_be_refused_naming_the_account(
    tmp_path: Path, password_broker: Mosquitto, command: str
) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("not-the-password\n")
    path = tmp_path / "herald.yaml"
    path.write_text(
        f"broker: {{host: 127.0.0.1, port: {password_broker.port}, instance: preflight, "
        f"username: herald-archiver, password_file: {secret}}}\n"
        "health: {host: 127.0.0.1, port: 0}\n" + archiver(tmp_path)
    )
    arguments = ["run", "log-archiver"] if command == "run" else [command]
    code, _, err = herald(tmp_path, *arguments, "--config", str(path))
    assert err == [
        f"herald: {path}: broker.password_file: the broker at 127.0.0.1:{password_broker.port} "
        "refuses the account 'herald-archiver' (Not authorized): is the password right, and "
        "does the broker know the account?"
    ]
    assert code == 2
    assert not (tmp_path / "state").exists()


# --- what check-config says about a file as a whole -----------------------------------------


def test_an_empty_file_configures_no_service(tmp_path: Path) -> None:
    path = tmp_path / "herald.yaml"
    path.write_text("")
    code, out, err = herald(tmp_path, "check-config", "--config", str(path))
    assert code == 2
    assert out == ""
    [line] = err
    assert line.startswith(f"herald: {path} configures none of the installed services (")


# --- herald run needs its section ---------------------------------------------------------


def test_run_refuses_a_service_whose_section_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "herald.yaml"
    path.write_text(base(tmp_path))
    code, _, err = herald(tmp_path, "run", "emailer", "--config", str(path))
    assert err == [
        f"herald: {path} has no emailer section: `herald run emailer` needs one "
        "(herald.example.yaml shows every key)"
    ]
    assert code == 2
    assert not (tmp_path / "var").exists()  # the default state_dir, ./var/herald, is not made


def test_run_refuses_a_service_that_is_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "herald.yaml"
    path.write_text(base(tmp_path) + emailer(tmp_path, "  enabled: false\n"))
    code, _, err = herald(tmp_path, "run", "emailer", "--config", str(path))
    assert err == [
        f"herald: {path}: emailer.enabled is false: emailer is turned off in this file; "
        "set it to true to run it"
    ]
    assert code == 2
    assert not (tmp_path / "state").exists()


# --- checking a file away from where it runs ----------------------------------------------


def test_secrets_not_mounted_wants_absolute_paths_without_reading_them(tmp_path: Path) -> None:
    path = tmp_path / "herald.yaml"
    path.write_text(
        "broker: {host: mqtt, password_file: /run/secrets/mqtt-password}\n"
        "chat_notifier:\n  slack: [{name: ops, webhook_url_file: /run/secrets/slack-ops}]\n"
        + ingest(
            tmp_path,
            "url: 'https://sense:4242', client_cert: /etc/herald/qlik/client.pem, "
            "client_key: qlik/client_key.pem",
        )
    )
    code, out, err = herald(
        tmp_path, "check-config", "--config", str(path), "--secrets-not-mounted"
    )
    assert err == [
        f"herald: {path}: qlik.qrs.client_key: qlik/client_key.pem must be an absolute path "
        "(it is mounted where Herald runs)"
    ]
    assert code == 2
    path.write_text(path.read_text().replace("client_key: qlik/", "client_key: /etc/herald/qlik/"))
    code, out, err = herald(
        tmp_path, "check-config", "--config", str(path), "--secrets-not-mounted"
    )
    assert err == []
    assert code == 0
    assert out.startswith(f"{path}: valid for chat-notifier, ingest (not configured: ")


def test_what_works_but_should_not_stay_so_is_a_warning_and_never_shows_a_token(
    tmp_path: Path,
) -> None:
    certs = make_certificates(tmp_path / "certs")
    token = "tok-3c1d9e2f7a"
    path = tmp_path / "herald.yaml"
    path.write_text(
        base(tmp_path)
        + ingest(
            tmp_path,
            qrs=f"url: 'https://127.0.0.1:4242', client_cert: {certs.cert},"
            f" client_key: {certs.key}, ca_cert: {certs.ca}, verify: false",
        )
        + f"incident_forwarder:\n  state_dir: {tmp_path / 'state'}\n  webhooks:\n"
        f"    - {{name: ops, url: 'http://automation.example.com/qlik?code={token}'}}\n"
    )
    status, out, err = herald(tmp_path, "check-config", "--config", str(path))
    assert (status, err) == (0, [])
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert sorted(warnings) == [
        f"warning: {path}: incident_forwarder.webhooks[0].url: http:// sends alerts unencrypted;"
        " use https:// if the server has it",
        f"warning: {path}: qlik.qrs.verify: false: the QRS's certificate is not checked, so anyone"
        " on the way can pose as it; give its CA certificate instead and set it to true",
    ]
    assert token not in out
