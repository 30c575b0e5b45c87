"""incident_forwarder: as an operator writes it: secrets from files, mistakes named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from herald_incident_forwarder.settings import IncidentForwarderSettings

KEY = "NRII-from-a-file-6b1d9e"


def test_secrets_come_from_files_and_never_show_in_repr(tmp_path: Path) -> None:
    key_file = tmp_path / "insert-key"
    key_file.write_text(KEY + "\n")
    url_file = tmp_path / "signl4-url"
    url_file.write_text("https://connect.signl4.com/webhook/team-secret-123\n")
    settings = IncidentForwarderSettings.model_validate(
        {
            "new_relic": {
                "accounts": [{"name": "prod", "account_id": "42", "insert_key_file": key_file}],
                "event": {"enabled": True, "always_accounts": ["prod"]},
            },
            "signl4": {"enabled": True, "url_file": url_file},
            "webhooks": [
                {"name": "ops", "url": "https://x.example/h?code=s3cr3t", "method": "put"}
            ],
        }
    )
    assert settings.new_relic.accounts[0].insert_key.get_secret_value() == KEY
    assert settings.signl4.url is not None
    assert settings.signl4.url.get_secret_value().endswith("/team-secret-123")
    assert settings.webhooks[0].method == "PUT"  # any case, as Butler accepts it
    shown = repr(settings)
    assert KEY not in shown
    assert "team-secret-123" not in shown
    assert "s3cr3t" not in shown


def test_butlers_defaults_apply_when_nothing_is_said() -> None:
    settings = IncidentForwarderSettings()
    event, log = settings.new_relic.event, settings.new_relic.log
    assert event.failed_account_property == "Butler_FailedTask_Event_NewRelicAccount"
    assert log.aborted_account_property == "Butler_AbortedTask_Log_NewRelicAccount"
    assert (event.rate_limit, log.tail_lines) == (15.0, 20)
    assert settings.signl4.resolve_on_recovery
    assert settings.butler_mqtt.task_aborted_full_topic == "qliksense/task_aborted_full"
    assert settings.butler_mqtt.broker == "herald"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"new_relic": {"event": {"always_accounts": ["nobody"]}}},
            "event.always_accounts: no such account: nobody",
        ),
        ({"signl4": {"enabled": True}}, "url (or url_file) is required"),
        (
            {"webhooks": [{"name": "a", "url": "https://x"}, {"name": "a", "url": "https://y"}]},
            "every webhook needs its own name",
        ),
        ({"webhooks": [{"name": "a", "url": "https://x", "method": "DELETE"}]}, "GET"),
    ],
)
def test_mistakes_are_named(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        IncidentForwarderSettings.model_validate(section)
