"""herald.yaml as an operator meets it: the shipped examples, errors, overrides, secrets, logs."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import traceback
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from herald_chat_notifier.settings import ChatNotifierSettings
from herald_emailer.settings import EmailerSettings
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_log_archiver.settings import LogArchiverSettings
from herald_qlik_sim.certs import ensure_certs
from herald_shared import cli, config, logs
from herald_shared.config import ConfigError, reveal
from herald_shared.matcher import When
from herald_shared.outcomes import OUTCOMES
from herald_shared.runtime import ProcessSettings, configure, installed_services
from herald_shared.settings import (
    BrokerSettings,
    HealthSettings,
    LoggingSettings,
)
from herald_testkit.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "config" / "herald.example.yaml"
MINIMAL = ROOT / "deploy" / "config" / "herald.minimal.yaml"
DEMO = ROOT / "deploy" / "config" / "herald.demo.yaml"

SECRET = "hunter2-Zq8vR3xK"


@pytest.fixture(autouse=True)
def _no_herald_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's or CI's own HERALD_* variables must not change what these tests see."""
    for variable in list(os.environ):
        if variable.startswith("HERALD_"):
            monkeypatch.delenv(variable)


def _write(tmp_path: Path, text: str, name: str = "herald.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _configure(path: Path, environ: dict[str, str] | None = None) -> ProcessSettings:
    document = config.load(path, environ or {})
    return configure(document, list(installed_services().values()))


def _problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _configure(path, environ)
    return caught.value.problems


def _settings(process: ProcessSettings, model: type[LogArchiverSettings]) -> LogArchiverSettings:
    found = [settings for _, settings in process.services if isinstance(settings, model)]
    assert len(found) == 1
    return found[0]


def _check_config(
    path: Path,
    environ: dict[str, str] | None = None,
    arguments: list[str] | None = None,
    *,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """The real `herald check-config`, as a separate process started from the checkout."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HERALD_")}
    env.update(environ or {})
    if not path.is_absolute() and cwd != ROOT:
        path = ROOT / path
    return subprocess.run(
        [
            *(sys.executable, "-m", "herald_shared.cli", "check-config", "--config", str(path)),
            *(arguments or []),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _cli_check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """`herald check-config` in this process: its exit status and its stderr lines."""
    status = cli.main(["check-config", "--config", str(path)])
    return status, capsys.readouterr().err.splitlines()


# --- the shipped files -----------------------------------------------------------------------


@pytest.mark.parametrize("path", [EXAMPLE, MINIMAL, DEMO], ids=["example", "minimal", "demo"])
def test_the_shipped_files_validate_for_every_installed_service(path: Path) -> None:
    process = _configure(path)
    assert [spec.name for spec, _ in process.services] == list(installed_services())
    assert "log-archiver" in installed_services()
    # The example keeps its secrets commented out, so it loads where no secret file exists.
    assert process.broker.password is None
    assert process.secrets() == []


def test_the_minimal_file_sets_what_it_says_and_defaults_the_rest() -> None:
    process = _configure(MINIMAL)
    archiver = _settings(process, LogArchiverSettings)
    assert process.broker.host == "mqtt.example.com"
    assert process.broker.port == 1883
    assert archiver.directory == Path("/var/lib/herald/script-logs")
    assert archiver.retention_days == 90
    assert archiver.when == When()


def test_the_example_shows_every_matcher_criterion_in_use() -> None:
    archiver = _settings(_configure(EXAMPLE), LogArchiverSettings)
    unset = [name for name in When.model_fields if getattr(archiver.when, name) is None]
    assert unset == []
    assert archiver.when.task_custom_properties == {"Butler_FailedAlertEnableEmail": ["Yes"]}


def _fields(
    model: type[BaseModel], seen: set[type[BaseModel]] | None = None
) -> Iterator[tuple[str, list[object]]]:
    """Every field of a section and of the sections inside it: its name and the types (and
    literal values) its annotation is made of."""
    seen = set() if seen is None else seen
    seen.add(model)
    for name, info in model.model_fields.items():
        parts: list[object] = [info.annotation]
        for part in parts:  # grows as it goes: every argument of every part
            parts.extend(typing.get_args(part))
        yield name, parts
        for part in parts:
            if isinstance(part, type) and issubclass(part, BaseModel) and part not in seen:
                yield from _fields(part, seen)


def _documented_keys(model: type[BaseModel]) -> set[str]:
    """Every key a section accepts, nested sections included, plus each secret's ``_file``."""
    keys: set[str] = set()
    for name, parts in _fields(model):
        keys.add(name)
        if SecretStr in parts:
            keys.add(f"{name}_file")
    return keys


SECTION_MODELS = [
    BrokerSettings,
    HealthSettings,
    LoggingSettings,
    *(spec.settings for spec in installed_services().values()),
]


@pytest.mark.parametrize("model", SECTION_MODELS, ids=lambda model: model.__name__)
def test_the_example_documents_every_key(model: type[BaseModel]) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = sorted(
        key
        for key in _documented_keys(model)
        if not re.search(rf"^\s*(#\s*)?{key}:", text, re.MULTILINE)
    )
    assert missing == []


@pytest.mark.parametrize("path", [EXAMPLE, MINIMAL, DEMO], ids=["example", "minimal", "demo"])
def test_herald_check_config_accepts_the_shipped_files(path: Path, tmp_path: Path) -> None:
    arguments: list[str] = []
    cwd = ROOT
    # The file's fixed ports may be held by another test run on this machine.
    ports = {"HERALD_HEALTH__PORT": "0"}
    if path == EXAMPLE:
        # The example names the certificates of a production host, which this one is not.
        arguments = ["--secrets-not-mounted"]
    if path == DEMO:
        # `herald demo` makes the stand-in's certificates before it starts Herald; do the same
        # in a folder of the test's own (the file's paths are relative to where it runs).
        ensure_certs(tmp_path / "var" / "demo" / "qlik-certs")
        cwd = tmp_path
        ports["HERALD_INGEST__UDP__PORT"] = "0"
        ports["HERALD_BROKER__PORT"] = str(free_port())  # the embedded broker's, 1884 in the file
        ports["HERALD_CONSOLE__LISTEN"] = "127.0.0.1:0"  # the console's, 9180 in the file
    result = _check_config(path.relative_to(ROOT), ports, arguments, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert "valid for" in result.stdout
    assert "log-archiver" in result.stdout
    assert result.stderr == ""


def test_check_config_says_which_services_the_minimal_file_configures() -> None:
    result = _check_config(MINIMAL.relative_to(ROOT), {"HERALD_HEALTH__PORT": "0"})
    assert result.returncode == 0, result.stderr
    others = ", ".join(name for name in installed_services() if name != "log-archiver")
    assert result.stdout == (
        f"deploy/config/herald.minimal.yaml: valid for log-archiver (not configured: {others})\n"
    )


# --- errors name the file and the key --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("broker: {port: abc}\n", "broker.port"),
        ("log_archiver: {retention_days: -1}\n", "log_archiver.retention_days"),
    ],
)
def test_a_bad_value_exits_2_naming_the_file_and_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    path = _write(tmp_path, text)
    result = _check_config(path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert [
        line for line in result.stderr.splitlines() if line.startswith(f"herald: {path}: {key}: ")
    ]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("log_archiver:\n  directroy: /srv/logs\n", "log_archiver.directroy"),
        ("broker:\n  tls:\n    verfy: false\n", "broker.tls.verfy"),
        ("log_archiver:\n  delivery:\n    retries: 3\n", "log_archiver.delivery.retries"),
    ],
)
def test_an_unknown_key_is_reported_with_the_file_and_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = _write(tmp_path, text)
    status, lines = _cli_check_config(path, capsys)
    assert status == 2
    assert lines == [f"herald: {path}: {key}: Extra inputs are not permitted"]


def test_an_unknown_section_is_reported_with_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "log_archivr:\n  directory: /srv/logs\n")
    status, lines = _cli_check_config(path, capsys)
    assert status == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"herald: {path}: log_archivr: unknown section")
    assert "log_archiver" in lines[0]  # the known sections are listed, so the typo is obvious


def test_invalid_yaml_is_reported_with_file_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "broker:\n  port: 1883\n   host: mqtt\n")
    status, lines = _cli_check_config(path, capsys)
    assert status == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"herald: {path}:3:8: not valid YAML: ")


def test_a_file_that_is_not_a_mapping_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "- broker\n- log_archiver\n")
    status, lines = _cli_check_config(path, capsys)
    assert status == 2
    assert lines == [f"herald: {path}: the configuration must be a mapping of sections"]


def test_a_missing_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nowhere.yaml"
    status, lines = _cli_check_config(path, capsys)
    assert status == 2
    assert lines == [f"herald: {path}: cannot read the configuration: No such file or directory"]


def test_every_problem_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        "broker:\n"
        "  port: abc\n"
        "health:\n"
        "  stall_after: fast\n"
        "logging:\n"
        "  level: LOUD\n"
        "log_archiver:\n"
        "  retention_days: -1\n"
        "  colour: red\n"
        "  delivery:\n"
        "    concurrency: 0\n",
    )
    status, lines = _cli_check_config(path, capsys)
    assert status == 2
    keys = sorted(line.removeprefix(f"herald: {path}: ").split(": ")[0] for line in lines)
    assert keys == [
        "broker.port",
        "health.stall_after",
        "log_archiver.colour",
        "log_archiver.delivery.concurrency",
        "log_archiver.retention_days",
        "logging.level",
    ]


# --- environment overrides -------------------------------------------------------------------


def test_environment_variables_override_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "broker:\n  port: 1883\nlog_archiver:\n  directory: /srv/logs\n")
    process = _configure(
        path,
        {
            "HERALD_BROKER__PORT": "1884",
            "HERALD_BROKER__TLS__ENABLED": "true",
            "HERALD_LOG_ARCHIVER__WHEN__KINDS": "[task_failed, task_aborted]",
            "HERALD_HEALTH__STALL_AFTER": "2m",
        },
    )
    assert process.broker.port == 1884
    assert process.broker.tls.enabled is True
    assert process.health.stall_after == 120.0
    archiver = _settings(process, LogArchiverSettings)
    assert archiver.when.kinds == ["task_failed", "task_aborted"]
    assert archiver.directory == Path("/srv/logs")  # keys not overridden keep the file's value


def test_the_protocol_can_be_set_as_a_plain_number(tmp_path: Path) -> None:
    from_file = _configure(_write(tmp_path, "broker:\n  protocol: 5\n"))
    assert from_file.broker.protocol == "5"
    path = _write(tmp_path, "broker:\n  protocol: '3.1.1'\n", "other.yaml")
    from_environment = _configure(path, {"HERALD_BROKER__PROTOCOL": "5"})
    assert from_environment.broker.protocol == "5"


def test_a_bad_value_from_the_environment_names_the_variable_not_the_file(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "broker:\n  port: 1883\n")
    result = _check_config(path, {"HERALD_BROKER__PORT": "abc"})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("herald: HERALD_BROKER__PORT (environment): broker.port: ")
    assert str(path) not in lines[0]


def test_a_misspelt_section_in_a_variable_names_the_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, "broker:\n  port: 1883\n")
    problems = _problems(path, {"HERALD_BROKR__PORT": "1884"})
    assert len(problems) == 1
    assert problems[0].startswith("HERALD_BROKR__PORT (environment): brokr: unknown section")


def test_variables_without_a_double_underscore_are_ignored(tmp_path: Path) -> None:
    path = _write(tmp_path, "broker:\n  host: mqtt.internal\n  port: 1883\n")
    # What Kubernetes injects for a Service named herald-broker, and Herald's own HERALD_CONFIG.
    process = _configure(
        path,
        {
            "HERALD_BROKER_PORT": "tcp://10.0.0.1:1883",
            "HERALD_BROKER_SERVICE_HOST": "10.0.0.1",
            "HERALD_BROKER_SERVICE_PORT": "1883",
            "HERALD_BROKER_PORT_1883_TCP_ADDR": "10.0.0.1",
            "HERALD_CONFIG": str(path),
        },
    )
    assert process.broker.host == "mqtt.internal"
    assert process.broker.port == 1883


def test_check_config_ignores_kubernetes_service_link_variables(tmp_path: Path) -> None:
    path = _write(
        tmp_path, f"broker:\n  port: 1883\nlog_archiver:\n  directory: {tmp_path / 'logs'}\n"
    )
    result = _check_config(path, {"HERALD_BROKER_PORT": "tcp://10.0.0.1:1883"})
    assert result.returncode == 0, result.stderr


# --- secrets from files ----------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""], ids=["lf", "crlf", "none"])
def test_a_password_file_gives_the_password_without_the_trailing_newline(
    tmp_path: Path, ending: str
) -> None:
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_bytes(f"{SECRET}{ending}".encode())
    path = _write(tmp_path, f"broker:\n  username: herald\n  password_file: {secret_file}\n")
    process = _configure(path)
    assert reveal(process.broker.password) == SECRET
    assert process.secrets() == [SECRET]


def test_a_password_file_can_be_named_by_an_environment_variable(tmp_path: Path) -> None:
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_text(f"{SECRET}\n", encoding="utf-8")
    path = _write(tmp_path, "broker:\n  username: herald\n")
    process = _configure(path, {"HERALD_BROKER__PASSWORD_FILE": str(secret_file)})
    assert reveal(process.broker.password) == SECRET


def test_password_and_password_file_together_are_an_error(tmp_path: Path) -> None:
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_text(f"{SECRET}\n", encoding="utf-8")
    path = _write(tmp_path, f"broker:\n  password: {SECRET}\n  password_file: {secret_file}\n")
    problems = _problems(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: broker: ")
    assert "set either password or password_file, not both" in problems[0]
    assert SECRET not in problems[0]


def test_a_missing_password_file_is_an_error_naming_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "secrets" / "mqtt-password"
    path = _write(tmp_path, f"broker:\n  password_file: {missing}\n")
    problems = _problems(path)
    assert problems == [
        f"{path}: broker: Value error, password_file: cannot read {missing}: "
        "No such file or directory"
    ]


def test_an_unreadable_password_file_never_shows_its_content(tmp_path: Path) -> None:
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_bytes(SECRET.encode() + b"\xff\xfe" + SECRET.encode())
    path = _write(tmp_path, f"broker:\n  password_file: {secret_file}\n")
    problems = _problems(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: broker: ")
    assert "password_file" in problems[0]
    assert SECRET not in problems[0]


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("45", 45.0),
        ("0.5", 0.5),
        ("'90'", 90.0),
        ("0", 0.0),
    ],
)
def test_durations_are_read_as_seconds(tmp_path: Path, written: str, seconds: float) -> None:
    path = _write(tmp_path, f"health:\n  stall_after: {written}\n")
    assert _configure(path).health.stall_after == pytest.approx(seconds)


@pytest.mark.parametrize("written", ["fast", "5 minutes", "1w", "-5", "-5s", "true", ".inf"])
def test_a_bad_duration_is_an_error_naming_the_key(tmp_path: Path, written: str) -> None:
    path = _write(tmp_path, f"health:\n  stall_after: {written}\n")
    problems = _problems(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: health.stall_after: ")
    assert "expected a duration such as 30, 30s, 5m, 2h or 1d" in problems[0]


def test_durations_in_the_delivery_block(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "log_archiver:\n  delivery:\n    initial_backoff: 250ms\n    deadline: 1d\n",
    )
    delivery = _settings(_configure(path), LogArchiverSettings).delivery
    assert delivery.initial_backoff == pytest.approx(0.25)
    assert delivery.deadline == 86400.0


# --- secrets never leak ----------------------------------------------------------------------


def test_broker_settings_never_show_the_password() -> None:
    settings = BrokerSettings.model_validate(
        {"host": "mqtt", "username": "herald", "password": SECRET, "instance": "test"}
    )
    assert reveal(settings.password) == SECRET
    shown = [
        repr(settings),
        str(settings),
        f"{settings}",
        repr(settings.password),
        str(settings.password),
        settings.model_dump_json(),
        repr(settings.model_dump()),
    ]
    for text in shown:
        assert SECRET not in text


def test_the_process_settings_never_show_the_password(tmp_path: Path) -> None:
    path = _write(tmp_path, f"broker:\n  password: {SECRET}\n")
    process = _configure(path)
    assert process.secrets() == [SECRET]
    assert SECRET not in repr(process)


@pytest.mark.parametrize(
    "broker",
    [
        f"{{password: [{SECRET}]}}",  # a list where a string belongs
        f"{{password: {{value: {SECRET}}}}}",  # a mapping where a string belongs
        f"{{passwrd: {SECRET}}}",  # a misspelt key
        f"{{password: {SECRET}, port: {SECRET}}}",  # the secret pasted into another key
        f"{{password: {SECRET}, password_file: {SECRET}}}",  # both
        f"{{password_file: /nonexistent/{SECRET[:3]}, username: [{SECRET}]}}",
    ],
)
def test_a_config_error_never_contains_the_secret(tmp_path: Path, broker: str) -> None:
    path = _write(tmp_path, f"broker: {broker}\n")
    with pytest.raises(ConfigError) as caught:
        _configure(path)
    error = caught.value
    assert error.problems
    assert all(problem.startswith(f"{path}: broker") for problem in error.problems)
    everything = "".join(
        [str(error), repr(error), *traceback.format_exception(error), *error.problems]
    )
    assert SECRET not in everything


def test_a_secret_with_a_bad_type_set_by_the_environment_is_not_shown(tmp_path: Path) -> None:
    path = _write(tmp_path, "broker: {}\n")
    problems = _problems(path, {"HERALD_BROKER__PASSWORD": f"[{SECRET}]"})
    assert problems == [
        "HERALD_BROKER__PASSWORD (environment): broker.password: Input should be a valid string"
    ]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """logs.setup() replaces the root handlers and REDACTOR is process-wide: put both back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {
        name: logging.getLogger(name).level
        for name in ("mqtt", "amqtt", "transitions", "aiosmtplib")
    }
    secrets = set(logs.REDACTOR._secrets)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, noisy_level in noisy.items():
            logging.getLogger(name).setLevel(noisy_level)
        logs.REDACTOR._secrets = secrets


def _log_everything(secret: str) -> None:
    log = logging.getLogger("herald.test.redaction")
    log.info("connecting to mqtt://herald:%s@broker:1883", secret)
    log.warning(f"webhook https://hooks.example.com/{secret}/send refused")
    log.error("delivery failed: %s", RuntimeError(f"401 for token {secret}"))
    try:
        raise ConnectionError(f"authentication failed for password {secret!r}")
    except ConnectionError:
        log.exception("broker connection lost")


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize("format_", ["text", "json"])
def test_log_output_never_contains_a_secret(
    capsys: pytest.CaptureFixture[str], format_: typing.Literal["text", "json"]
) -> None:
    logs.setup(LoggingSettings(format=format_))
    logs.REDACTOR.add([SECRET])
    _log_everything(SECRET)
    output = capsys.readouterr().err
    assert SECRET not in output
    assert output.count(logs.REDACTED) == 4  # one per record, the traceback's included
    assert "broker connection lost" in output
    assert "ConnectionError: authentication failed for password '***'" in output
    assert "Traceback (most recent call last)" in output
    if format_ == "json":
        entries = [json.loads(line) for line in output.splitlines()]
        assert [entry["level"] for entry in entries] == ["info", "warning", "error", "error"]
        assert "ConnectionError" in entries[-1]["exception"]
        assert entries[0]["message"] == "connecting to mqtt://herald:***@broker:1883"


@pytest.mark.usefixtures("restored_logging")
def test_secrets_from_the_configuration_are_redacted_from_the_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `herald run` does: the configured secrets, read from a _file, feed the redactor."""
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_text(f"{SECRET}\n", encoding="utf-8")
    path = _write(
        tmp_path,
        f"broker:\n  password_file: {secret_file}\nlogging:\n  format: json\n",
    )
    process = _configure(path)
    logs.setup(process.logging)
    logs.REDACTOR.add(process.secrets())
    _log_everything(SECRET)
    output = capsys.readouterr().err
    assert SECRET not in output
    assert logs.REDACTED in output


@pytest.mark.parametrize("model", SECTION_MODELS, ids=lambda model: model.__name__)
def test_one_word_per_idea_in_every_section(model: type[BaseModel]) -> None:
    """Switches are `enabled`, every rate limit can be turned off with null, and every
    `outcomes:` list takes words of the one outcome vocabulary."""
    fields = list(_fields(model))
    assert [name for name, _ in fields if name == "enable"] == []
    for name, parts in fields:
        if name == "rate_limit":
            assert type(None) in parts
        if name == "outcomes":
            words = [part for part in parts if isinstance(part, str)]
            assert words
            assert set(words) <= set(OUTCOMES)


# --- old spellings: read for one release, each reported with the file and the key ------------

SLACK = "slack: [{name: ops, webhook_url: 'https://hooks.slack.example/T/B/x'"
WEBHOOK = "webhooks: [{name: ops, url: 'https://hooks.example/h'"


def _alerting_sections(document: config.ConfigDocument) -> list[BaseModel]:
    return [
        document.section("emailer", EmailerSettings),
        document.section("chat_notifier", ChatNotifierSettings),
        document.section("incident_forwarder", IncidentForwarderSettings),
    ]


# Each old spelling, the same settings in the new spelling, and the warnings (after the file).
OLD_SPELLINGS = {
    "emailer-enable": (
        "emailer:\n  failed:\n    enable: false\n",
        "emailer:\n  failed:\n    enabled: false\n",
        ["emailer.failed.enable is deprecated; write enabled"],
    ),
    "emailer-app-owner-enable": (
        "emailer:\n  succeeded:\n    enable: true\n    app_owner: {enable: true}\n",
        "emailer:\n  succeeded:\n    enabled: true\n    app_owner: {enabled: true}\n",
        [
            "emailer.succeeded.enable is deprecated; write enabled",
            "emailer.succeeded.app_owner.enable is deprecated; write enabled",
        ],
    ),
    "webhook-outcomes": (
        f"incident_forwarder:\n  {WEBHOOK}, outcomes: [task_failed, task_succeeded]}}]\n",
        f"incident_forwarder:\n  {WEBHOOK}, outcomes: [failed, succeeded]}}]\n",
        [
            "incident_forwarder.webhooks[0].outcomes[0]: task_failed is deprecated; write failed",
            "incident_forwarder.webhooks[0].outcomes[1]: task_succeeded is deprecated; "
            "write succeeded",
        ],
    ),
    "signl4-outcomes-and-severity": (
        "incident_forwarder:\n  signl4:\n    outcomes: [task_aborted]\n"
        "    severity: {task_failed: 2, task_aborted: 7}\n",
        "incident_forwarder:\n  signl4:\n    outcomes: [aborted]\n"
        "    severity: {failed: 2, aborted: 7}\n",
        [
            "incident_forwarder.signl4.severity.task_failed is deprecated; write failed",
            "incident_forwarder.signl4.severity.task_aborted is deprecated; write aborted",
            "incident_forwarder.signl4.outcomes[0]: task_aborted is deprecated; write aborted",
        ],
    ),
    "new-relic-outcomes-and-rate-limit": (
        "incident_forwarder:\n  new_relic:\n    log: {outcomes: [task_failed], rate_limit: 0s}\n",
        "incident_forwarder:\n  new_relic:\n    log: {outcomes: [failed], rate_limit: null}\n",
        [
            "incident_forwarder.new_relic.log.outcomes[0]: task_failed is deprecated; write failed",
            "incident_forwarder.new_relic.log.rate_limit: 0s is deprecated; write null",
        ],
    ),
    "chat-rate-limit-zero": (
        f"chat_notifier:\n  {SLACK}, rate_limit: 0}}]\n",
        f"chat_notifier:\n  {SLACK}, rate_limit: null}}]\n",
        ["chat_notifier.slack[0].rate_limit: 0 is deprecated; write null"],
    ),
    "emailer-rate-limit-zero": (
        "emailer:\n  aborted: {rate_limit: 0}\n",
        "emailer:\n  aborted: {rate_limit: null}\n",
        ["emailer.aborted.rate_limit: 0 is deprecated; write null"],
    ),
}


@pytest.mark.parametrize(
    ("old", "new", "warnings"), OLD_SPELLINGS.values(), ids=list(OLD_SPELLINGS)
)
def test_an_old_spelling_still_works_and_is_reported_with_the_file_and_the_key(
    tmp_path: Path, old: str, new: str, warnings: list[str]
) -> None:
    old_path, new_path = _write(tmp_path, old, "old.yaml"), _write(tmp_path, new, "new.yaml")
    _configure(old_path)  # every installed service accepts it
    old_document, new_document = config.load(old_path, {}), config.load(new_path, {})
    assert _alerting_sections(old_document) == _alerting_sections(new_document)
    assert old_document.deprecations == [f"{old_path}: {warning}" for warning in warnings]
    assert new_document.deprecations == []  # the new spelling is read silently


def test_rate_limit_null_and_the_old_zero_both_turn_the_limit_off(tmp_path: Path) -> None:
    path = _write(tmp_path, f"chat_notifier:\n  {SLACK}, rate_limit: 0}}]\n")
    assert (
        config.load(path, {}).section("chat_notifier", ChatNotifierSettings).slack[0].rate_limit
        is None
    )


def test_a_key_written_both_ways_is_an_error_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "emailer:\n  failed:\n    enable: false\n    enabled: false\n")
    result = _check_config(path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"herald: {path}: emailer.failed.enable: sets both enable (deprecated) and enabled; "
        "keep only enabled"
    ]


def test_an_old_spelling_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, "emailer: {}\n")
    document = config.load(path, {"HERALD_EMAILER__SUCCEEDED__ENABLE": "true"})
    assert document.section("emailer", EmailerSettings).succeeded.enabled is True
    assert document.deprecations == [
        "HERALD_EMAILER__SUCCEEDED__ENABLE (environment): emailer.succeeded.enable is "
        "deprecated; write enabled"
    ]
    # The file says enabled, the variable the old enable: a conflict, named where it came from.
    path = _write(tmp_path, "emailer:\n  failed:\n    enabled: true\n")
    problems = _problems(path, {"HERALD_EMAILER__FAILED__ENABLE": "false"})
    assert problems == [
        "HERALD_EMAILER__FAILED__ENABLE (environment): emailer.failed.enable: sets both "
        "enable (deprecated) and enabled; keep only enabled"
    ]


def test_a_word_outside_the_vocabulary_is_still_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, f"incident_forwarder:\n  {WEBHOOK}, outcomes: [task_done]}}]\n")
    problems = _problems(path)
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{path}: incident_forwarder.webhooks[0].outcomes[0]: Input should be 'failed', "
    )


def test_check_config_lists_the_old_spellings_and_still_exits_0(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"emailer:\n  failed: {{enable: false}}\nchat_notifier:\n  {SLACK}, rate_limit: 0}}]\n",
    )
    result = _check_config(path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"{path}: emailer.failed.enable is deprecated; write enabled",
        f"{path}: chat_notifier.slack[0].rate_limit: 0 is deprecated; write null",
        f"{path}: valid for chat-notifier, emailer (not configured: "
        "console, incident-forwarder, ingest, log-archiver, metrics-writer)",
    ]
