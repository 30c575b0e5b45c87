"""Enrichment against the Qlik Sense stand-in: HTTPS with client certificates, real QRS shapes,
and a QRS that is slow, failing or gone."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from herald_ingest.service import IngestConfig, IngestService
from herald_ingest.settings import IngestSettings, QlikSettings
from herald_qlik_sim import QlikSim, emitter
from herald_qlik_sim import data as sim_data
from herald_shared import events
from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.ports import free_port
from herald_testkit.services import started


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
