"""Enrichment against the Qlik Sense stand-in: HTTPS with client certificates, real QRS shapes,
and a QRS that is slow, failing or gone."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from herald_ingest.poison import retry_delay
from herald_ingest.qrs import QrsClient
from herald_ingest.service import IngestConfig, IngestService, configure
from herald_ingest.settings import IngestSettings, QlikSettings
from herald_qlik_sim import QlikSim, emitter
from herald_qlik_sim import data as sim_data
from herald_qlik_sim.model import Status
from herald_shared import events, topics
from herald_shared.config import ConfigDocument
from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.ports import free_port
from herald_testkit.services import started
from herald_testkit.waiting import sample, wait_until


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[QlikSim]:
    async with QlikSim(tmp_path / "certs") as running:
        yield running


def qlik_for(sim: QlikSim, **qrs: Any) -> QlikSettings:
    return QlikSettings.model_validate(
        {
            "qrs": {
                "url": sim.origin,
                "client_cert": str(sim.certs.client),
                "client_key": str(sim.certs.client_key),
                "ca_cert": str(sim.certs.root),
                "script_log_retry_delay": 0.1,
                **qrs,
            },
            "qmc_url": "https://sense.example.com/qmc",
            "hub_url": "https://sense.example.com/hub",
            "app_base_url": "https://sense.example.com/sense/app/",
            "script_log": {"head_lines": 5, "tail_lines": 5},
        }
    )


@contextlib.asynccontextmanager
async def ingest_for(
    broker: BrokerSettings, tmp_path: Path, qlik: QlikSettings, **ingest: Any
) -> AsyncIterator[IngestService]:
    settings = IngestSettings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "udp": {"host": "127.0.0.1", "port": 0},
            # These tests are about what a datagram gives; the sweep has test_reconcile.py.
            "reconcile": {"enabled": False},
            **ingest,
        }
    )
    async with started(IngestService(IngestConfig(ingest=settings, qlik=qlik), broker)) as service:
        yield service


async def published_for(
    payload: bytes,
    qlik: QlikSettings,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker: BrokerSettings,
    tmp_path: Path,
) -> list[Seen]:
    """What ingest publishes for one datagram sent to it as the scheduler would."""
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(broker, tmp_path, qlik) as ingest,
    ):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(payload, ("127.0.0.1", ingest.udp_port))
        await seen.wait_for(lambda s: len(s) == 1)
    return seen.seen


def distribute_datagram(sim: QlikSim) -> str:
    """The scheduler's datagram about the sim's distribute task: only the QRS knows how it ended."""
    task = sim.task("succeeded", sim_data.TASK_DISTRIBUTE_ID)
    return (
        emitter.datagram("succeeded", task, sim.site.app_of(task))
        .text.replace("/scheduler-task-success//", "/scheduler-distribute/")
        .replace(
            "Execution State Change to FinishedSuccess",
            "Exiting execute of Distribute task request.",
        )
    )


def send_text(ingest: IngestService, text: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(text.encode(), ("127.0.0.1", ingest.udp_port))


def only_event(seen: list[Seen]) -> events.Event:
    [message] = [m for m in seen if "/v1/events/" in m.topic]
    return events.decode(message.payload)


async def test_a_failed_reload_is_enriched_with_everything_the_qrs_knows(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    sim.faults.script_log_not_ready = 1  # asked too soon once, as on a busy site
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(broker_settings, tmp_path, qlik_for(sim)) as ingest,
    ):
        [emission] = await sim.emit("failed", to=("127.0.0.1", ingest.udp_port))
        await seen.wait_for(lambda s: len(s) == 1)
    event = only_event(seen.seen)
    assert isinstance(event, events.TaskFailed)
    assert event.enrichment.status == "complete", event.enrichment.reasons
    assert event.task.id == sim_data.TASK_FAILED_ID
    assert event.task.name == "Reload Sales dashboard"
    assert event.task.type == "reload"
    assert event.task.tags
    assert event.task.custom_properties["Butler_FailedAlertEnableEmail"] == ["Yes"]
    assert len(event.task.custom_properties["Butler_FailedAlertSendToEmail"]) == 2
    app = event.app
    assert app is not None
    assert app.id == sim_data.APP_SALES_ID
    assert app.stream is not None
    assert app.stream.name == "Finance"
    assert app.owner is not None
    assert app.owner.id == sim_data.USER_ANNA_ID
    assert len(app.owner.emails) == 2
    assert all("@" in address for address in app.owner.emails)
    execution = event.execution
    assert execution.id == emission.datagram.execution_id
    assert execution.status_code == 8
    assert execution.status == "FinishedFail"
    assert execution.started_at is not None
    assert execution.stopped_at is not None
    assert execution.started_at <= execution.stopped_at
    assert execution.details
    times = [detail.at for detail in execution.details]
    assert None not in times
    assert times == sorted(times)  # type: ignore[type-var]
    script_log = event.script_log
    assert script_log is not None
    assert script_log.total_lines == 61
    assert len(script_log.head) == 5
    assert len(script_log.tail) == 5
    assert script_log.tail[-1].endswith("Execution finished.")
    assert "Error: Field 'Region_Code' not found" in (script_log.full_text or "")
    assert script_log.full_text is not None
    assert "\r\n" in script_log.full_text
    assert event.links.app == f"https://sense.example.com/sense/app/{sim_data.APP_SALES_ID}"
    assert sim.calls["download_scriptlog"] >= 2  # the too-soon answer was retried
    # The QRS's own task/full and app/full objects, whole, for Butler's MQTT qs_*Metadata.
    assert event.task.qrs is not None
    assert event.task.qrs["id"] == sim_data.TASK_FAILED_ID
    assert event.task.qrs["schemaPath"] == "ReloadTask"  # a field Herald's own do not model
    assert event.task.qrs["operational"]["lastExecutionResult"]["status"] == 8
    assert app.qrs is not None
    assert (app.qrs["id"], app.qrs["schemaPath"]) == (sim_data.APP_SALES_ID, "App")


async def test_an_owner_without_e_mail_and_a_task_without_an_app_are_complete_events(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(broker_settings, tmp_path, qlik_for(sim)) as ingest,
    ):
        await sim.emit("failed", sim_data.TASK_NO_OWNER_EMAIL_ID, to=("127.0.0.1", ingest.udp_port))
        await sim.emit("failed", sim_data.TASK_EXTERNAL_ID, to=("127.0.0.1", ingest.udp_port))
        await seen.wait_for(lambda s: len(s) == 2)
    by_task = {e.task.id: e for e in (events.decode(m.payload) for m in seen.seen)}
    hr = by_task[sim_data.TASK_NO_OWNER_EMAIL_ID]
    assert hr.app is not None
    assert hr.app.owner is not None
    assert hr.app.owner.emails == []
    assert hr.app.stream is None  # unpublished
    external = by_task[sim_data.TASK_EXTERNAL_ID]
    assert external.task.type == "external_program"
    assert external.app is None
    assert external.enrichment.status == "complete", external.enrichment.reasons


@pytest.mark.parametrize("fault", ["down", "500", "slow", "deleted"])
async def test_a_qrs_that_fails_still_lets_the_alert_out_marked_partial(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
    fault: str,
) -> None:
    qlik = qlik_for(sim, attempts=2, timeout=1)
    if fault == "down":
        qlik = qlik_for(sim, attempts=2, timeout=1, url=f"https://127.0.0.1:{free_port()}")
    elif fault == "500":
        sim.faults.fail_rate = 1.0
    elif fault == "slow":
        sim.faults.latency = 2.0  # every call; the deadline below is shorter than their sum
    else:
        sim.faults.delete_task(sim_data.TASK_FAILED_ID)
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(broker_settings, tmp_path, qlik, enrichment_deadline=3) as ingest,
    ):
        [emission] = await sim.emit("failed", to=("127.0.0.1", ingest.udp_port))
        await seen.wait_for(lambda s: len(s) == 1, within=30)
    event = only_event(seen.seen)
    assert isinstance(event, events.TaskFailed)
    assert event.enrichment.status == "partial"
    assert event.enrichment.reasons
    assert event.task.id == sim_data.TASK_FAILED_ID
    assert event.task.name == "Reload Sales dashboard"  # from the datagram at least
    assert event.execution.id == emission.datagram.execution_id


async def test_a_distribute_task_gets_its_outcome_from_the_qrs(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    task = sim.task("succeeded", sim_data.TASK_DISTRIBUTE_ID)
    app = sim.site.apps[task.app_id] if task.app_id else None
    execution = sim.record("succeeded", sim_data.TASK_DISTRIBUTE_ID)
    text = (
        emitter.datagram("succeeded", task, app, execution_id=execution.execution_id)
        .text.replace("/scheduler-task-success//", "/scheduler-distribute/")
        .replace(
            "Execution State Change to FinishedSuccess",
            "Exiting execute of Distribute task request.",
        )
    )
    seen = await published_for(
        text.encode(), qlik_for(sim), mosquitto, topic_prefix, broker_settings, tmp_path
    )
    [message] = seen
    assert message.topic == (
        f"{topic_prefix}/v1/events/task_succeeded/distribute/{sim_data.TASK_DISTRIBUTE_ID}"
    )
    event = only_event(seen)
    assert event.task.type == "distribute"
    assert event.execution.status == "FinishedSuccess"


async def test_the_event_describes_the_execution_the_datagram_names_not_the_tasks_last_run(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    # The task failed, then a retry succeeded before ingest asked the QRS: the task's last
    # execution result is the success, but the datagram is about the failure.
    failed = sim.record("failed", sim_data.TASK_SUCCEEDED_ID)
    sim.record("succeeded", sim_data.TASK_SUCCEEDED_ID)
    task = sim.task("failed", sim_data.TASK_SUCCEEDED_ID)
    item = emitter.datagram("failed", task, sim.site.app_of(task), execution_id=failed.execution_id)
    seen = await published_for(
        item.encode(), qlik_for(sim), mosquitto, topic_prefix, broker_settings, tmp_path
    )
    event = only_event(seen)
    assert isinstance(event, events.TaskFailed)
    assert event.enrichment.status == "complete", event.enrichment.reasons
    assert event.execution.id == failed.execution_id
    assert event.execution.result_id == failed.id
    assert (event.execution.status_code, event.execution.status) == (8, "FinishedFail")
    assert event.script_log is not None
    assert event.script_log.tail[-2].endswith("Execution Failed")  # the failure's own log


async def test_a_datagram_whose_execution_the_qrs_does_not_have_is_partial_and_says_so(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    task = sim.task("failed")
    item = emitter.datagram("failed", task, sim.site.app_of(task))  # never recorded in the QRS
    qlik = qlik_for(sim, execution_attempts=3, execution_retry_delay=0.1)
    seen = await published_for(
        item.encode(), qlik, mosquitto, topic_prefix, broker_settings, tmp_path
    )
    event = only_event(seen)
    assert event.enrichment.status == "partial"
    assert event.enrichment.reasons == [
        f"the QRS has no execution result for execution {item.execution_id} (asked 3 times)"
    ]
    assert event.execution.id == item.execution_id
    assert event.execution.status is None  # not the task's last run
    assert event.script_log is None
    assert event.task.name == sim_data.TASK_FAILED_NAME  # the task is still enriched
    assert sim.calls["executionresult_full"] == 3


def failures() -> float:
    return sample("herald_datagram_handling_failures_total", service="ingest")


def events_in(seen: list[Seen]) -> list[events.Event]:
    return [events.decode(m.payload) for m in seen if "/v1/events/" in m.topic]


async def test_a_poison_datagram_holds_up_no_other_and_its_bounded_retries_survive_a_restart(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    """The QRS answers garbage for one task, every time: building its event raises."""
    sim.faults.garbled_tasks = {sim_data.TASK_FAILED_ID}
    before = failures()
    async with Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen:
        # The second attempt would come in an hour: the valid ones cannot be waiting for it.
        async with ingest_for(
            broker_settings,
            tmp_path,
            qlik_for(sim),
            handling_attempts=3,
            handling_retry_delay="1h",
            handling_retry_max_delay="1h",
            enrichment_concurrency=1,  # one worker: the poison datagram must not keep it
        ) as ingest:
            to = ("127.0.0.1", ingest.udp_port)
            [poison] = await sim.emit("failed", to=to)
            await wait_until(lambda: failures() - before == 1)
            valid = [
                *await sim.emit("aborted", to=to),
                *await sim.emit("succeeded", to=to),
                *await sim.emit("failed", sim_data.TASK_NO_OWNER_EMAIL_ID, to=to),
            ]
            await seen.wait_for(lambda s: len(events_in(s)) == 3)
            assert failures() - before == 1  # the poison one is still waiting for its retry
        ids = {e.datagram.execution_id for e in valid}
        assert {event.execution.id for event in events_in(seen.seen)} == ids
        assert all(e.enrichment.status == "complete" for e in events_in(seen.seen))
        # After a restart it is tried again at once, and its first failure still counts.
        async with ingest_for(
            broker_settings, tmp_path, qlik_for(sim), handling_attempts=3, handling_retry_delay=0.1
        ):
            await seen.wait_for(lambda s: len(events_in(s)) == 4)
    assert failures() - before == 3
    last = events_in(seen.seen)[-1]
    assert isinstance(last, events.TaskFailed)
    assert last.execution.id == poison.datagram.execution_id
    assert last.task.name == sim_data.TASK_FAILED_NAME  # from the datagram
    assert last.enrichment.status == "partial"
    [reason] = last.enrichment.reasons
    assert "failed 3 times" in reason
    assert "published with what the datagram says" in reason


async def test_a_datagram_that_can_no_longer_be_an_event_is_dead_lettered_not_dropped(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    """Left in the inbox by a run with a larger udp.max_datagram_bytes than the next run's."""
    sim.faults.garbled_tasks = {sim_data.TASK_FAILED_ID}  # keeps it in the inbox, retrying
    task = sim.task("failed")
    execution = sim.record("failed")
    text = emitter.datagram(
        "failed", task, sim.site.app_of(task), execution_id=execution.execution_id
    ).text
    text += " (details: " + "x" * 2000 + ")"
    dead_letters = sample("herald_datagrams_dead_lettered_total", service="ingest")
    async with Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen:
        before = failures()
        async with ingest_for(
            broker_settings,
            tmp_path,
            qlik_for(sim),
            handling_retry_delay="1h",
            handling_retry_max_delay="1h",
        ) as ingest:
            send_text(ingest, text)
            await wait_until(lambda: failures() - before == 1)
        async with ingest_for(
            broker_settings,
            tmp_path,
            qlik_for(sim),
            udp={"host": "127.0.0.1", "port": 0, "max_datagram_bytes": 1024},
        ):
            await seen.wait_for(lambda s: any("/dead-letter/" in m.topic for m in s))
    [message] = [m for m in seen.seen if "/v1/status/" not in m.topic]
    assert message.topic == topics.dead_letter_topic(topic_prefix, "ingest")
    letter = json.loads(message.payload)
    assert letter["service"] == "ingest"
    assert letter["payload"] == text
    assert "too_large" in letter["reason"]
    assert letter["attempts"] == 1
    assert sample("herald_datagrams_dead_lettered_total", service="ingest") - dead_letters == 1


async def test_names_from_the_qrs_are_capped_like_the_datagrams_fields(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    task = sim.task("failed")
    app = sim.site.app_of(task)
    assert app is not None
    assert app.stream is not None
    assert task.tags
    long = "N" * 20_000
    task.name = long
    task.tags[0].name = long
    app.name = long
    app.description = long
    app.stream.name = long
    sim.site.users[app.owner_id].name = long
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(broker_settings, tmp_path, qlik_for(sim)) as ingest,
    ):
        await sim.emit("failed", to=("127.0.0.1", ingest.udp_port))
        await seen.wait_for(lambda s: len(s) == 1)
    event = only_event(seen.seen)
    assert event.enrichment.status == "complete", event.enrichment.reasons
    capped = "N" * 500  # ingest.udp.max_field_length, as for the datagram's fields
    assert event.task.name == capped
    assert capped in event.task.tags
    assert event.app is not None
    assert event.app.stream is not None
    assert event.app.owner is not None
    assert event.app.name == capped
    assert event.app.description == capped
    assert event.app.stream.name == capped
    assert event.app.owner.name == capped
    # The QRS objects carried whole for Butler's MQTT payloads are capped alike.
    assert event.task.qrs is not None
    assert event.task.qrs["name"] == capped
    assert event.app.qrs is not None
    assert event.app.qrs["description"] == capped
    assert len(events.encode(event)) < 40_000


def test_the_wait_between_attempts_doubles_up_to_its_cap() -> None:
    assert [retry_delay(n, 1.0, 60.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert retry_delay(1, 3600.0, 60.0) == 60.0


async def test_a_distribute_task_that_never_finishes_is_dead_lettered(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    task = sim.task("succeeded", sim_data.TASK_DISTRIBUTE_ID)
    task.executions[-1].status = Status.DISTRIBUTION_RUNNING
    text = distribute_datagram(sim)
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/dead-letter/#") as seen,
        ingest_for(broker_settings, tmp_path, qlik_for(sim), distribute_recheck_for=0) as ingest,
    ):
        send_text(ingest, text)
        await seen.wait_for(lambda s: len(s) == 1)
    letter = json.loads(seen.seen[0].payload)
    assert letter["payload"] == text
    assert "reached no final state" in letter["reason"]
    assert "ingest.distribute_recheck_for" in letter["reason"]


async def test_the_extra_qrs_headers_go_with_every_call(sim: QlikSim) -> None:
    """``qlik.qrs.headers`` (Butler's configQRS.headers.static) reach the QRS on each call, next
    to Herald's own X-Qlik-User; setting X-Qlik-User there is a configuration error."""
    qrs = QrsClient(qlik_for(sim, headers={"X-Site-Trace": "butler"}).qrs)
    try:
        assert await qrs.task(sim_data.TASK_FAILED_ID) is not None
        assert await qrs.app(sim_data.APP_SALES_ID) is not None
    finally:
        await qrs.close()
    assert len(sim.calls.records) >= 2
    for call in sim.calls.records:
        assert call.headers["X-Site-Trace"] == "butler"
        assert call.headers["X-Qlik-User"] == "UserDirectory=INTERNAL; UserId=sa_repository"
    with pytest.raises(ValueError, match="X-Qlik-User is set by Herald"):
        qlik_for(sim, headers={"X-Qlik-User": "UserDirectory=X; UserId=y"})


async def test_a_gating_custom_property_the_qrs_does_not_define_is_a_start_up_warning(
    sim: QlikSim,
    broker_settings: BrokerSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A misspelt custom property in a ``when:`` gate (or as a recipients property) would match
    nothing, silently; ingest asks the QRS once it has started and names it, with its key."""
    caplog.set_level(logging.INFO, logger="herald_ingest.gates")
    sim_qrs = qlik_for(sim).qrs.model_dump(mode="json", exclude_none=True)
    document = ConfigDocument(
        path=tmp_path / "herald.yaml",
        data={
            "ingest": {
                "state_dir": str(tmp_path / "state"),
                "udp": {"host": "127.0.0.1", "port": 0},
            },
            "qlik": {"qrs": sim_qrs},
            "emailer": {
                "failed": {
                    "when": {"task_custom_properties": {"Butler_FailedAlertEnabelEmail": ["Yes"]}},
                    "recipients_custom_property": sim_data.CP_FAILED_SEND_TO_EMAIL,
                },
            },
            "metrics_writer": {
                "influxdb": {"success": {"custom_property": {"name": sim_data.CP_SUCCESS_INFLUXDB}}}
            },
        },
    )
    config = configure(document)
    async with started(IngestService(config, broker_settings)):
        await wait_until(
            lambda: sim.calls["custompropertydefinition"] == 1 and bool(caplog.records)
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'Butler_FailedAlertEnabelEmail'" in warnings[0]
    assert "emailer.failed.when.task_custom_properties.Butler_FailedAlertEnabelEmail" in warnings[0]
    assert sim.origin in warnings[0]
