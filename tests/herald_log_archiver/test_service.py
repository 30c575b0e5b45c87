"""The log archiver as it runs: a real Mosquitto, events in, files on disk, receipts and dead
letters out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date
from pathlib import Path

import msgspec
from prometheus_client import REGISTRY

from herald_log_archiver.service import build
from herald_log_archiver.settings import LogArchiverSettings
from herald_shared import samples
from herald_shared.events import Event
from herald_shared.settings import BrokerSettings, DeliverySettings
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.subscribers import ServiceUnderTest, publish_events

SERVICE = "log-archiver"

FAILED_FILE = Path(
    "2021-02-16/2021-02-16_09-24-59"
    "_appId=e7af59a0-c243-480d-9571-08727551a66f"
    "_taskId=dec2a02a-1680-44ef-8dc2-e2bfb180af87.log"
)
ABORTED_FILE = Path(
    "2024-10-10/2024-10-10_15-35-25"
    "_appId=e7af59a0-c243-480d-9571-08727551a66f"
    "_taskId=dec2a02a-1680-44ef-8dc2-e2bfb180af87.log"
)
# Where sample_succeeded() would go if anything ever archived it.
SUCCEEDED_FILE = Path(
    "2024-10-10/2024-10-10_16-00-03"
    "_appId=e7af59a0-c243-480d-9571-08727551a66f"
    "_taskId=dec2a02a-1680-44ef-8dc2-e2bfb180af87.log"
)


def _expected_content() -> bytes:
    script_log = samples.sample_failed().script_log
    assert script_log is not None
    assert script_log.full_text is not None
    content = "\n".join(script_log.full_text.split("\r\n")).encode()
    assert content.startswith(b"20210216T092440.000+0100 Execution started.\n")
    assert content.endswith(b"\n20210216T092459.000+0100 Execution finished.")
    assert b"\r" not in content
    return content


# --- helpers -------------------------------------------------------------------------------


def _settings(
    tmp_path: Path,
    *,
    directory: Path | None = None,
    include_aborted: bool = False,
    retention_days: int = 0,
    deadline: float = 3600.0,
) -> LogArchiverSettings:
    return LogArchiverSettings(
        directory=directory if directory is not None else tmp_path / "logs",
        state_dir=tmp_path / "state",
        retention_days=retention_days,
        include_aborted=include_aborted,
        delivery=DeliverySettings(
            initial_backoff=0.05, max_backoff=0.2, deadline=deadline, shutdown_grace=2.0
        ),
    )


def _isolated(broker_settings: BrokerSettings) -> BrokerSettings:
    # The client id is herald-log-archiver-<instance> with a persistent session: an instance of
    # its own keeps one test's unacknowledged messages from reaching the next test's service.
    return broker_settings.model_copy(update={"instance": broker_settings.topic_prefix})


_service = ServiceUnderTest(build, SERVICE)
_running, _receipts, _dead_letters = _service.running, _service.receipts, _service.dead_letters
_publish = publish_events


def _receipt_for(
    prefix: str, event: Event, outcome: str | None = None
) -> Callable[[list[Seen]], bool]:
    def found(seen: list[Seen]) -> bool:
        return any(
            receipt.event_id == event.event_id and outcome in (None, receipt.outcome)
            for receipt in _receipts(seen, prefix)
        )

    return found


def _attempts(result: str) -> float:
    labels = {"service": SERVICE, "destination": "archive", "result": result}
    return REGISTRY.get_sample_value("herald_delivery_attempts_total", labels) or 0.0


def _received(outcome: str) -> float:
    labels = {"service": SERVICE, "outcome": outcome}
    return REGISTRY.get_sample_value("herald_events_received_total", labels) or 0.0


async def _eventually(condition: Callable[[], bool], within: float = 20.0) -> None:
    async def until() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(until(), within)


def _files(directory: Path) -> list[Path]:
    if not directory.exists():
        return []
    return sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())


# --- tests ---------------------------------------------------------------------------------


async def test_a_failed_reload_is_archived_under_butlers_name_and_a_receipt_names_the_file(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    settings = _settings(tmp_path)
    failed = samples.sample_failed()
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, _isolated(broker_settings)),
    ):
        await _publish(mosquitto, prefix, failed)
        await observer.wait_for(_receipt_for(prefix, failed))

    assert _files(settings.directory) == [FAILED_FILE]
    assert (settings.directory / FAILED_FILE).read_bytes() == _expected_content()
    [receipt] = _receipts(observer.seen, prefix)
    assert receipt.outcome == "delivered"
    assert receipt.service == SERVICE
    assert receipt.destination == "archive"
    assert receipt.kind == "task_failed"
    assert receipt.task_id == failed.task.id
    assert receipt.attempts == 1
    assert receipt.detail == str(settings.directory / FAILED_FILE)
    assert _dead_letters(observer.seen, prefix) == []


async def test_aborted_reloads_are_not_archived_by_default_and_successes_never(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    settings = _settings(tmp_path)
    aborted, succeeded, failed = (
        samples.sample_aborted(),
        samples.sample_succeeded(),
        samples.sample_failed(),
    )
    stored = _received("stored")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, _isolated(broker_settings)),
    ):
        await _publish(mosquitto, prefix, aborted, succeeded, failed)
        # The failure was published last: once it is archived, the others have been taken too.
        await observer.wait_for(_receipt_for(prefix, failed, "delivered"))
        await _eventually(lambda: _received("stored") >= stored + 3)

    assert _files(settings.directory) == [FAILED_FILE]
    assert [receipt.event_id for receipt in _receipts(observer.seen, prefix)] == [failed.event_id]


async def test_aborted_reloads_are_archived_with_include_aborted_but_successes_still_not(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    settings = _settings(tmp_path, include_aborted=True)
    aborted, succeeded, failed = (
        samples.sample_aborted(),
        samples.sample_succeeded(),
        samples.sample_failed(),
    )
    stored = _received("stored")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, _isolated(broker_settings)),
    ):
        await _publish(mosquitto, prefix, aborted, succeeded, failed)
        await observer.wait_for(
            lambda seen: (
                _receipt_for(prefix, aborted, "delivered")(seen)
                and _receipt_for(prefix, failed, "delivered")(seen)
            )
        )
        await _eventually(lambda: _received("stored") >= stored + 3)

    assert _files(settings.directory) == [FAILED_FILE, ABORTED_FILE]
    assert not (settings.directory / SUCCEEDED_FILE).exists()
    assert (settings.directory / ABORTED_FILE).read_bytes() == _expected_content()
    receipts = _receipts(observer.seen, prefix)
    assert sorted(receipt.kind for receipt in receipts) == ["task_aborted", "task_failed"]
    assert succeeded.event_id not in {receipt.event_id for receipt in receipts}


async def test_a_redelivered_event_is_written_once_with_one_receipt(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    settings = _settings(tmp_path)
    failed = samples.sample_failed()
    ok, duplicates = _attempts("ok"), _received("duplicate")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, _isolated(broker_settings)) as service,
    ):
        await _publish(mosquitto, prefix, failed)
        await observer.wait_for(_receipt_for(prefix, failed, "delivered"))
        written = (settings.directory / FAILED_FILE).stat()

        await _publish(mosquitto, prefix, failed)  # what the broker does after a lost PUBACK
        await _eventually(lambda: _received("duplicate") >= duplicates + 1)
        # Give a wrongly scheduled second delivery the time to show itself before looking.
        await asyncio.sleep(0.5)

        assert service.runner.ledger.state_of(failed.event_id, "archive") == "delivered"

    assert _received("duplicate") == duplicates + 1
    assert _attempts("ok") == ok + 1  # one write
    assert _files(settings.directory) == [FAILED_FILE]
    rewritten = (settings.directory / FAILED_FILE).stat()
    # write_atomically renames a new file into place: the same inode means no second write.
    assert (rewritten.st_ino, rewritten.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert len(_receipts(observer.seen, prefix)) == 1


async def test_an_event_without_a_script_log_is_skipped_with_the_reason(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    settings = _settings(tmp_path)
    partial = samples.sample_partial()
    assert partial.script_log is None
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, _isolated(broker_settings)),
    ):
        await _publish(mosquitto, prefix, partial)
        await observer.wait_for(_receipt_for(prefix, partial))

    [receipt] = _receipts(observer.seen, prefix)
    assert receipt.outcome == "skipped"
    assert receipt.event_id == partial.event_id
    assert receipt.detail is not None
    assert "no script log" in receipt.detail
    assert "QRS task lookup failed: connection refused after 3 attempts" in receipt.detail
    assert _files(settings.directory) == []
    assert _dead_letters(observer.seen, prefix) == []


async def test_an_event_with_an_empty_script_log_is_skipped_too(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    settings = _settings(tmp_path)
    failed = samples.sample_failed()
    assert failed.script_log is not None
    empty = msgspec.structs.replace(
        failed, script_log=msgspec.structs.replace(failed.script_log, full_text=None)
    )
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, _isolated(broker_settings)),
    ):
        await _publish(mosquitto, prefix, empty)
        await observer.wait_for(_receipt_for(prefix, empty))

    [receipt] = _receipts(observer.seen, prefix)
    assert receipt.outcome == "skipped"
    assert receipt.detail is not None
    assert "no script log" in receipt.detail
    assert _files(settings.directory) == []


async def test_an_unwritable_directory_is_retried_and_counted_until_it_is_writable(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the archive's parent folder should be\n")
    settings = _settings(tmp_path, directory=blocker / "logs")
    failed = samples.sample_failed()
    transient, ok = _attempts("transient_error"), _attempts("ok")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, _isolated(broker_settings)) as service,
    ):
        await _publish(mosquitto, prefix, failed)
        await _eventually(lambda: _attempts("transient_error") >= transient + 3)

        # Still running and still trying: nothing ended the delivery, nothing was written.
        assert service.readiness()[0]
        assert service.runner.ledger.state_of(failed.event_id, "archive") == "pending"
        assert _receipts(observer.seen, prefix) == []
        assert _dead_letters(observer.seen, prefix) == []

        blocker.unlink()  # the disk is back
        await observer.wait_for(_receipt_for(prefix, failed))

    [receipt] = _receipts(observer.seen, prefix)
    assert receipt.outcome == "delivered"
    assert receipt.detail == str(settings.directory / FAILED_FILE)
    assert (settings.directory / FAILED_FILE).read_bytes() == _expected_content()
    assert _files(settings.directory) == [FAILED_FILE]
    # Every attempt was counted: the failed ones as transient errors, the last one as ok.
    assert _attempts("ok") == ok + 1
    assert _attempts("transient_error") - transient == receipt.attempts - 1
    assert receipt.attempts >= 4


async def test_a_delivery_past_its_deadline_is_dead_lettered_with_the_event(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    blocker = tmp_path / "blocker"
    blocker.write_text("never removed\n")
    settings = _settings(tmp_path, directory=blocker / "logs", deadline=1.0)
    failed = samples.sample_failed()
    transient = _attempts("transient_error")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, _isolated(broker_settings)) as service,
    ):
        await _publish(mosquitto, prefix, failed)
        await observer.wait_for(
            lambda seen: bool(_dead_letters(seen, prefix)) and _receipt_for(prefix, failed)(seen)
        )
        assert service.readiness()[0]

    [letter] = _dead_letters(observer.seen, prefix)
    assert letter.service == SERVICE
    assert letter.destination == "archive"
    assert letter.event == failed  # the full event, ready to be replayed
    assert letter.attempts >= 2
    assert letter.reason.startswith(f"gave up after {letter.attempts} attempts")
    assert f"cannot write {settings.directory / FAILED_FILE}" in letter.reason
    assert "Not a directory" in letter.reason
    [receipt] = _receipts(observer.seen, prefix)
    assert receipt.outcome == "dead_lettered"
    assert receipt.detail == letter.reason
    assert receipt.attempts == letter.attempts
    assert _attempts("transient_error") - transient == letter.attempts
    assert blocker.read_text() == "never removed\n"


async def test_the_retention_removes_expired_day_folders_when_the_service_starts(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, retention_days=30)
    today = date.today().isoformat()
    for day in ["2001-01-01", today]:
        (settings.directory / day).mkdir(parents=True)
        (settings.directory / day / "x.log").write_text("log\n")
    (settings.directory / "README.txt").write_text("kept\n")
    async with _running(settings, _isolated(broker_settings)):
        await _eventually(lambda: not (settings.directory / "2001-01-01").exists())

    assert _files(settings.directory) == sorted([Path(today) / "x.log", Path("README.txt")])
