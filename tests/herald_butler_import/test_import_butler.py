"""herald import-butler and herald render, through the real CLI, on a Butler configuration and
Butler-style templates written for these tests (fixtures/)."""

from __future__ import annotations

import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from herald_chat_notifier import context as chat_context
from herald_chat_notifier.destinations.teams import TeamsDestination, TeamsTarget
from herald_shared import events
from herald_shared.butler_fields import butler_fields, local_times
from herald_shared.samples import sample_failed

FIXTURES = Path(__file__).parent / "fixtures"
SECRETS = (
    "smtp-secret-password",
    "influx-secret-password",
    "slack-secret-failed",
    "slack-secret-aborted",
    "teams-secret-failed",
    "teams-secret-aborted",
    "signl4-secret-team",
    "NRII-secret-insert-key-prod",
    "webhook-secret-code",
    "webhook-secret-token",
)


def herald(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "herald_shared.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def imported(tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path / "herald"
    result = herald(
        "import-butler",
        FIXTURES / "butler.yaml",
        "--templates",
        FIXTURES / "templates",
        "--out",
        out,
        "--write-secrets",
    )
    assert result.returncode == 0, result.stderr
    return out, result


def test_a_butler_site_with_every_reload_alert_imports_and_passes_check_config(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = imported
    # The QRS certificates are where Butler's host keeps them (/etc/butler/certs), not on this
    # machine: checked as a file meant for another host is.
    checked = herald("check-config", "--config", out / "herald.yaml", "--secrets-not-mounted")
    assert checked.returncode == 0, checked.stderr
    assert "valid for" in checked.stdout
    document = yaml.safe_load((out / "herald.yaml").read_text())
    services = {"ingest", "emailer", "chat_notifier", "incident_forwarder", "metrics_writer"}
    assert set(document) == {"qlik", "log_archiver", *services}


def test_the_imported_alerts_keep_butlers_recipients_gates_rate_limits_and_urls(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    document = yaml.safe_load((imported[0] / "herald.yaml").read_text())
    mail = document["emailer"]
    assert mail["failed"]["recipients"] == ["ops@site.test", "bi-team@site.test"]
    assert mail["failed"]["rate_limit"] == 600
    assert mail["failed"]["recipients_custom_property"] == "Site_FailedMailTo"
    assert "recipients_when" not in mail["failed"]  # Butler's gate was off
    assert mail["failed"]["app_owner"] == {
        "enabled": True,
        "include_all": False,
        "include": [{"directory": "LAB", "user_id": "goran"}],
        "exclude": [{"directory": "LAB", "user_id": "intern"}],
    }
    assert mail["aborted"]["recipients_when"] == {
        "task_custom_properties": {"Site_AbortedMail": ["On"]}
    }
    assert mail["succeeded"]["enabled"] is True
    assert mail["succeeded"]["rate_limit"] == 45
    assert mail["recovered"] == {"enabled": False}
    assert mail["smtp"]["tls"] == "starttls"
    assert mail["smtp"]["username"] == "sense-mailer"
    assert mail["smtp"]["tls_server_name"] == "mail.site.test"
    slack = {target["name"]: target for target in document["chat_notifier"]["slack"]}
    assert slack["butler-failed"]["channel"] == "qlik-failed"
    assert slack["butler-failed"]["rate_limit"] == 240
    assert slack["butler-aborted"]["outcomes"] == ["aborted"]
    teams = {target["name"]: target for target in document["chat_notifier"]["teams"]}
    assert teams["butler-failed"]["format"] == "adaptive_card"
    assert teams["butler-aborted"]["format"] == "message_card"
    qlik = document["qlik"]
    assert qlik["qrs"]["url"] == "https://sense.site.test:4242"
    assert qlik["qrs"]["headers"] == {"X-Site-Trace": "butler"}
    assert qlik["app_base_url"] == "https://sense.site.test/sense/app"
    assert qlik["generic_links"][0]["text"] == "Runbook"
    assert document["ingest"]["udp"]["port"] == 9997
    assert document["ingest"]["max_datagrams_per_minute"] == 450  # udpServerConfig.rateLimit
    assert document["ingest"]["udp_status_topic"] == "site/butler/task_failure_server"
    # Host names carry over: ingest resolves them at start and every allowed_sources_refresh.
    assert document["ingest"]["allowed_sources"] == ["10.1.2.3", "10.1.2.0/24", "sense-node-2"]
    hooks = document["incident_forwarder"]["webhooks"]
    assert [hook["outcomes"] for hook in hooks] == [["failed", "aborted"], ["aborted"]]
    assert document["incident_forwarder"]["signl4"]["severity"] == {"failed": 2, "aborted": 9}
    assert document["metrics_writer"]["influxdb"]["success"]["mode"] == "by_custom_property"
    # Butler wrote no other task type's points here, so neither does Herald.
    assert document["metrics_writer"]["influxdb"]["when"] == {"task_types": ["reload"]}
    assert document["log_archiver"]["retention_days"] == 0


def test_the_report_names_what_has_no_counterpart_and_each_changed_default(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    report = imported[1].stdout
    assert "Butler.udpServerConfig.allowedSources[sense-node-2]" not in report
    assert "Butler.configQRS.headers.static[X-Site-Trace] → qlik.qrs.headers" in report
    for difference in (
        "qlik.qrs.verify: true",
        "QoS 1",
        "emailer.recovered",
        "retention_days",
        "task_types: [reload]",
        "tag.dynamic",
        "dead-lettered (herald/v1/dead-letter/ingest)",
        "ingest publishes start/error on Herald's broker",
    ):
        assert difference in report
    assert "{{tasId}} is no template field" in report


def test_secrets_are_files_of_mode_0600_and_never_in_herald_yaml_or_the_report(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, result = imported
    written = (
        (out / "herald.yaml").read_text()
        + (out / "import-report.txt").read_text()
        + result.stdout
        + result.stderr
    )
    for secret in SECRETS:
        assert secret not in written
    files = sorted((out / "secrets").iterdir())
    assert len(files) == len(SECRETS)
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o600}
    assert (out / "secrets" / "smtp-password").read_text() == "smtp-secret-password"


def test_without_write_secrets_the_report_lists_the_files_to_create(tmp_path: Path) -> None:
    result = herald("import-butler", FIXTURES / "butler.yaml", "--out", tmp_path / "h")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "h" / "secrets").exists()
    assert f"create {tmp_path / 'h' / 'secrets' / 'smtp-password'} (mode 0600)" in result.stdout
    assert "not found (give --templates)" in result.stdout
    for secret in SECRETS:
        assert secret not in result.stdout + (tmp_path / "h" / "herald.yaml").read_text()


@pytest.mark.parametrize(
    ("destination", "kind", "expected"),
    [
        ("email-failed", "failed", "<td>Göran Sander &lt;goran@example.com&gt;</td>"),
        ("email-aborted", "aborted", "By CORP\\anna at 2024-10-10 15:35:25,412 on sense-node-2"),
        ("email-succeeded", "succeeded", "reloaded in 0 min 19 s"),
        ("slack:butler-failed", "failed", '"text": "Reload runbook"'),
        ("slack:butler-aborted", "aborted", "aborted on pro2-win1 at 2024-10-10"),
        ("teams:butler-failed", "failed", '"tooltip": "What to check first when a reload fails"'),
        ("teams:butler-aborted", "aborted", "Reload aborted: Manually triggered reload"),
    ],
)
def test_butler_style_templates_render_through_herald_render(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
    destination: str,
    kind: str,
    expected: str,
) -> None:
    result = herald(
        "render",
        "--config",
        imported[0] / "herald.yaml",
        "--destination",
        destination,
        "--kind",
        kind,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_herald_render_fails_on_an_undefined_field(
    tmp_path: Path, imported: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    out = imported[0]
    template = out / "templates" / "email" / "failed.html"
    template.write_text(template.read_text() + "{{ no_such_field }}")
    result = herald(
        "render",
        "--config",
        out / "herald.yaml",
        "--destination",
        "email-failed",
        "--kind",
        "failed",
    )
    assert result.returncode == 1
    assert "'no_such_field' is undefined" in result.stderr


def test_butler_local_times_are_in_the_site_time_zone() -> None:
    started = datetime(2021, 2, 16, 8, 24, 40, tzinfo=UTC)
    times = local_times(started, "startTime", ZoneInfo("Europe/Stockholm"))
    assert times == {
        "startTimeUTC": "2021-02-16T08:24:40.000Z",
        "startTimeLocal1": "2021-02-16 09:24:40",
        "startTimeLocal2": "2/16/2021, 9:24:40 AM",
        "startTimeLocal3": "Feb 16, 2021, 9:24:40 AM",
        "startTimeLocal4": "February 16, 2021 at 9:24:40 AM GMT+1",
        "startTimeLocal5": "February 16, 2021 at 9:24:40 AM GMT+1",
    }
    fields = butler_fields(sample_failed(), ZoneInfo("America/New_York"))
    assert fields["executionStopTime"]["stopTimeLocal1"] == "2021-02-16 03:24:59"
    assert fields["executionDetails"][0]["timestampLocal1"] == "2021-02-16 03:24:40"


def _with(path: Path, change: dict[str, object]) -> None:
    document = yaml.safe_load(path.read_text())
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(document))


def test_local_times_follow_qlik_timezone_and_a_destinations_own_zone(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    config = imported[0] / "herald.yaml"
    _with(
        config,
        {"qlik.timezone": "Europe/Stockholm", "chat_notifier.slack.1.timezone": "America/New_York"},
    )
    mail = herald("render", "--config", config, "--destination", "email-failed", "--kind", "failed")
    assert "<td>Started</td><td>2021-02-16 09:24:40</td>" in mail.stdout, mail.stderr
    slack = herald(
        "render", "--config", config, "--destination", "slack:butler-aborted", "--kind", "aborted"
    )
    assert "aborted on pro2-win1 at 2024-10-10 09:30:21" in slack.stdout, slack.stderr


def test_a_time_zone_that_does_not_exist_is_a_configuration_error(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    config = imported[0] / "herald.yaml"
    _with(config, {"emailer.timezone": "Europe/Stockholmm"})
    checked = herald("check-config", "--config", config)
    assert checked.returncode == 2
    assert "emailer.timezone" in checked.stderr
    assert "'Europe/Stockholmm' is not an IANA time zone name" in checked.stderr


def test_the_local_time_filter_formats_any_time_field_in_the_site_zone(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    config = imported[0] / "herald.yaml"
    subject = '{{ execution_start_time | local_time("%d.%m.%Y %H:%M") }} {{ executionId }}'
    _with(config, {"qlik.timezone": "Europe/Stockholm", "emailer.failed.subject": subject})
    mail = herald("render", "--config", config, "--destination", "email-failed", "--kind", "failed")
    assert "Subject: 16.02.2021 09:24 14a81bf5-f81c-4047-b1a1-193b0920de28\n" in mail.stdout, (
        mail.stderr
    )


def test_an_existing_herald_yaml_is_replaced_only_with_force(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out = imported[0]
    (out / "herald.yaml").write_text("# edited by hand\n")
    again = herald("import-butler", FIXTURES / "butler.yaml", "--out", out)
    assert again.returncode == 2
    assert f"{out / 'herald.yaml'} exists: give --force" in again.stderr
    assert (out / "herald.yaml").read_text() == "# edited by hand\n"
    forced = herald("import-butler", FIXTURES / "butler.yaml", "--out", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "emailer:" in (out / "herald.yaml").read_text()


def test_a_butler_file_without_a_butler_section_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "other.yaml"
    source.write_text("broker: {host: localhost}\n")
    result = herald("import-butler", source, "--out", tmp_path / "h")
    assert result.returncode == 2
    assert "has no Butler: section" in result.stderr


def test_herald_render_renders_a_given_event(
    tmp_path: Path, imported: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    event = sample_failed()
    event.task.name = "Reload from a file"
    path = tmp_path / "event.json"
    path.write_bytes(events.encode(event))
    result = herald(
        "render", "--config", imported[0] / "herald.yaml", "--destination", "teams:butler-failed",
        "--kind", "failed", "--event", path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Reload failed: Reload from a file" in result.stdout


def test_herald_render_names_a_destination_that_does_not_exist(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    result = herald(
        "render", "--config", imported[0] / "herald.yaml", "--destination", "slack:nope",
        "--kind", "failed",
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        "chat_notifier.slack has no target named 'nope' (there are: butler-failed, butler-aborted)"
        in result.stderr
    )


def test_script_log_lines_are_butlers_per_outcome_and_every_event_carries_enough(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    config = imported[0] / "herald.yaml"
    document = yaml.safe_load(config.read_text())
    assert (
        document["emailer"]["failed"]["head_lines"],
        document["emailer"]["failed"]["tail_lines"],
    ) == (10, 20)
    # The largest count any Butler destination asks for (InfluxDB's failure tail: 30).
    assert document["qlik"]["script_log"] == {"head_lines": 15, "tail_lines": 30}
    _with(config, {"emailer.failed.tail_lines": 3})
    mail = herald("render", "--config", config, "--destination", "email-failed", "--kind", "failed")
    assert "<p>3 of 14 lines</p>" in mail.stdout, mail.stderr
    last_three = "\n".join(sample_failed().script_log.tail[-3:])  # type: ignore[union-attr]
    assert f"<pre>{last_three}</pre>" in mail.stdout


def test_butlers_basic_message_template_becomes_the_basic_title(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    document = yaml.safe_load((imported[0] / "herald.yaml").read_text())
    raw = next(t for t in document["chat_notifier"]["teams"] if t["name"] == "butler-failed")
    assert raw["basic_title"] == 'Reload failed: "{{ taskName }}"'
    target = TeamsTarget.model_validate(raw)  # the webhook URL from the secret file
    teams = TeamsDestination(target, service="test")
    card = teams.basic(chat_context.build(sample_failed(), "failed", target))
    body = card["attachments"][0]["content"]["body"]
    assert body[0]["text"] == 'Reload failed: "Manually triggered reload of Test failing reloads 2"'


def test_a_basic_title_that_does_not_compile_is_a_configuration_error(
    imported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    config = imported[0] / "herald.yaml"
    _with(config, {"chat_notifier.slack.0.basic_title": "{{ taskName "})
    checked = herald("check-config", "--config", config)
    assert checked.returncode == 2
    assert "chat_notifier.slack[0].basic_title" in checked.stderr
    assert "not a valid template" in checked.stderr


@pytest.mark.parametrize(
    ("credentials", "event_accounts", "log_accounts"),
    [
        ("lists", ["First NR account", "Second NR account"], ["Second NR account"]),
        # Older still: one account, not a list, which got every event and log.
        ("one account", ["butler"], ["butler"]),
    ],
)
def test_a_new_relic_set_up_older_than_butler_8_5_imports_its_destination_accounts(
    tmp_path: Path, credentials: str, event_accounts: list[str], log_accounts: list[str]
) -> None:
    butler = yaml.safe_load((FIXTURES / "butler-pre-8.5.yaml").read_text())
    if credentials == "one account":
        butler["Butler"]["thirdPartyToolsCredentials"]["newRelic"] = {
            "insertApiKey": "NRII-secret-first",
            "accountId": 1111111,
        }
        del butler["Butler"]["incidentTool"]["newRelic"]["destinationAccount"]
    source = tmp_path / "butler.yaml"
    source.write_text(yaml.safe_dump(butler))
    out = tmp_path / "herald"
    result = herald("import-butler", source, "--out", out, "--write-secrets")
    assert result.returncode == 0, result.stderr
    checked = herald("check-config", "--config", out / "herald.yaml", "--secrets-not-mounted")
    assert checked.returncode == 0, checked.stderr
    relic = yaml.safe_load((out / "herald.yaml").read_text())["incident_forwarder"]["new_relic"]
    assert relic["event"]["always_accounts"] == event_accounts
    assert relic["event"]["outcomes"] == ["failed", "aborted"]
    assert relic["log"]["always_accounts"] == log_accounts
    assert relic["log"]["outcomes"] == ["failed"]
    assert relic["log"]["tail_lines"] == 20
    assert {a["name"] for a in relic["accounts"]} >= {*event_accounts, *log_accounts}
    assert "NRII-secret" not in (out / "herald.yaml").read_text() + result.stdout
    relic_key = "newRelic.destinationAccount.event" if credentials == "lists" else "newRelic"
    expected = (
        f"{relic_key} (before Butler 8.5) → incident_forwarder.new_relic.event.always_accounts"
    )
    assert expected in result.stdout
