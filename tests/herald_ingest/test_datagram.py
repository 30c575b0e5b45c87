"""The scheduler datagram parser: what ingest makes of every byte string the scheduler can send."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from herald_ingest import datagram as datagram_module
from herald_ingest.datagram import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_DATAGRAM_BYTES,
    MESSAGE_TYPES,
    REJECTION_REASONS,
    Datagram,
    Outcome,
    Rejection,
    RejectionReason,
    parse,
)
from herald_shared.events import event_id_for

# --- docs/butler-compatibility.md §1.4, copied literally ---------------------------------

FAILED = r"/scheduler-task-failed/;pro2-win1;Manually triggered reload of Test failing reloads 2;Test failing reloads 2;LAB\goran;dec2a02a-1680-44ef-8dc2-e2bfb180af87;e7af59a0-c243-480d-9571-08727551a66f;2021-02-16 09:24:59,099;INFO;14a81bf5-f81c-4047-b1a1-193b0920de28;Max retries reached"
ABORTED = r"/scheduler-task-aborted/;sense-node-2;Reload Sales dashboard;Sales dashboard;CORP\anna;3f1c9a52-7d0e-4d2b-9a8e-0b7c1e2d4f60;8a2b6c1d-4e3f-4a5b-9c7d-1e2f3a4b5c6d;2024-10-10 15:35:25,412;INFO;5d0e7c11-2b6a-4f3e-9d1c-0a1b2c3d4e5f;Execution State Change to Aborting"
SUCCESS = r"/scheduler-task-success//;sense-node-1;Reload Sales dashboard;Sales dashboard;INTERNAL\sa_scheduler;3f1c9a52-7d0e-4d2b-9a8e-0b7c1e2d4f60;8a2b6c1d-4e3f-4a5b-9c7d-1e2f3a4b5c6d;2024-10-10 16:00:03,007;INFO;0b9e3f2a-6c5d-4e7f-8a9b-1c2d3e4f5a6b;Execution State Change to FinishedSuccess"
DISTRIBUTE = r"/scheduler-distribute/;sense-node-1;Distribute Sales to cloud;;INTERNAL\sa_scheduler;9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d;;2024-10-10 16:05:11,250;INFO;aa11bb22-cc33-4d44-8e55-ff6677889900;Exiting execute of Distribute task request."

FAILED_PARSED = Datagram(
    message_type="/scheduler-task-failed/",
    outcome="failed",
    host="pro2-win1",
    task_name="Manually triggered reload of Test failing reloads 2",
    app_name="Test failing reloads 2",
    user="LAB\\goran",
    task_id="dec2a02a-1680-44ef-8dc2-e2bfb180af87",
    app_id="e7af59a0-c243-480d-9571-08727551a66f",
    log_timestamp="2021-02-16 09:24:59,099",
    log_level="INFO",
    execution_id="14a81bf5-f81c-4047-b1a1-193b0920de28",
    message="Max retries reached",
    sanitized=False,
)
ABORTED_PARSED = Datagram(
    message_type="/scheduler-task-aborted/",
    outcome="aborted",
    host="sense-node-2",
    task_name="Reload Sales dashboard",
    app_name="Sales dashboard",
    user="CORP\\anna",
    task_id="3f1c9a52-7d0e-4d2b-9a8e-0b7c1e2d4f60",
    app_id="8a2b6c1d-4e3f-4a5b-9c7d-1e2f3a4b5c6d",
    log_timestamp="2024-10-10 15:35:25,412",
    log_level="INFO",
    execution_id="5d0e7c11-2b6a-4f3e-9d1c-0a1b2c3d4e5f",
    message="Execution State Change to Aborting",
    sanitized=False,
)
SUCCESS_PARSED = Datagram(
    message_type="/scheduler-task-success/",
    outcome="succeeded",
    host="sense-node-1",
    task_name="Reload Sales dashboard",
    app_name="Sales dashboard",
    user="INTERNAL\\sa_scheduler",
    task_id="3f1c9a52-7d0e-4d2b-9a8e-0b7c1e2d4f60",
    app_id="8a2b6c1d-4e3f-4a5b-9c7d-1e2f3a4b5c6d",
    log_timestamp="2024-10-10 16:00:03,007",
    log_level="INFO",
    execution_id="0b9e3f2a-6c5d-4e7f-8a9b-1c2d3e4f5a6b",
    message="Execution State Change to FinishedSuccess",
    sanitized=False,
)
DISTRIBUTE_PARSED = Datagram(
    message_type="/scheduler-distribute/",
    outcome="distribute",
    host="sense-node-1",
    task_name="Distribute Sales to cloud",
    app_name="",
    user="INTERNAL\\sa_scheduler",
    task_id="9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    app_id="",
    log_timestamp="2024-10-10 16:05:11,250",
    log_level="INFO",
    execution_id="aa11bb22-cc33-4d44-8e55-ff6677889900",
    message="Exiting execute of Distribute task request.",
    sanitized=False,
)

TASK_ID = "dec2a02a-1680-44ef-8dc2-e2bfb180af87"
APP_ID = "e7af59a0-c243-480d-9571-08727551a66f"
EXEC_ID = "14a81bf5-f81c-4047-b1a1-193b0920de28"
TIMESTAMP = "2021-02-16 09:24:59,099"
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def build(
    *,
    type_: str = "/scheduler-task-failed/",
    host: str = "pro2-win1",
    task: str = "Manually triggered reload of Test failing reloads 2",
    app: str = "Test failing reloads 2",
    user: str = "LAB\\goran",
    task_id: str = TASK_ID,
    app_id: str = APP_ID,
    timestamp: str = TIMESTAMP,
    level: str = "INFO",
    execution_id: str = EXEC_ID,
    message: str = "Max retries reached",
) -> str:
    fields = [type_, host, task, app, user, task_id, app_id, timestamp, level, execution_id]
    return ";".join([*fields, message])


def accepted(data: bytes | str, **limits: int) -> Datagram:
    raw = data.encode() if isinstance(data, str) else data
    result = parse(raw, **limits)
    assert isinstance(result, Datagram), result
    return result


def rejected(data: bytes | str, **limits: int) -> Rejection:
    raw = data.encode() if isinstance(data, str) else data
    result = parse(raw, **limits)
    assert isinstance(result, Rejection), result
    return result


# --- the documented examples and every message type --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (FAILED, FAILED_PARSED),
        (ABORTED, ABORTED_PARSED),
        (SUCCESS, SUCCESS_PARSED),
        (DISTRIBUTE, DISTRIBUTE_PARSED),
    ],
    ids=["failed", "aborted", "success-double-slash", "distribute"],
)
def test_every_documented_example_parses_to_every_field(text: str, expected: Datagram) -> None:
    assert accepted(text) == expected


@pytest.mark.parametrize(
    ("type_", "message_type", "outcome"),
    [
        ("/scheduler-task-failed/", "/scheduler-task-failed/", "failed"),
        ("/scheduler-reload-failed/", "/scheduler-reload-failed/", "failed"),
        ("/scheduler-reloadtask-failed/", "/scheduler-reloadtask-failed/", "failed"),
        ("/scheduler-task-aborted/", "/scheduler-task-aborted/", "aborted"),
        ("/scheduler-reload-aborted/", "/scheduler-reload-aborted/", "aborted"),
        ("/scheduler-task-success/", "/scheduler-task-success/", "succeeded"),
        ("/scheduler-task-success//", "/scheduler-task-success/", "succeeded"),
        ("/scheduler-task-success///", "/scheduler-task-success/", "succeeded"),
        ("/scheduler-reloadtask-success/", "/scheduler-reloadtask-success/", "succeeded"),
        ("/scheduler-distribute/", "/scheduler-distribute/", "distribute"),
        ("/SCHEDULER-TASK-FAILED/", "/scheduler-task-failed/", "failed"),
        ("/Scheduler-Reload-Aborted/", "/scheduler-reload-aborted/", "aborted"),
        ("/SCHEDULER-TASK-SUCCESS//", "/scheduler-task-success/", "succeeded"),
        ("/Scheduler-ReloadTask-Success/", "/scheduler-reloadtask-success/", "succeeded"),
        ("/Scheduler-Distribute/", "/scheduler-distribute/", "distribute"),
        (" /scheduler-task-failed/ ", "/scheduler-task-failed/", "failed"),
    ],
)
def test_every_message_type_is_accepted(type_: str, message_type: str, outcome: Outcome) -> None:
    result = accepted(build(type_=type_))
    expected_kind = {
        "failed": "task_failed",
        "aborted": "task_aborted",
        "succeeded": "task_succeeded",
        "distribute": None,
    }[outcome]
    assert result == Datagram(
        message_type=message_type,
        outcome=outcome,
        host="pro2-win1",
        task_name="Manually triggered reload of Test failing reloads 2",
        app_name="Test failing reloads 2",
        user="LAB\\goran",
        task_id=TASK_ID,
        app_id=APP_ID,
        log_timestamp=TIMESTAMP,
        log_level="INFO",
        execution_id=EXEC_ID,
        message="Max retries reached",
        sanitized=False,
    )
    assert result.kind == expected_kind


def test_the_message_type_table_matches_the_spec() -> None:
    assert set(MESSAGE_TYPES) == {
        "/scheduler-task-failed/",
        "/scheduler-reload-failed/",
        "/scheduler-reloadtask-failed/",
        "/scheduler-task-aborted/",
        "/scheduler-reload-aborted/",
        "/scheduler-task-success/",
        "/scheduler-reloadtask-success/",
        "/scheduler-distribute/",
    }


def test_kind_and_event_id_follow_the_outcome() -> None:
    for parsed, kind in [
        (FAILED_PARSED, "task_failed"),
        (ABORTED_PARSED, "task_aborted"),
        (SUCCESS_PARSED, "task_succeeded"),
    ]:
        assert parsed.kind == kind
        assert parsed.event_id == event_id_for(kind, parsed.execution_id)
    # A distribute datagram's real outcome comes from the QRS later.
    assert DISTRIBUTE_PARSED.kind is None
    assert DISTRIBUTE_PARSED.event_id is None


def test_logged_at_is_the_nodes_local_time() -> None:
    assert FAILED_PARSED.logged_at == datetime(2021, 2, 16, 9, 24, 59, 99000)


@pytest.mark.parametrize(
    "framed",
    [
        FAILED + "\n",
        FAILED + "\r\n",
        "  " + FAILED + " \r\n",
        "\t" + FAILED + "\t",
        "\ufeff" + FAILED,
        "\r\n" + FAILED,
    ],
    ids=["lf", "crlf", "spaces", "tabs", "bom", "leading-crlf"],
)
def test_surrounding_whitespace_and_line_ends_are_framing(framed: str) -> None:
    assert accepted(framed) == FAILED_PARSED


def test_guids_are_matched_case_insensitively_and_lower_cased() -> None:
    result = accepted(
        build(task_id=TASK_ID.upper(), app_id=APP_ID.upper(), execution_id=EXEC_ID.upper())
    )
    assert (result.task_id, result.app_id, result.execution_id) == (TASK_ID, APP_ID, EXEC_ID)
    assert result.event_id == FAILED_PARSED.event_id


# --- semicolons inside names and message ------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "app", "app_id", "message", "expected"),
    [
        # In the message: everything after the execution id is the message.
        ("T", "A", APP_ID, "a;b;c", ("T", "A", "a;b;c")),
        ("T", "A", APP_ID, ";", ("T", "A", ";")),
        ("T", "A", APP_ID, "ends;", ("T", "A", "ends;")),
        ("T", "A", APP_ID, ";starts", ("T", "A", ";starts")),
        ("T", "A", APP_ID, "", ("T", "A", "")),
        # In the task name only: the extra segments go to the task name.
        ("Reload; nightly", "Sales", APP_ID, "m", ("Reload; nightly", "Sales", "m")),
        (";leading", "Sales", APP_ID, "m", (";leading", "Sales", "m")),
        ("trailing;", "Sales", APP_ID, "m", ("trailing;", "Sales", "m")),
        ("a;b;c;d", "Sales", APP_ID, "m;n", ("a;b;c;d", "Sales", "m;n")),
        ("Load;Sales", "Sales", APP_ID, "m", ("Load;Sales", "Sales", "m")),
        # In the app name of a default-named task: the task name ends with the app name.
        ("Reload task of A;B", "A;B", APP_ID, "m", ("Reload task of A;B", "A;B", "m")),
        (
            "Manually triggered reload of Budget;2024;Q1",
            "Budget;2024;Q1",
            APP_ID,
            "x;y",
            ("Manually triggered reload of Budget;2024;Q1", "Budget;2024;Q1", "x;y"),
        ),
        ("Reload of x;x", "x;x", APP_ID, "m", ("Reload of x;x", "x;x", "m")),
        # Both, app name plain: longest app name that ends the task name.
        ("Reload of A;B", "A;B", APP_ID, "m", ("Reload of A;B", "A;B", "m")),
        # A task without an app: the app name is empty, every ';' belongs to the task name.
        ("Distribute;to;cloud", "", "", "m;n", ("Distribute;to;cloud", "", "m;n")),
        ("x;;", "", "", "m", ("x;;", "", "m")),
        # The documented wrong guess: an app name with ';' that does not end the task name.
        # Nothing in the datagram tells it apart; the joined text is kept whole.
        ("Nightly", "Budget;2024", APP_ID, "m", ("Nightly;Budget", "2024", "m")),
    ],
)
def test_semicolons_inside_fields_survive(
    task: str, app: str, app_id: str, message: str, expected: tuple[str, str, str]
) -> None:
    result = accepted(build(task=task, app=app, app_id=app_id, message=message))
    assert (result.task_name, result.app_name, result.message) == expected
    assert (result.host, result.user, result.task_id, result.app_id) == (
        "pro2-win1",
        "LAB\\goran",
        TASK_ID,
        app_id,
    )
    assert (result.log_timestamp, result.log_level, result.execution_id) == (
        TIMESTAMP,
        "INFO",
        EXEC_ID,
    )
    assert result.sanitized is False


def test_a_message_that_looks_like_the_id_fields_does_not_move_them() -> None:
    other = "00000000-0000-4000-8000-000000000000"
    message = f"echo;{other};;2020-01-01 00:00:00,000;WARN;{other};tail"
    result = accepted(build(message=message))
    assert (result.task_id, result.execution_id, result.message) == (TASK_ID, EXEC_ID, message)


def test_a_task_name_that_looks_like_the_id_fields_does_not_move_them() -> None:
    other = "00000000-0000-4000-8000-000000000000"
    task = f"odd;name;fake user;{other};;2020-01-01 00:00:00,000;WARN;{other};name"
    result = accepted(build(task=task, app="Sales"))
    assert (result.task_name, result.app_name, result.user) == (task, "Sales", "LAB\\goran")
    assert (result.task_id, result.execution_id, result.log_timestamp) == (
        TASK_ID,
        EXEC_ID,
        TIMESTAMP,
    )


def test_extra_fields_butler_would_reject_are_kept_in_the_message() -> None:
    result = accepted(FAILED + ";retry 3 of 3;")
    assert result.message == "Max retries reached;retry 3 of 3;"
    assert result.task_name == FAILED_PARSED.task_name


# --- sanitizing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"task": "Re\x00load"}, {"task_name": "Reload"}),
        ({"message": "\x1b[31mred\x1b[0m"}, {"message": "[31mred[0m"}),
        ({"app": "Sales\x85 app"}, {"app_name": "Sales app"}),
        ({"host": "node\t1"}, {"host": "node1"}),
        ({"user": "LAB\\go\x7fran"}, {"user": "LAB\\goran"}),
        ({"message": "line 1\r\nline 2"}, {"message": "line 1line 2"}),
        ({"message": "bell\x07 and \x9f C1"}, {"message": "bell and  C1"}),
        ({"level": "IN\x0bFO"}, {"log_level": "INFO"}),
        # Butler sanitizes before validating, so a control character inside an id is harmless.
        ({"task_id": TASK_ID[:8] + "\x00" + TASK_ID[8:]}, {"task_id": TASK_ID}),
        ({"type_": "/scheduler-\x1btask-failed/"}, {"message_type": "/scheduler-task-failed/"}),
    ],
)
def test_control_characters_are_deleted_and_reported(
    fields: dict[str, str], expected: dict[str, str]
) -> None:
    result = accepted(build(**fields))
    for name, value in expected.items():
        assert getattr(result, name) == value
    assert result.sanitized is True


def test_a_clean_datagram_is_not_reported_as_sanitized() -> None:
    assert accepted(build(task="Tab-free ünïcödé ☃ 𝄞", app="Ünïcödé")).sanitized is False


def test_long_fields_are_truncated_to_500_characters() -> None:
    result = accepted(
        build(task="T" * 600, app="A" * 501, message="m;" * 400, user="L\\" + "u" * 700)
    )
    assert result.task_name == "T" * 500
    assert result.app_name == "A" * 500
    assert result.message == ("m;" * 250)
    assert result.user == "L\\" + "u" * 498
    assert result.sanitized is True


def test_a_field_of_exactly_the_limit_is_not_truncated() -> None:
    result = accepted(build(task="T" * 500))
    assert result.task_name == "T" * 500
    assert result.sanitized is False


def test_the_field_limit_is_configurable_and_never_cuts_ids() -> None:
    result = accepted(FAILED, max_field_length=10)
    assert result == Datagram(
        message_type="/scheduler-task-failed/",
        outcome="failed",
        host="pro2-win1",
        task_name="Manually t",
        app_name="Test faili",
        user="LAB\\goran",
        task_id=TASK_ID,
        app_id=APP_ID,
        log_timestamp=TIMESTAMP,
        log_level="INFO",
        execution_id=EXEC_ID,
        message="Max retrie",
        sanitized=True,
    )


def test_nonsensical_limits_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_field_length"):
        parse(FAILED.encode(), max_field_length=0)
    with pytest.raises(ValueError, match="max_datagram_bytes"):
        parse(FAILED.encode(), max_datagram_bytes=-1)


# --- size and encoding -------------------------------------------------------------------------


def test_a_datagram_over_the_size_limit_is_rejected_before_decoding() -> None:
    padding = 65507 - len(build(message="").encode())
    at_limit = build(message="m" * padding).encode()
    assert len(at_limit) == 65507
    result = accepted(at_limit)
    assert result.message == "m" * 500
    assert result.sanitized is True

    over = rejected(at_limit + b"m")
    assert over.reason == "too_large"
    assert "65508" in over.detail
    assert "65507" in over.detail
    # Checked before decoding: an oversized datagram of garbage is still "too_large".
    assert rejected(b"\xff" * 70000).reason == "too_large"


def test_the_size_limit_is_configurable() -> None:
    assert rejected(FAILED, max_datagram_bytes=100).reason == "too_large"
    assert accepted(FAILED, max_datagram_bytes=len(FAILED.encode())) == FAILED_PARSED


@pytest.mark.parametrize(
    "data",
    [
        b"\xff" + FAILED.encode(),
        FAILED.encode().replace(b"Test failing", b"Test \xc3(ailing"),  # broken 2-byte sequence
        FAILED.encode() + b"\xe2\x82",  # truncated 3-byte sequence at the end
        FAILED.encode().replace(b"goran", b"g\xed\xa0\x80ran"),  # encoded surrogate
        FAILED.encode().replace(b"goran", b"g\xc0\xafran"),  # overlong '/'
        "Max retries reached".encode("utf-16"),
        FAILED.encode("latin-1").replace(b"goran", "göran".encode("latin-1")),
    ],
    ids=["start-byte", "broken-2-byte", "truncated", "surrogate", "overlong", "utf16", "latin1"],
)
def test_invalid_utf8_is_rejected_not_replaced(data: bytes) -> None:
    result = rejected(data)
    assert result.reason == "not_utf8"
    assert "at byte" in result.detail


# --- field count, ids, timestamp, type ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        FAILED.rsplit(";", 1)[0],  # 10 fields: the message is missing
        "/scheduler-task-failed/",
        "/scheduler-task-failed/;pro2-win1",
        "/scheduler-distribute/;;;;;;;;;",
    ],
    ids=["ten", "one", "two", "distribute-ten"],
)
def test_too_few_fields_are_rejected(text: str) -> None:
    result = rejected(text)
    assert result.reason == "field_count"
    assert result.message_type in MESSAGE_TYPES


def test_a_field_too_many_among_the_fixed_fields_is_rejected() -> None:
    # An extra segment between the level and the execution id breaks the fixed layout.
    text = build(level="INFO;EXTRA")
    assert rejected(text).reason == "bad_execution_id"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"task_id": "dec2a02a-1680-44ef-8dc2-e2bfb180af8"}, "bad_task_id"),
        ({"task_id": "not-a-guid"}, "bad_task_id"),
        ({"task_id": ""}, "bad_task_id"),
        ({"task_id": "{" + TASK_ID + "}"}, "bad_task_id"),
        ({"task_id": TASK_ID.replace("-", "")}, "bad_task_id"),
        ({"task_id": "gec2a02a-1680-44ef-8dc2-e2bfb180af87"}, "bad_task_id"),
        ({"app_id": "app-1"}, "bad_app_id"),
        ({"app_id": " " + APP_ID}, "bad_app_id"),
        ({"app_id": APP_ID + "0"}, "bad_app_id"),
        ({"execution_id": "exec-123"}, "bad_execution_id"),
        ({"execution_id": ""}, "bad_execution_id"),
        ({"execution_id": EXEC_ID[:-1] + "z"}, "bad_execution_id"),
        # With ';' in the task name, the reason is still the broken field, not a shifted one.
        ({"task": "a;b;c", "execution_id": "exec-123"}, "bad_execution_id"),
        ({"task": "a;b;c", "app_id": "app-1"}, "bad_app_id"),
        ({"timestamp": "2021-02-16 09:24:59.099"}, "bad_timestamp"),
        ({"timestamp": "2021-02-16T09:24:59,099"}, "bad_timestamp"),
        ({"timestamp": "2021-02-16 09:24:59"}, "bad_timestamp"),
        ({"timestamp": "2021-13-16 09:24:59,099"}, "bad_timestamp"),
        ({"timestamp": "2021-02-30 09:24:59,099"}, "bad_timestamp"),
        ({"timestamp": "2021-02-16 24:00:00,000"}, "bad_timestamp"),
        ({"timestamp": "16/02/2021 09:24:59"}, "bad_timestamp"),
        ({"timestamp": ""}, "bad_timestamp"),
    ],
)
def test_malformed_fixed_fields_are_rejected_with_their_reason(
    fields: dict[str, str], reason: RejectionReason
) -> None:
    result = rejected(build(**fields))
    assert result.reason == reason
    assert result.message_type == "/scheduler-task-failed/"


@pytest.mark.parametrize(
    "type_",
    [
        "/scheduler-task-exploded/",
        "scheduler-task-failed",
        "/scheduler-task-failed",
        "scheduler-task-failed/",
        "//scheduler-task-failed/",
        "/scheduler-task-failed/x",
        "/scheduler-task-failed/ /",
        "",
        "Max retries reached",
    ],
)
def test_an_unknown_message_type_is_rejected(type_: str) -> None:
    result = rejected(build(type_=type_))
    assert result.reason == "unknown_type"
    assert result.message_type is None


def test_an_empty_datagram_is_an_unknown_type() -> None:
    assert rejected(b"").reason == "unknown_type"
    assert rejected(b" \r\n").reason == "unknown_type"


ENGINE = r"/engine-reload-failed/;sense-node-1;e7af59a0-c243-480d-9571-08727551a66f;5d0e7c11-2b6a-4f3e-9d1c-0a1b2c3d4e5f;LAB;goran;2021-02-16 09:24:59,099;ERROR;Reload failed"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (ENGINE, "engine_ignored"),
        (ENGINE.replace("e7af59a0-c243-480d-9571-08727551a66f", ""), "engine_ignored"),
        (
            "/ENGINE-RELOAD-FAILED//" + ENGINE.removeprefix("/engine-reload-failed/"),
            "engine_ignored",
        ),
        (ENGINE.replace("e7af59a0-c243-480d-9571-08727551a66f", "app-1"), "bad_app_id"),
        (ENGINE.rsplit(";", 1)[0], "field_count"),  # 8 fields
        (ENGINE + ";extra", "field_count"),  # 10 fields
        ("/engine-reload-failed/;a;b;c;d;e;f;g", "field_count"),  # Butler's own test
    ],
    ids=["valid", "empty-app-id", "case-and-slashes", "bad-app-id", "eight", "ten", "butler-test"],
)
def test_engine_reload_failures_are_validated_then_ignored(text: str, reason: str) -> None:
    result = rejected(text)
    assert result.reason == reason
    assert result.message_type == "/engine-reload-failed/"


# --- rejection details -------------------------------------------------------------------------

MARK = "Ж"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (build(task=MARK * 5000, task_id=MARK * 50), "bad_task_id"),
        (build(task=MARK * 5000, app_id=MARK * 50), "bad_app_id"),
        (build(task=MARK * 5000, timestamp=MARK * 50), "bad_timestamp"),
        (build(task=MARK * 5000, execution_id=MARK * 50), "bad_execution_id"),
        (build(type_=MARK * 5000), "unknown_type"),
        ("/scheduler-task-failed/;" + MARK * 5000, "field_count"),
        ("/engine-reload-failed/;" + MARK * 5000, "field_count"),
        (
            "/engine-reload-failed/;" + ";".join([MARK * 50] + [MARK * 1000] * 6 + ["x"]),
            "bad_app_id",
        ),
        (
            "/engine-reload-failed/;" + ";".join([MARK * 1000, "", *[MARK * 1000] * 6]),
            "engine_ignored",
        ),
    ],
)
def test_a_rejection_detail_quotes_at_most_200_characters(data: str, reason: str) -> None:
    result = rejected(data)
    assert result.reason == reason
    assert result.reason in REJECTION_REASONS
    assert 0 < result.detail.count(MARK) <= 200
    assert "\n" not in result.detail


def test_a_not_utf8_detail_quotes_at_most_200_bytes() -> None:
    result = rejected(b"Z" * 5000 + b"\xff" + b"Z" * 5000)
    assert result.reason == "not_utf8"
    assert "at byte 5000" in result.detail
    assert result.detail.count("Z") <= 200


def test_a_detail_never_carries_control_characters() -> None:
    result = rejected(build(task_id="\x1b[31mbad\x1b[0m"))
    assert result.reason == "bad_task_id"
    assert CONTROL.search(result.detail) is None


# --- properties --------------------------------------------------------------------------------

PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))  # no C0, DEL, C1, surrogates
NO_SEMICOLON = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=";")
names_with_semicolons = st.text(PRINTABLE, max_size=40)
plain_names = st.text(NO_SEMICOLON, max_size=40)
types = st.tuples(st.sampled_from(sorted(MESSAGE_TYPES)), st.integers(1, 3), st.booleans())


def _guid(upper: bool, value: UUID) -> str:
    text = str(value)
    return text.upper() if upper else text


guids = st.builds(_guid, st.booleans(), st.uuids())


def _log4net(value: datetime) -> str:
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d},{value.microsecond // 1000:03d}"
    )


timestamps = st.datetimes().map(_log4net)


@st.composite
def well_formed(
    draw: st.DrawFn,
    task: st.SearchStrategy[str] = names_with_semicolons,
    app: st.SearchStrategy[str] = names_with_semicolons,
    with_app: st.SearchStrategy[bool] | None = None,
) -> tuple[str, dict[str, str]]:
    """A datagram the scheduler could send, and the fields it must parse to."""
    type_, slashes, upper = draw(types)
    sent_type = type_.rstrip("/") + "/" * slashes
    has_app = draw(with_app if with_app is not None else st.booleans())
    app_id = draw(guids) if has_app else ""
    fields = {
        "host": draw(plain_names),
        "task_name": draw(task),
        "app_name": draw(app) if has_app else "",
        "user": draw(plain_names) + "\\" + draw(plain_names),
        "task_id": draw(guids),
        "app_id": app_id,
        "log_timestamp": draw(timestamps),
        "log_level": draw(plain_names),
        "execution_id": draw(guids),
        # The datagram's trailing spaces are framing: a message never ends with one here.
        "message": draw(names_with_semicolons).rstrip(" "),
    }
    text = build(
        type_=sent_type.upper() if upper else sent_type,
        host=fields["host"],
        task=fields["task_name"],
        app=fields["app_name"],
        user=fields["user"],
        task_id=fields["task_id"],
        app_id=fields["app_id"],
        timestamp=fields["log_timestamp"],
        level=fields["log_level"],
        execution_id=fields["execution_id"],
        message=fields["message"],
    )
    expected = {
        **fields,
        "message_type": type_,
        "task_id": fields["task_id"].lower(),
        "app_id": fields["app_id"].lower(),
        "execution_id": fields["execution_id"].lower(),
    }
    return text, expected


def _check(result: Datagram, expected: dict[str, str], *, split_exact: bool) -> None:
    assert result.sanitized is False
    assert result.outcome == MESSAGE_TYPES[expected["message_type"]]
    for name, value in expected.items():
        if name not in ("task_name", "app_name"):
            assert getattr(result, name) == value, name
    joined = f"{expected['task_name']};{expected['app_name']}"
    assert f"{result.task_name};{result.app_name}" == joined
    if split_exact:
        assert (result.task_name, result.app_name) == (expected["task_name"], expected["app_name"])


@settings(max_examples=300, deadline=None)
@given(well_formed())
def test_every_well_formed_datagram_keeps_every_field(case: tuple[str, dict[str, str]]) -> None:
    # Names may both contain ';': every field is exact, and the task/app boundary is one of
    # the ';' in the joined text (exact when the split is unambiguous, see the tests below).
    text, expected = case
    _check(
        accepted(text),
        expected,
        split_exact=";" not in expected["app_name"] + expected["task_name"],
    )


@settings(max_examples=300, deadline=None)
@given(well_formed(app=plain_names, with_app=st.just(True)))
def test_app_names_without_semicolons_split_exactly(case: tuple[str, dict[str, str]]) -> None:
    # Exact as long as the app name is not made of the task name's characters only (then
    # another split could look like a default "Reload of <app>" name).
    text, expected = case
    assume(not set(expected["app_name"]) <= set(expected["task_name"]))
    _check(accepted(text), expected, split_exact=True)


prefixes = st.sampled_from(["Reload task of ", "Manually triggered reload of ", "Reload of ", ""])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_default_named_tasks_split_exactly(data: st.DataObject) -> None:
    app = data.draw(st.text(PRINTABLE, min_size=1, max_size=40))
    prefix = data.draw(prefixes)
    text, expected = data.draw(
        well_formed(task=st.just(prefix + app), app=st.just(app), with_app=st.just(True))
    )
    _check(accepted(text), expected, split_exact=True)


@settings(max_examples=300, deadline=None)
@given(well_formed(with_app=st.just(False)))
def test_tasks_without_an_app_split_exactly(case: tuple[str, dict[str, str]]) -> None:
    text, expected = case
    _check(accepted(text), expected, split_exact=True)


def _assert_documented_outcome(data: bytes, max_field_length: int = 500) -> None:
    result = parse(data, max_field_length=max_field_length)
    if isinstance(result, Rejection):
        assert result.reason in REJECTION_REASONS
        assert result.detail
        assert "\n" not in result.detail
        return
    assert isinstance(result, Datagram)
    assert result.message_type in MESSAGE_TYPES
    assert result.outcome == MESSAGE_TYPES[result.message_type]
    assert GUID.fullmatch(result.task_id)
    assert GUID.fullmatch(result.execution_id)
    assert result.app_id == "" or GUID.fullmatch(result.app_id)
    assert isinstance(result.logged_at, datetime)
    for text in (
        result.host,
        result.task_name,
        result.app_name,
        result.user,
        result.log_level,
        result.message,
    ):
        assert len(text) <= max_field_length
        assert CONTROL.search(text) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([1, 10, 500]))
def test_no_byte_string_makes_parse_raise(data: bytes, max_field_length: int) -> None:
    _assert_documented_outcome(data, max_field_length)


_mutations = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 40)),
    st.tuples(st.just("replace"), st.integers(0, 10_000), st.binary(min_size=1, max_size=4)),
    st.tuples(
        st.just("insert"),
        st.integers(0, 10_000),
        st.sampled_from([b";", b";;", b"\\", b"\x00", b"\xc3", b"\r\n"]),
    ),
    st.tuples(st.just("duplicate"), st.integers(0, 10_000), st.integers(1, 60)),
)


def _mutate(data: bytes, mutation: tuple[str, int, bytes | int]) -> bytes:
    action, position, argument = mutation
    at = position % (len(data) + 1)
    if action == "insert" and isinstance(argument, bytes):
        return data[:at] + argument + data[at:]
    if action == "replace" and isinstance(argument, bytes):
        return data[:at] + argument + data[at + len(argument) :]
    if action == "delete" and isinstance(argument, int):
        return data[:at] + data[at + argument :]
    assert isinstance(argument, int)
    return data[:at] + data[at : at + argument] + data[at:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        well_formed().map(lambda case: case[0].encode()),
        st.sampled_from([FAILED, ABORTED, SUCCESS, DISTRIBUTE, ENGINE]).map(str.encode),
    ),
    st.lists(_mutations, min_size=1, max_size=6),
    st.sampled_from([1, 10, 500]),
)
def test_no_mutation_of_a_valid_datagram_makes_parse_raise(
    data: bytes, mutations: list[tuple[str, int, bytes | int]], max_field_length: int
) -> None:
    for mutation in mutations:
        data = _mutate(data, mutation)
    _assert_documented_outcome(data, max_field_length)


# --- hostile datagrams: parsing stays linear in the datagram's size ---------------------------


def literal_split(middle: list[str], app_id: str) -> tuple[str, str]:
    """The module docstring's task/app rule read literally: try every split, left to right.

    Quadratic in the number of ';' (this was the parser until it took seconds for one datagram);
    here it is the reference the parser must agree with.
    """
    if len(middle) == 2 or app_id == "":
        return ";".join(middle[:-1]), middle[-1]
    for j in range(1, len(middle)):
        task_name, app_name = ";".join(middle[:j]), ";".join(middle[j:])
        if app_name and task_name.endswith(app_name):
            return task_name, app_name
    return ";".join(middle[:-1]), middle[-1]


# Few, overlapping pieces, so that task names ending with their app name are common.
pieces = st.sampled_from(["", "a", "b", "ab", "ba", "aa", "a b"])


@settings(max_examples=1000, deadline=None)
@given(st.lists(pieces, min_size=2, max_size=40), st.booleans())
def test_the_task_and_app_split_is_the_literal_rule(middle: list[str], has_app: bool) -> None:
    app_id = APP_ID if has_app else ""
    text = build(task=";".join(middle[:-1]), app=middle[-1], app_id=app_id)
    result = accepted(text, max_field_length=1000)
    assert (result.task_name, result.app_name) == literal_split(middle, app_id)


class CountingSegments(list[str]):
    """Segments that count how many of them the code under test is handed."""

    handed = 0

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        self.handed += len(item) if isinstance(index, slice) else 1
        return item

    def __iter__(self) -> Iterator[str]:
        self.handed += len(self)
        return super().__iter__()

    def __reversed__(self) -> Iterator[str]:
        self.handed += len(self)
        return super().__reversed__()


@pytest.mark.parametrize(
    "middle",
    [
        [""] * 30_001 + ["Sales"],  # the reported datagram: 30,000 ';' in the task name
        [""] * 30_001,
        ["x"] * 20_000,
        ["a"] * 20_000 + ["b"],
        ["ab", "a"] * 10_000,
    ],
    ids=["semicolons", "only-semicolons", "uniform", "almost-uniform", "periodic"],
)
def test_splitting_a_hostile_task_name_looks_at_each_segment_a_few_times(
    middle: list[str],
) -> None:
    # Work proportional to the datagram, counted rather than timed: trying every split (the
    # literal rule) hands out about n * n / 2 segments for n segments, here some 10^8.
    segments = CountingSegments(middle)
    task_name, app_name = datagram_module._split_task_and_app(segments, APP_ID)
    assert f"{task_name};{app_name}" == ";".join(middle)
    assert segments.handed <= 6 * len(middle)


def _at_the_size_cap(piece: str, app: str) -> str:
    """A datagram as close to the size cap as a task name of ``piece;piece;…`` makes it."""
    room = MAX_DATAGRAM_BYTES - len(build(task="", app=app, message="").encode())
    return build(task=";".join([piece] * ((room + 1) // (len(piece) + 1))), app=app, message="")


@pytest.mark.parametrize(
    ("task", "app", "longest"),
    [
        # No split can end a task name of ';' with an app name holding "Sales": the last segment.
        ("", "Sales", False),
        # Every split can: the longest app name is half the segments.
        ("", "", True),
        ("x", "x", True),
    ],
    ids=["semicolons", "only-semicolons", "uniform"],
)
def test_hostile_datagrams_at_the_size_cap_parse_by_the_rule(
    task: str, app: str, longest: bool
) -> None:
    text = _at_the_size_cap(task, app)
    assert MAX_DATAGRAM_BYTES - 2 <= len(text.encode()) <= MAX_DATAGRAM_BYTES
    result = accepted(text, max_field_length=MAX_DATAGRAM_BYTES)
    middle = text.split(";")[2:-7]
    k = len(middle) // 2 if longest else 1
    assert (result.task_name, result.app_name) == (";".join(middle[:-k]), ";".join(middle[-k:]))
    assert (result.user, result.execution_id, result.log_timestamp) == (
        "LAB\\goran",
        EXEC_ID,
        TIMESTAMP,
    )


# --- timestamps: shape, real time, and the clock's plausible range ----------------------------


def _strptime_accepts(value: str) -> bool:
    try:
        datetime.strptime(value, "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return False
    return True


digits = st.text(st.sampled_from("0123456789"), min_size=2, max_size=2)
timestamp_shapes = st.builds(
    "{}{}-{}-{} {}:{}:{},{}{}".format,
    digits,
    digits,
    digits,
    digits,
    digits,
    digits,
    digits,
    digits,
    st.sampled_from("0123456789"),
)


@settings(max_examples=1000, deadline=None)
@given(timestamp_shapes)
def test_a_timestamp_is_valid_exactly_when_log4net_could_have_written_it(value: str) -> None:
    result = parse(build(timestamp=value).encode())
    if _strptime_accepts(value):
        assert isinstance(result, Datagram), result
        assert result.log_timestamp == value
    else:
        assert isinstance(result, Rejection)
        assert result.reason == "bad_timestamp"


@pytest.mark.parametrize(
    "timestamp",
    [
        "0001-01-01 00:00:00,000",  # the poison datagram: enrichment raised "year 0 is out of range"
        "1970-01-01 00:00:00,000",
        "1999-12-31 23:59:59,999",
        "2100-01-01 00:00:00,000",
        "9999-12-31 23:59:59,999",
    ],
)
def test_a_timestamp_outside_the_clocks_range_is_accepted_with_the_reason(timestamp: str) -> None:
    result = accepted(build(timestamp=timestamp))
    assert result.log_timestamp == timestamp  # the alert shows what the node's clock said
    assert timestamp in result.clock_problem
    assert "received" in result.clock_problem
    assert result.sanitized is False
    assert result.execution_id == EXEC_ID


@pytest.mark.parametrize(
    "timestamp",
    ["2000-01-01 00:00:00,000", TIMESTAMP, "2099-12-31 23:59:59,999"],
)
def test_a_timestamp_inside_the_range_is_the_time_of_the_event(timestamp: str) -> None:
    result = accepted(build(timestamp=timestamp))
    assert result.clock_problem == ""
    assert EARLIEST_TIMESTAMP <= result.logged_at <= LATEST_TIMESTAMP
