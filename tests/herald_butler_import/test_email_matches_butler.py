"""The HTML e-mail a Butler template makes through Herald holds, in every field Butler fills, what
Butler's own would for the same event.

The fixtures (fixtures/email-comparison/) are Herald's own: a Butler site with failed-reload
e-mails, a Handlebars template that puts each of Butler's fields (src/lib/qseow/smtp/
reload-task-failed.js, ``templateContext``) in an element of its own, and an event. The site is
imported with ``herald import-butler`` and the event rendered with ``herald render``. The expected
values are Butler's for the QRS answers behind that event (docs/butler-compatibility.md §3.2 and
docs/templates.md): raw QRS timestamps, Luxon's en-US formats in the site's zone for the
``…Local1..5`` fields, JavaScript's ``true``/``false``, the configured head and tail line counts.
They are compared as a reader sees them (entities decoded: Handlebars writes ``&#x3D;`` where
Jinja2 writes ``=``), with line breaks as LF (Butler joins script-log lines with CRLF; SMTP
carries every line break as CRLF anyway).
"""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from tests.herald_butler_import.test_import_butler import herald

from herald_shared.butler_fields import local_times

FIXTURES = Path(__file__).parent / "fixtures" / "email-comparison"
APP_ID = "e7af59a0-c243-480d-9571-08727551a66f"
DETAILS = [
    ("2021-02-16T08:24:40.123Z", "09:24:40", "Changing task state from Triggered to Started"),
    ("2021-02-16T08:24:41.000Z", "09:24:41", "Reference to scriptlog added"),
    ("2021-02-16T08:25:59.999Z", "09:25:59", "Changing task state from Started to FinishedFail"),
]


def _detail(utc: str, clock: str, message: str) -> str:
    short = clock.lstrip("0")
    return "|".join(
        [
            utc,
            f"2021-02-16 {clock}",
            f"2/16/2021, {short} AM",
            f"Feb 16, 2021, {short} AM",
            *[f"February 16, 2021 at {short} AM GMT+1"] * 2,
            "2",  # the QRS's detailsType, as it is
            message,
        ]
    )


# What Butler puts in each element of fixtures/email-comparison/email_templates/every-field.handlebars.
BUTLER = {
    "hostName": "sense-node-2",
    "user": "LAB\\goran",
    "taskName": "Reload of Sales & Margin <EU>",
    "taskId": "dec2a02a-1680-44ef-8dc2-e2bfb180af87",
    "taskIsManuallyTriggered": "true",
    "taskIsPartialReload": "false",
    "taskMaxRetries": "0",
    "taskModifiedByUsername": "LAB\\anna",
    "taskModifiedDate": "2021-02-10T08:12:45.678Z",
    "taskSessionTimeout": "1440",
    "taskNextExecution": "2021-02-17T05:00:00.250Z",
    "appName": "Sales & Margin",
    "appId": APP_ID,
    "appUrl": f"https://sense.site.test/sense/app/{APP_ID}",
    "appDescription": 'Sales per region, "reloaded" every morning',
    "appFileSize": "2408112",
    "appLastSuccessfulReload": "2021-02-15T06:00:12.345Z",
    "appLastModifiedDate": "2021-02-15T06:00:13.500Z",
    "appLastModifiedByUserName": "LAB\\anna",
    "appPublishTime": "2021-01-04T10:00:00.000Z",
    "appPublished": "true",
    "appOwnerName": "Göran Sander",
    "appOwnerUserId": "goran",
    "appOwnerUserDirectory": "LAB",
    "appOwnerEmail": "goran@site.test",  # the first of the owner's addresses
    "logTimeStamp": "2021-02-16 09:24:59,099",
    "logLevel": "INFO",
    "logMessage": "Max retries reached",
    "executingNodeName": "sense-node-2",
    "executionDuration.hours": "0",
    "executionDuration.minutes": "1",
    "executionDuration.seconds": "19",  # 79 876 ms, rounded down
    "executionStartTime.startTimeUTC": "2021-02-16T08:24:40.123Z",
    "executionStartTime.startTimeLocal1": "2021-02-16 09:24:40",
    "executionStartTime.startTimeLocal2": "2/16/2021, 9:24:40 AM",
    "executionStartTime.startTimeLocal3": "Feb 16, 2021, 9:24:40 AM",
    "executionStartTime.startTimeLocal4": "February 16, 2021 at 9:24:40 AM GMT+1",
    "executionStartTime.startTimeLocal5": "February 16, 2021 at 9:24:40 AM GMT+1",
    "executionStopTime.stopTimeUTC": "2021-02-16T08:25:59.999Z",
    "executionStopTime.stopTimeLocal1": "2021-02-16 09:25:59",
    "executionStopTime.stopTimeLocal2": "2/16/2021, 9:25:59 AM",
    "executionStopTime.stopTimeLocal3": "Feb 16, 2021, 9:25:59 AM",
    "executionStopTime.stopTimeLocal4": "February 16, 2021 at 9:25:59 AM GMT+1",
    "executionStopTime.stopTimeLocal5": "February 16, 2021 at 9:25:59 AM GMT+1",
    "executionStatusNum": "8",
    "executionStatusText": "FinishedFail",
    "scriptLogSize": "630",  # the QRS's figure: the log's bytes
    "scriptLogSizeRows": "10",
    "scriptLogSizeCharacters": "630",
    "scriptLogHeadCount": "3",  # headScriptLogLines
    "scriptLogTailCount": "4",  # tailScriptLogLines
    "scriptLogHead": "20210216T092440.123+0100 Execution started.\n"
    "20210216T092440.200+0100 Qlik Sense Server Version 14.20.5\n"
    "20210216T092440.300+0100 Reload Executed By UserDirectory=INTERNAL; UserId=sa_scheduler",
    "scriptLogTail": "20210216T092559.000+0100      Error: Cannot open file: "
    "'lib://Data/sales_2021.qvd' <missing>\n"
    "20210216T092559.000+0100      Path not found: \\\\fileserver\\qlik\\data\\sales_2021.qvd\n"
    "20210216T092559.000+0100 Execution Failed\n"
    "20210216T092559.999+0100 Execution finished.",
    "taskTags": ["Finance", "Daily"],
    "appTags": ["Sales", "EU"],
    "taskCustomProperties": ["Butler_FailedAlertSendToEmail=finance-bi@site.test", "Team=finance"],
    "appCustomProperties": ["Department=Finance"],
    "executionDetails": [_detail(*row) for row in DETAILS],
    "qlikSenseQMC": "https://sense.site.test/qmc",
    "qlikSenseHub": "https://sense.site.test/hub",
    "genericUrls": [
        "runbook|Reload runbook|What to check first|https://wiki.site.test/reloads",
        "status|Status page||https://status.site.test/?from=alert",
    ],
    "runbook": ["Reload runbook"],  # {{#if (eq id "runbook")}}
}
# Where Herald shows something else on purpose (docs/butler-compatibility.md, "Known differences").
DIFFERENT = {
    # Butler passes the QRS's stream object, which Handlebars prints as "[object Object]".
    "appStreamName": ("[object Object]", "Finance"),
}


class _Fields(HTMLParser):
    """The text of every element with an id (one value) or a class (a list, in order)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._open: list[str | None] = []
        self.found: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        key = names.get("id") or names.get("class")
        self._open.append(key)
        if key:
            self.found.setdefault(key, []).append("")

    def handle_endtag(self, tag: str) -> None:
        self._open.pop()

    def handle_data(self, data: str) -> None:
        key = next((k for k in reversed(self._open) if k), None)
        if key:
            self.found[key][-1] += data

    def field(self, name: str) -> str | list[str]:
        values = [value.replace("\r\n", "\n") for value in self.found.get(name, [])]
        return values if isinstance(BUTLER.get(name), list) else "".join(values)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> _Fields:
    out = tmp_path_factory.mktemp("comparison") / "herald"
    imported = herald(
        "import-butler", FIXTURES / "butler.yaml", "--templates", FIXTURES, "--out", out
    )
    assert imported.returncode == 0, imported.stderr
    # Butler shows local times in its host's zone; the site says which zone that is.
    config = out / "herald.yaml"
    document = yaml.safe_load(config.read_text())
    document["qlik"]["timezone"] = "Europe/Stockholm"
    config.write_text(yaml.safe_dump(document, allow_unicode=True))
    result = herald(
        "render", "--config", config, "--destination", "email-failed", "--kind", "failed",
        "--event", FIXTURES / "event.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    fields = _Fields()
    fields.feed(result.stdout.partition("--- html ---\n")[2])
    return fields


@pytest.mark.parametrize("name", sorted(BUTLER))
def test_each_field_holds_what_butler_would_put_there(rendered: _Fields, name: str) -> None:
    assert rendered.field(name) == BUTLER[name]


@pytest.mark.parametrize("name", sorted(DIFFERENT))
def test_the_fields_that_differ_on_purpose_show_herald_s_value(
    rendered: _Fields, name: str
) -> None:
    butler, herald_value = DIFFERENT[name]
    assert rendered.field(name) == herald_value != butler


def test_the_template_shows_every_field_butler_fills(rendered: _Fields) -> None:
    assert set(rendered.found) == set(BUTLER) | set(DIFFERENT)


@pytest.mark.parametrize(
    ("zone", "winter", "summer"),
    [  # what Luxon's DATETIME_FULL_WITH_SECONDS ends with, on a host in that zone (Node 20)
        ("Europe/Stockholm", "9:24:40 AM GMT+1", "10:24:40 AM GMT+2"),
        ("Europe/London", "8:24:40 AM GMT", "9:24:40 AM GMT+1"),
        ("Europe/Lisbon", "8:24:40 AM GMT+0", "9:24:40 AM GMT+1"),
        ("America/New_York", "3:24:40 AM EST", "4:24:40 AM EDT"),
        ("America/Halifax", "4:24:40 AM AST", "5:24:40 AM ADT"),
        ("America/Mazatlan", "1:24:40 AM GMT-7", "2:24:40 AM GMT-6"),
        ("America/St_Johns", "4:54:40 AM GMT-3:30", "5:54:40 AM GMT-2:30"),
        ("Asia/Kolkata", "1:54:40 PM GMT+5:30", "1:54:40 PM GMT+5:30"),
        ("Etc/UTC", "8:24:40 AM UTC", "8:24:40 AM UTC"),
    ],
)
def test_the_long_local_formats_name_the_zone_as_butler_does(
    zone: str, winter: str, summer: str
) -> None:
    for month, expected in ((2, winter), (7, summer)):
        moment = datetime(2021, month, 16, 8, 24, 40, 123000, tzinfo=UTC)
        long_form = local_times(moment, "t", ZoneInfo(zone))["tLocal4"]
        assert long_form.endswith(f" at {expected}")
