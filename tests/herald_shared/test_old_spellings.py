"""Old spellings of herald.yaml keys and values: still read for one release, each one reported.

Real files in tmp_path, loaded as the services load them; check-config and the runtime's warning
through the real ``herald`` command.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from herald_chat_notifier.settings import ChatNotifierSettings
from herald_emailer.settings import EmailerSettings
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared import config
from herald_shared.config import ConfigError
from herald_shared.runtime import configure, installed_services
from herald_testkit.ports import free_port
from herald_testkit.processes import Child, herald

SLACK = "slack: [{name: ops, webhook_url: 'https://hooks.slack.example/T/B/x'}]"
WEBHOOK = "webhooks: [{name: ops, url: 'https://hooks.example/h'}]"


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


def _load(path: Path, environ: dict[str, str] | None = None) -> config.ConfigDocument:
    document = config.load(path, environ or {})
    configure(document, list(installed_services().values()))  # every section validates
    return document


def _section(document: config.ConfigDocument, model: type[BaseModel]) -> Any:
    names = {
        EmailerSettings: "emailer",
        ChatNotifierSettings: "chat_notifier",
        IncidentForwarderSettings: "incident_forwarder",
    }
    return document.section(names[model], model)


# Each old spelling, the same setting in the new spelling, where it is read, and the warning.
CASES = [
    pytest.param(
        "emailer:\n  failed:\n    enable: false\n",
        "emailer:\n  failed:\n    enabled: false\n",
        lambda document: _section(document, EmailerSettings).failed.enabled,
        ["emailer.failed.enable is deprecated; write enabled"],
        id="emailer-enable",
    ),
    pytest.param(
        "emailer:\n  succeeded:\n    enable: true\n    app_owner: {enable: true}\n",
        "emailer:\n  succeeded:\n    enabled: true\n    app_owner: {enabled: true}\n",
        lambda document: (
            _section(document, EmailerSettings).succeeded.enabled,
            _section(document, EmailerSettings).succeeded.app_owner.enabled,
        ),
        [
            "emailer.succeeded.enable is deprecated; write enabled",
            "emailer.succeeded.app_owner.enable is deprecated; write enabled",
        ],
        id="emailer-app-owner-enable",
    ),
    pytest.param(
        f"incident_forwarder:\n  {WEBHOOK[:-2]}, outcomes: [task_failed, task_succeeded]}}]\n",
        f"incident_forwarder:\n  {WEBHOOK[:-2]}, outcomes: [failed, succeeded]}}]\n",
        lambda document: _section(document, IncidentForwarderSettings).webhooks[0].outcomes,
        [
            "incident_forwarder.webhooks[0].outcomes[0]: task_failed is deprecated; write failed",
            "incident_forwarder.webhooks[0].outcomes[1]: task_succeeded is deprecated; "
            "write succeeded",
        ],
        id="webhook-outcomes",
    ),
    pytest.param(
        "incident_forwarder:\n  signl4:\n    outcomes: [task_aborted]\n"
        "    severity: {task_failed: 2, task_aborted: 7}\n",
        "incident_forwarder:\n  signl4:\n    outcomes: [aborted]\n"
        "    severity: {failed: 2, aborted: 7}\n",
        lambda document: (
            _section(document, IncidentForwarderSettings).signl4.outcomes,
            _section(document, IncidentForwarderSettings).signl4.severity,
        ),
        [
            "incident_forwarder.signl4.severity.task_failed is deprecated; write failed",
            "incident_forwarder.signl4.severity.task_aborted is deprecated; write aborted",
            "incident_forwarder.signl4.outcomes[0]: task_aborted is deprecated; write aborted",
        ],
        id="signl4-outcomes-and-severity",
    ),
    pytest.param(
        "incident_forwarder:\n  new_relic:\n    log: {outcomes: [task_failed], rate_limit: 0s}\n",
        "incident_forwarder:\n  new_relic:\n    log: {outcomes: [failed], rate_limit: null}\n",
        lambda document: (
            _section(document, IncidentForwarderSettings).new_relic.log.outcomes,
            _section(document, IncidentForwarderSettings).new_relic.log.rate_limit,
        ),
        [
            "incident_forwarder.new_relic.log.outcomes[0]: task_failed is deprecated; write failed",
            "incident_forwarder.new_relic.log.rate_limit: 0s is deprecated; write null",
        ],
        id="new-relic-outcomes-and-rate-limit",
    ),
    pytest.param(
        f"chat_notifier:\n  {SLACK[:-2]}, rate_limit: 0}}]\n",
        f"chat_notifier:\n  {SLACK[:-2]}, rate_limit: null}}]\n",
        lambda document: _section(document, ChatNotifierSettings).slack[0].rate_limit,
        ["chat_notifier.slack[0].rate_limit: 0 is deprecated; write null"],
        id="chat-rate-limit-zero",
    ),
    pytest.param(
        "emailer:\n  aborted: {rate_limit: 0}\n",
        "emailer:\n  aborted: {rate_limit: null}\n",
        lambda document: _section(document, EmailerSettings).aborted.rate_limit,
        ["emailer.aborted.rate_limit: 0 is deprecated; write null"],
        id="emailer-rate-limit-zero",
    ),
]


@pytest.mark.parametrize(("old", "new", "read", "warnings"), CASES)
def test_an_old_spelling_still_works_and_is_reported_with_the_file_and_the_key(
    tmp_path: Path, old: str, new: str, read: Any, warnings: list[str]
) -> None:
    path = _write(tmp_path, old, "old.yaml")
    old_document = _load(path)
    new_document = _load(_write(tmp_path, new, "new.yaml"))
    assert read(old_document) == read(new_document)
    assert old_document.deprecations == [f"{path}: {warning}" for warning in warnings]
    assert new_document.deprecations == []  # the new spelling is read silently


def test_writing_a_key_both_ways_is_an_error_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "emailer:\n  failed:\n    enable: false\n    enabled: true\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, {})
    assert caught.value.problems == [
        f"{path}: emailer.failed.enable: sets both enable (deprecated) and enabled; "
        "keep only enabled"
    ]


def test_an_old_spelling_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, "emailer:\n  failed:\n    enabled: true\n    recipients: []\n")
    # The file says enabled, the variable the old enable: a conflict, named by its origin.
    with pytest.raises(ConfigError) as caught:
        config.load(path, {"HERALD_EMAILER__FAILED__ENABLE": "false"})
    assert caught.value.problems[0].startswith(
        "HERALD_EMAILER__FAILED__ENABLE (environment): emailer.failed.enable: sets both"
    )
    path = _write(tmp_path, "emailer: {}\n")
    document = _load(path, {"HERALD_EMAILER__SUCCEEDED__ENABLE": "true"})
    assert _section(document, EmailerSettings).succeeded.enabled is True
    assert document.deprecations == [
        "HERALD_EMAILER__SUCCEEDED__ENABLE (environment): emailer.succeeded.enable is "
        "deprecated; write enabled"
    ]


def test_an_old_value_that_is_not_a_vocabulary_word_is_still_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, f"incident_forwarder:\n  {WEBHOOK[:-2]}, outcomes: [task_done]}}]\n")
    with pytest.raises(ConfigError) as caught:
        _load(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(
        f"{path}: incident_forwarder.webhooks[0].outcomes[0]: Input should be 'failed', "
    )


# --- the herald command ----------------------------------------------------------------------


async def test_check_config_lists_the_old_spellings_and_still_exits_0(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "emailer:\n  failed: {enable: false}\n"
        f"chat_notifier:\n  {SLACK[:-2]}, rate_limit: 0}}]\n",
    )
    code, out, err = await herald("check-config", "--config", str(path))
    assert code == 0, err
    assert err == ""
    assert out.splitlines() == [
        f"{path}: emailer.failed.enable is deprecated; write enabled",
        f"{path}: chat_notifier.slack[0].rate_limit: 0 is deprecated; write null",
        f"{path}: valid for {', '.join(installed_services())}",
    ]


async def test_check_config_rejects_a_key_written_both_ways(tmp_path: Path) -> None:
    path = _write(tmp_path, "emailer:\n  failed: {enable: false, enabled: false}\n")
    code, out, err = await herald("check-config", "--config", str(path))
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        f"herald: {path}: emailer.failed.enable: sets both enable (deprecated) and enabled; "
        "keep only enabled"
    ]


async def test_a_running_service_logs_each_old_spelling_once_at_start(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"broker: {{host: 127.0.0.1, port: {free_port()}, embedded: true, instance: demo}}\n"
        "health: {host: 127.0.0.1, port: 0}\n"
        "logging: {format: json}\n"
        f"log_archiver: {{directory: {tmp_path / 'logs'}, state_dir: {tmp_path / 'state'}}}\n"
        # Not run by `herald up` (disabled), but in the file the process read.
        "emailer: {enabled: false, failed: {enable: false}}\n",
    )
    up = await Child.python(
        "-m", "herald_shared.cli", "up", "--config", str(path), with_stderr=True
    )
    try:
        await up.wait_for_line(lambda line: "started log-archiver" in line)
        up.terminate()
        assert await up.wait() == 0
    finally:
        await up.close()
    entries = [json.loads(line) for line in up.lines if line.startswith("{")]
    deprecated = [entry for entry in entries if "deprecated" in entry["message"]]
    assert [(entry["level"], entry["message"]) for entry in deprecated] == [
        ("warning", f"{path}: emailer.failed.enable is deprecated; write enabled")
    ]
