"""Templates, template fields and recipient choice, without a network: what an operator sees
when a template is broken, and who is chosen to get an alert."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest

import herald_emailer.context
from herald_emailer.context import build_context
from herald_emailer.destinations.email import FailedSettings
from herald_emailer.recipients import recipients
from herald_emailer.rendering import load_renderer
from herald_emailer.service import SERVICE
from herald_emailer.settings import EmailerSettings
from herald_shared import samples
from herald_shared.config import ConfigDocument, ConfigError


def _load(data: dict[str, Any]) -> EmailerSettings:
    settings: EmailerSettings = SERVICE.load_settings(
        ConfigDocument(path=Path("herald.yaml"), data={"emailer": data})
    )
    return settings


def test_every_template_field_is_documented_in_the_context_module() -> None:
    documentation = herald_emailer.context.__doc__ or ""
    for event in samples.sample_events():
        for name in build_context(event):
            assert f"``{name}``" in documentation, name


@pytest.mark.parametrize("outcome", ["failed", "aborted", "succeeded", "recovered"])
def test_the_built_in_templates_render_every_sample_without_empty_or_none_fields(
    outcome: str,
) -> None:
    settings = EmailerSettings()
    renderer = load_renderer(outcome, settings.outcome(outcome), None)  # type: ignore[arg-type]
    for event in samples.sample_events():
        rendered = renderer.render(event)
        assert rendered.html is not None
        for part in (rendered.subject, rendered.text, rendered.html):
            assert "None" not in part
            assert "{{" not in part
        assert rendered.html.lstrip().startswith("<!DOCTYPE html>")


def test_a_partial_event_says_what_is_missing_and_why() -> None:
    renderer = load_renderer("failed", FailedSettings(), None)
    rendered = renderer.render(samples.sample_partial())
    assert "QRS task lookup failed: connection refused after 3 attempts" in rendered.text
    assert rendered.html is not None
    assert "QRS task lookup failed: connection refused after 3 attempts" in rendered.html
    assert "Duration" not in rendered.text  # unknown, so left out rather than shown empty


def test_a_template_with_a_syntax_error_stops_the_start_naming_file_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "failed.html").write_text("<html>\n<body>\n{% if task_name %}\n</body>\n")
    with pytest.raises(ConfigError) as raised:
        _load({"template_dir": str(tmp_path)})
    [problem] = raised.value.problems
    # The unclosed block is reported where the template ends without closing it.
    assert f"{tmp_path / 'failed.html'}:3:" in problem
    assert "emailer.failed" in problem


def test_a_template_using_an_unknown_field_stops_the_start_naming_file_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "aborted.txt").write_text("Aborted: {{ task_name }}\nBy: {{ aborted_by }}\n")
    with pytest.raises(ConfigError) as raised:
        _load({"template_dir": str(tmp_path)})
    [problem] = raised.value.problems
    assert f"{tmp_path / 'aborted.txt'}:2" in problem
    assert "'aborted_by' is undefined" in problem


def test_a_broken_subject_and_a_missing_template_are_start_up_errors() -> None:
    with pytest.raises(ConfigError) as raised:
        _load(
            {
                "failed": {"subject": "Failed: {{ task_name "},
                "aborted": {"html_template": "no-such.html"},
            }
        )
    problems = "\n".join(raised.value.problems)
    assert "emailer.failed" in problems
    assert "template error" in problems
    assert "emailer.aborted: template no-such.html not found" in problems


def test_a_disabled_outcome_is_not_checked() -> None:
    settings = _load({"succeeded": {"enabled": False, "html_template": "no-such.html"}})
    assert not settings.succeeded.enabled


def test_butlers_defaults() -> None:
    settings = EmailerSettings()
    assert (settings.failed.rate_limit, settings.aborted.rate_limit) == (600, 600)
    assert settings.succeeded.rate_limit == 60
    assert settings.failed.recipients_custom_property == "Butler_FailedAlertSendToEmail"
    assert settings.aborted.recipients_custom_property == "Butler_AbortedAlertSendToEmail"
    assert settings.succeeded.recipients_custom_property == "Butler_SuccessAlertSendToEmail"
    assert settings.failed.priority == "high"
    assert settings.smtp.verify
    # A partial block keeps the outcome's other defaults.
    assert _load({"failed": {"recipients": ["a@example.com"]}}).failed.rate_limit == 600


# --- recipients ----------------------------------------------------------------------------


def _event_with(owner_emails: list[str], properties: dict[str, list[str]]) -> Any:
    failed = samples.sample_failed()
    assert failed.app is not None
    assert failed.app.owner is not None
    owner = msgspec.structs.replace(failed.app.owner, emails=owner_emails)
    app = msgspec.structs.replace(failed.app, owner=owner)
    task = msgspec.structs.replace(failed.task, custom_properties=properties)
    return msgspec.structs.replace(failed, app=app, task=task)


def test_an_owner_without_an_address_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    settings = FailedSettings(recipients=["ops@example.com"])
    event = _event_with([], {"Butler_FailedAlertSendToEmail": ["bi@example.com"]})
    assert recipients(settings, event) == ["ops@example.com", "bi@example.com"]
    assert "has no e-mail address" in caplog.text


def test_owner_include_and_exclude_lists() -> None:
    event = _event_with(["goran@example.com", "g.sander@example.com"], {})
    include_other = FailedSettings.model_validate(
        {"app_owner": {"include_all": False, "include": [{"directory": "LAB", "user_id": "x"}]}}
    )
    assert recipients(include_other, event) == []
    include_goran = FailedSettings.model_validate(
        {"app_owner": {"include_all": False, "include": [{"directory": "LAB", "user_id": "goran"}]}}
    )
    assert recipients(include_goran, event) == ["goran@example.com", "g.sander@example.com"]
    exclude_goran = FailedSettings.model_validate(
        {"app_owner": {"exclude": [{"directory": "LAB", "user_id": "goran"}]}}
    )
    assert recipients(exclude_goran, event) == []
    case_differs = FailedSettings.model_validate(
        {"app_owner": {"exclude": [{"directory": "lab", "user_id": "goran"}]}}
    )
    assert len(recipients(case_differs, event)) == 2  # exact match, as Butler


def test_butlers_enable_by_custom_property_gates_only_the_static_recipients() -> None:
    settings = FailedSettings.model_validate(
        {
            "recipients": ["ops@example.com"],
            "recipients_when": {
                "task_custom_properties": {"Butler_FailedAlertEnableEmail": ["Yes"]}
            },
            "app_owner": {"enabled": False},
        }
    )
    not_enabled = _event_with([], {"Butler_FailedAlertSendToEmail": ["bi@example.com"]})
    assert recipients(settings, not_enabled) == ["bi@example.com"]
    enabled = _event_with(
        [],
        {
            "Butler_FailedAlertSendToEmail": ["bi@example.com"],
            "Butler_FailedAlertEnableEmail": ["Yes"],
        },
    )
    assert recipients(settings, enabled) == ["ops@example.com", "bi@example.com"]


def test_a_repeated_send_of_one_alert_has_the_same_message_id() -> None:
    """A crash between the server's 250 and the ledger can resend a mail; clients collapse it."""
    from email import message_from_bytes

    from herald_emailer.message import build_message
    from herald_emailer.rendering import Rendered

    rendered = Rendered(subject="s", text="t", html=None)
    first, again, other = (
        message_from_bytes(
            build_message(
                rendered, sender="a@example.com", recipient=to, priority="high", event_id="e1"
            )
        )
        for to in ("Ops@example.com", "ops@example.com", "dev@example.com")
    )
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] != other["Message-ID"]
    assert first["Message-ID"].endswith("@example.com>")
