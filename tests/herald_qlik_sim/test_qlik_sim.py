"""herald qlik-sim: the QRS stand-in over real TLS on loopback, and its scheduler datagrams."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald_qlik_sim import CertPaths, QlikSim, ensure_certs
from herald_qlik_sim.data import (
    APP_CUSTOMERS_ID,
    APP_HR_ID,
    APP_INVENTORY_ID,
    APP_SALES_ID,
    CP_FAILED_ENABLE_EMAIL,
    CP_FAILED_SEND_TO_EMAIL,
    FAILED_FILE_REFERENCE_ID,
    FAILED_RESULT_ID,
    TASK_ABORTED_ID,
    TASK_DISTRIBUTE_ID,
    TASK_EXTERNAL_ID,
    TASK_FAILED_ID,
    TASK_FAILED_NAME,
    TASK_NEVER_RUN_ID,
    TASK_SUCCEEDED_ID,
    USER_ANNA_ID,
    USER_NO_EMAIL_ID,
)
from herald_qlik_sim.shapes import qrs_time
from herald_testkit.ports import free_port
from herald_testkit.processes import Child, herald

KEY = "Ab3dEf6hIj9kLm2n"
USER = "UserDirectory=Internal;UserId=sa_repository"
HEADERS = {"X-Qlik-Xrfkey": KEY, "X-Qlik-User": USER, "Content-Type": "application/json"}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LOG4NET_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}$")
ZERO = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return ensure_certs(tmp_path_factory.mktemp("qlik-certs"))


@pytest.fixture
async def sim(certs: CertPaths) -> AsyncIterator[QlikSim]:
    async with QlikSim(certs.folder) as running:
        yield running


@pytest.fixture
async def qrs(sim: QlikSim) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=sim.url, verify=sim.certs.client_context(), headers=HEADERS, timeout=30
    ) as client:
        yield client


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    yield receiver
    receiver.close()


async def get(client: httpx.AsyncClient, path: str, **params: str) -> httpx.Response:
    """A QRS GET as Butler makes it: the xrfkey both as header and as query parameter."""
    return await client.get(path, params={**params, "xrfkey": KEY})


async def get_json(client: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await get(client, path, **params)
    assert response.status_code == 200, response.text
    return response.json()


async def receive(receiver: socket.socket) -> list[str]:
    payload = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(receiver, 65535), 10)
    return payload.decode().split(";")


async def script_log(client: httpx.AsyncClient, task_id: str) -> str:
    """Butler's preferred path: Q4 → Q5 → Q7."""
    task = await get_json(client, f"reloadtask/{task_id}")
    reference = task["operational"]["lastExecutionResult"]["fileReferenceID"]
    value = (await get_json(client, f"reloadtask/{task_id}/scriptlog", fileReferenceId=reference))[
        "value"
    ]
    download = await get(client, f"download/reloadtask/{value}/scriptlog.txt")
    assert download.status_code == 200, download.text
    return download.text


# --- certificates and TLS ----------------------------------------------------------------------


def test_the_certificate_folder_has_the_qmc_export_names_and_is_reused(tmp_path: Path) -> None:
    first = ensure_certs(tmp_path / "certs")
    names = sorted(path.name for path in first.folder.iterdir())
    assert names == ["client.pem", "client_key.pem", "root.pem", "server.pem", "server_key.pem"]
    before = {path.name: path.read_bytes() for path in first.folder.iterdir()}
    again = ensure_certs(tmp_path / "certs")
    assert {path.name: path.read_bytes() for path in again.folder.iterdir()} == before
    assert b"BEGIN RSA PRIVATE KEY" in before["client_key.pem"]


async def test_a_client_without_a_certificate_is_refused_by_tls(sim: QlikSim) -> None:
    async with httpx.AsyncClient(
        base_url=sim.url, verify=sim.certs.client_context(with_certificate=False), headers=HEADERS
    ) as client:
        with pytest.raises(httpx.TransportError):
            await get(client, "about")
    assert len(sim.calls) == 0  # nothing reached the QRS


async def test_a_client_certificate_from_another_ca_is_refused(
    sim: QlikSim, tmp_path: Path
) -> None:
    stranger = ensure_certs(tmp_path / "other-site")
    tls = sim.certs.client_context(with_certificate=False)
    tls.load_cert_chain(str(stranger.client), str(stranger.client_key))
    async with httpx.AsyncClient(base_url=sim.url, verify=tls, headers=HEADERS) as client:
        with pytest.raises(httpx.TransportError):
            await get(client, "about")
    assert len(sim.calls) == 0


# --- the QRS's own checks ----------------------------------------------------------------------


async def test_xrfkey_and_user_headers_are_required(sim: QlikSim, qrs: httpx.AsyncClient) -> None:
    path = f"task?filter=id%20eq%20{TASK_FAILED_ID}"
    no_header = await qrs.get(f"{path}&xrfkey={KEY}", headers={"X-Qlik-Xrfkey": ""})
    no_parameter = await qrs.get(path)
    mismatched = await qrs.get(f"{path}&xrfkey=Zz3dEf6hIj9kLm2n")
    too_short = await qrs.get(f"{path}&xrfkey=abc", headers={"X-Qlik-Xrfkey": "abc"})
    no_user = await qrs.get(f"{path}&xrfkey={KEY}", headers={"X-Qlik-User": ""})
    for response in (no_header, no_parameter, mismatched, too_short, no_user):
        assert response.status_code == 403
    assert "XSRF" in mismatched.text
    assert (await qrs.get(f"{path}&xrfkey={KEY}")).status_code == 200
    # Butler's New Relic lookup writes the user header with a space after the ';'.
    spaced = await qrs.get(
        f"{path}&xrfkey={KEY}",
        headers={"X-Qlik-User": "UserDirectory=Internal; UserId=sa_repository"},
    )
    assert spaced.status_code == 200
    assert sim.calls["task"] == 7


# --- Q1–Q13 ------------------------------------------------------------------------------------


async def test_q1_finds_a_task_by_a_percent_encoded_id_filter(qrs: httpx.AsyncClient) -> None:
    found = (await qrs.get(f"task?filter=id%20eq%20{TASK_FAILED_ID}&xrfkey={KEY}")).json()
    assert [(task["id"], task["name"]) for task in found] == [(TASK_FAILED_ID, TASK_FAILED_NAME)]
    plus_encoded = await get_json(qrs, "task", filter=f"id eq {TASK_FAILED_ID}")
    assert plus_encoded == found
    missing = await get_json(qrs, "task", filter="id eq 11111111-2222-4333-8444-555555555555")
    assert missing == []
    malformed = await get(qrs, "task", filter="id eq")
    assert malformed.status_code == 400


async def test_q2_task_full_has_the_fields_butler_reads(qrs: httpx.AsyncClient) -> None:
    [task] = await get_json(qrs, "task/full", filter=f"id eq {TASK_FAILED_ID}")
    assert task["taskType"] == 0
    assert {tag["name"] for tag in task["tags"]} == {"Finance", "Nightly"}
    properties = [(cp["definition"]["name"], cp["value"]) for cp in task["customProperties"]]
    assert (CP_FAILED_ENABLE_EMAIL, "Yes") in properties
    assert (CP_FAILED_SEND_TO_EMAIL, "finance-bi@example.com") in properties
    assert (CP_FAILED_SEND_TO_EMAIL, "ops-oncall@example.com") in properties
    for key in ("isManuallyTriggered", "isPartialReload", "modifiedByUserName"):
        assert key in task
    assert task["maxRetries"] == 2
    assert task["taskSessionTimeout"] == 1440
    assert task["modifiedDate"].endswith("Z")
    assert task["app"]["id"] == APP_SALES_ID
    assert task["app"]["name"] == "Sales dashboard"
    operational = task["operational"]
    assert operational["nextExecution"] != "1753-01-01T00:00:00.000Z"
    last = operational["lastExecutionResult"]
    assert last["status"] == 8
    assert last["id"] == FAILED_RESULT_ID
    assert last["fileReferenceID"] == FAILED_FILE_REFERENCE_ID
    assert last["duration"] > 0
    assert last["details"][-1]["message"] == "Changing task state from Started to FinishedFail"
    assert set(last["details"][0]) >= {"detailCreatedDate", "message", "detailsType"}

    [aborted] = await get_json(qrs, "task/full", filter=f"id eq {TASK_ABORTED_ID}")
    assert aborted["operational"]["lastExecutionResult"]["status"] == 6
    assert aborted["operational"]["nextExecution"] == "1753-01-01T00:00:00.000Z"
    [succeeded] = await get_json(qrs, "task/full", filter=f"id eq {TASK_SUCCEEDED_ID}")
    last = succeeded["operational"]["lastExecutionResult"]
    assert last["status"] == 7
    assert last["details"][-1]["message"] == "Changing task state from Started to FinishedSuccess"


async def test_q10_and_q11_custom_property_filters(qrs: httpx.AsyncClient) -> None:
    def q10(task_id: str, name: str, value: str) -> str:
        return (
            f"id eq {task_id} and customProperties.definition.name eq '{name}'"
            f" and customProperties.value eq '{value}'"
        )

    assert (
        len(
            await get_json(
                qrs, "task/full", filter=q10(TASK_FAILED_ID, CP_FAILED_ENABLE_EMAIL, "Yes")
            )
        )
        == 1
    )
    assert (
        await get_json(qrs, "task/full", filter=q10(TASK_FAILED_ID, CP_FAILED_ENABLE_EMAIL, "No"))
        == []
    )
    # Name and value must belong to the same custom property.
    cross = q10(TASK_FAILED_ID, CP_FAILED_ENABLE_EMAIL, "ops-oncall@example.com")
    assert await get_json(qrs, "task/full", filter=cross) == []
    assert (
        await get_json(
            qrs, "task/full", filter=q10(TASK_EXTERNAL_ID, CP_FAILED_ENABLE_EMAIL, "Yes")
        )
        == []
    )

    q11 = f"id eq {TASK_FAILED_ID} and customProperties.definition.name eq '{CP_FAILED_SEND_TO_EMAIL}'"
    [task] = await get_json(qrs, "task/full", filter=q11)
    values = [
        cp["value"]
        for cp in task["customProperties"]
        if cp["definition"]["name"] == CP_FAILED_SEND_TO_EMAIL
    ]
    assert values == ["finance-bi@example.com", "ops-oncall@example.com"]
    q11_unset = f"id eq {TASK_ABORTED_ID} and customProperties.definition.name eq '{CP_FAILED_SEND_TO_EMAIL}'"
    assert await get_json(qrs, "task/full", filter=q11_unset) == []


async def test_q3_app_full_published_and_unpublished(qrs: httpx.AsyncClient) -> None:
    [sales] = await get_json(qrs, "app/full", filter=f"id eq {APP_SALES_ID}")
    for key in (
        "description",
        "fileSize",
        "lastReloadTime",
        "modifiedDate",
        "modifiedByUserName",
        "publishTime",
    ):
        assert key in sales
    assert sales["published"] is True
    assert sales["stream"]["name"] == "Finance"
    assert {tag["name"] for tag in sales["tags"]} == {"Finance", "Sales"}
    assert [(cp["definition"]["name"], cp["value"]) for cp in sales["customProperties"]] == [
        ("Department", "Finance")
    ]
    assert sales["owner"]["id"] == USER_ANNA_ID
    [hr] = await get_json(qrs, "app/full", filter=f"id eq {APP_HR_ID}")
    assert hr["published"] is False
    assert hr["stream"] is None
    assert hr["publishTime"] == "1753-01-01T00:00:00.000Z"
    assert len(await get_json(qrs, "app/full", filter="stream.name eq 'Finance'")) == 2


async def test_q8_and_q9_owner_and_email_addresses(qrs: httpx.AsyncClient) -> None:
    app = await get_json(qrs, f"app/{APP_SALES_ID}")
    owner = app["owner"]
    assert (owner["id"], owner["userDirectory"], owner["userId"], owner["name"]) == (
        USER_ANNA_ID,
        "CORP",
        "anna",
        "Anna Lindqvist",
    )
    user = await get_json(qrs, f"user/{owner['id']}")
    emails = [
        a["attributeValue"] for a in user["attributes"] if a["attributeType"].lower() == "email"
    ]
    assert emails == ["anna.lindqvist@example.com", "anna@sales.example.com"]

    goran = await get_json(
        qrs, f"user/{(await get_json(qrs, f'app/{APP_INVENTORY_ID}'))['owner']['id']}"
    )
    assert [a["attributeValue"] for a in goran["attributes"] if a["attributeType"] == "email"] == [
        "goran.sander@example.com"
    ]
    hr_owner = (await get_json(qrs, f"app/{APP_HR_ID}"))["owner"]
    assert hr_owner["id"] == USER_NO_EMAIL_ID
    nobody = await get_json(qrs, f"user/{USER_NO_EMAIL_ID}")
    assert [a for a in nobody["attributes"] if a["attributeType"] == "email"] == []
    assert (await get(qrs, "app/11111111-2222-4333-8444-555555555555")).status_code == 404


async def test_other_task_types_and_a_task_that_never_ran(qrs: httpx.AsyncClient) -> None:
    [external] = await get_json(qrs, "task/full", filter=f"id eq {TASK_EXTERNAL_ID}")
    assert external["taskType"] == 1
    assert external["app"] is None
    [distribute] = await get_json(qrs, "task/full", filter=f"id eq {TASK_DISTRIBUTE_ID}")
    assert distribute["taskType"] == 3
    assert (await get(qrs, f"reloadtask/{TASK_EXTERNAL_ID}")).status_code == 404

    never = await get_json(qrs, f"reloadtask/{TASK_NEVER_RUN_ID}")
    last = never["operational"]["lastExecutionResult"]
    assert last["status"] == 0
    assert last["startTime"].startswith("1753-01-01")
    assert last["fileReferenceID"] == ZERO
    assert never["app"]["id"] == APP_CUSTOMERS_ID


# --- script logs -------------------------------------------------------------------------------


async def test_script_log_through_q4_q5_q7(sim: QlikSim, qrs: httpx.AsyncClient) -> None:
    text = await script_log(qrs, TASK_FAILED_ID)
    lines = text.split("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    assert 55 <= len(lines) <= 70
    assert "Execution started." in lines[0]
    assert any("Error: Field 'Region_Code' not found" in line for line in lines)
    assert lines[-2].endswith("Execution Failed")
    assert lines[-1].endswith("Execution finished.")
    assert (sim.calls["reloadtask"], sim.calls["reloadtask_scriptlog"]) == (1, 1)
    assert sim.calls["download_scriptlog"] == 1


async def test_script_log_through_the_q6_fallback(qrs: httpx.AsyncClient) -> None:
    task = await get_json(qrs, f"reloadtask/{TASK_SUCCEEDED_ID}")
    result_id = task["operational"]["lastExecutionResult"]["id"]
    value = (
        await get_json(
            qrs, f"reloadtask/{TASK_SUCCEEDED_ID}/scriptlogfile", executionResultId=result_id
        )
    )["value"]
    download = await get(qrs, f"download/reloadtask/{value}/scriptlog.txt")
    assert download.status_code == 200
    assert "\r\n" in download.text
    assert download.text.endswith("Execution finished.")
    assert "Search index creation completed successfully" in download.text


# --- faults ------------------------------------------------------------------------------------


async def test_latency_slows_calls_down_but_they_succeed(
    sim: QlikSim, qrs: httpx.AsyncClient
) -> None:
    sim.faults.latency = 0.2
    assert len(await get_json(qrs, "task", filter=f"id eq {TASK_FAILED_ID}")) == 1


async def test_forced_failures(sim: QlikSim, qrs: httpx.AsyncClient) -> None:
    sim.faults.fail_rate = 1.0
    for path in ("task", "task/full", f"reloadtask/{TASK_FAILED_ID}"):
        assert (await get(qrs, path)).status_code == 500
    sim.faults.fail_rate = 0.0
    sim.faults.fail_next = 1
    sim.faults.fail_status = 503
    assert (await get(qrs, "task")).status_code == 503
    assert (await get(qrs, "task")).status_code == 200
    # Faults can be aimed at one endpoint.
    sim.faults.fail_rate = 1.0
    sim.faults.endpoints = {"download_scriptlog"}
    assert (await get(qrs, "task")).status_code == 200
    assert [call.status for call in sim.calls.records] == [500, 500, 500, 503, 200, 200]


async def test_a_deleted_task(sim: QlikSim, qrs: httpx.AsyncClient) -> None:
    sim.faults.delete_task(TASK_FAILED_ID)
    assert await get_json(qrs, "task", filter=f"id eq {TASK_FAILED_ID}") == []
    assert await get_json(qrs, "task/full", filter=f"id eq {TASK_FAILED_ID}") == []
    assert (await get(qrs, f"reloadtask/{TASK_FAILED_ID}")).status_code == 404
    scriptlog = await get(
        qrs, f"reloadtask/{TASK_FAILED_ID}/scriptlog", fileReferenceId=FAILED_FILE_REFERENCE_ID
    )
    assert scriptlog.status_code == 404
    sim.faults.restore_task(TASK_FAILED_ID)
    assert len(await get_json(qrs, "task", filter=f"id eq {TASK_FAILED_ID}")) == 1


async def test_a_garbled_task_is_answered_with_fields_of_the_wrong_type(
    sim: QlikSim, qrs: httpx.AsyncClient
) -> None:
    changed = await qrs.post(sim.control_url, json={"garbled_tasks": [TASK_FAILED_ID.upper()]})
    assert changed.json()["faults"]["garbled_tasks"] == [TASK_FAILED_ID]
    [task] = await get_json(qrs, "task/full", filter=f"id eq {TASK_FAILED_ID}")
    reload_task = await get_json(qrs, f"reloadtask/{TASK_FAILED_ID}")
    for document in (task, reload_task):
        assert document["tags"] == 7
        assert document["maxRetries"] == "three"
        assert document["name"] == "Reload Sales dashboard"  # the rest is as usual
    [other] = await get_json(qrs, "task/full", filter=f"id eq {TASK_ABORTED_ID}")
    assert isinstance(other["tags"], list)


async def test_script_log_asked_too_soon_then_available(
    sim: QlikSim, qrs: httpx.AsyncClient
) -> None:
    sim.faults.script_log_not_ready = 2
    value = (
        await get_json(
            qrs, f"reloadtask/{TASK_FAILED_ID}/scriptlog", fileReferenceId=FAILED_FILE_REFERENCE_ID
        )
    )["value"]
    path = f"download/reloadtask/{value}/scriptlog.txt"
    assert [(await get(qrs, path)).status_code for _ in range(3)] == [404, 404, 200]
    assert sim.calls["download_scriptlog"] == 3
    # Counted per execution: another execution starts again from "not ready".
    other = (
        await get_json(
            qrs,
            f"reloadtask/{TASK_SUCCEEDED_ID}/scriptlogfile",
            executionResultId=(await get_json(qrs, f"reloadtask/{TASK_SUCCEEDED_ID}"))[
                "operational"
            ]["lastExecutionResult"]["id"],
        )
    )["value"]
    assert (await get(qrs, f"download/reloadtask/{other}/scriptlog.txt")).status_code == 404


async def test_all_zero_file_reference_for_the_first_reads(
    sim: QlikSim, qrs: httpx.AsyncClient
) -> None:
    sim.faults.zero_file_reference = 1
    first = await get_json(qrs, f"reloadtask/{TASK_FAILED_ID}")
    assert first["operational"]["lastExecutionResult"]["fileReferenceID"] == ZERO
    zero = await get(qrs, f"reloadtask/{TASK_FAILED_ID}/scriptlog", fileReferenceId=ZERO)
    assert zero.status_code == 404
    second = await get_json(qrs, f"reloadtask/{TASK_FAILED_ID}")
    assert (
        second["operational"]["lastExecutionResult"]["fileReferenceID"] == FAILED_FILE_REFERENCE_ID
    )


async def test_a_hung_call_is_never_answered(sim: QlikSim, qrs: httpx.AsyncClient) -> None:
    assert (await get(qrs, "about")).status_code == 200  # the TLS connection is up
    sim.faults.hang_next = 1
    with pytest.raises(httpx.ReadTimeout):
        await qrs.get("about", params={"xrfkey": KEY}, timeout=httpx.Timeout(30.0, read=0.5))
    assert [call.status for call in sim.calls.records] == [200, 0]  # accepted, never answered
    assert (await get(qrs, "about")).status_code == 200


async def test_the_control_endpoint_sets_faults_and_reports_calls(
    sim: QlikSim, qrs: httpx.AsyncClient
) -> None:
    await get(qrs, "task")
    control = sim.control_url
    state = (await qrs.get(control)).json()
    assert state["calls"] == {"task": 1}
    changed = await qrs.post(
        control, json={"fail_next": 1, "deleted_tasks": [TASK_ABORTED_ID], "reset_calls": True}
    )
    assert changed.status_code == 200
    assert changed.json()["faults"]["deleted_tasks"] == [TASK_ABORTED_ID]
    assert (await get(qrs, "task")).status_code == 500
    assert await get_json(qrs, "task", filter=f"id eq {TASK_ABORTED_ID}") == []
    assert sim.calls.counts() == {"task": 2}
    assert (await qrs.post(control, json={"no_such_fault": 1})).status_code == 400
    assert (await qrs.post(control, json={"fail_rate": 2})).status_code == 400
    assert (await qrs.post(control, json={"clear": True})).json()["faults"]["deleted_tasks"] == []


# --- scheduler datagrams -----------------------------------------------------------------------


async def test_emit_records_an_execution_and_sends_its_datagram(
    sim: QlikSim, qrs: httpx.AsyncClient, udp: socket.socket
) -> None:
    port = udp.getsockname()[1]
    [emission] = await sim.emit("failed", to=("127.0.0.1", port))
    fields = await receive(udp)
    assert len(fields) == 11
    assert fields == emission.datagram.fields()
    kind, host, task_name, app_name, user, task_id, app_id, stamp, level, execution_id, message = (
        fields
    )
    assert kind == "/scheduler-task-failed/"
    assert host == socket.gethostname()
    assert (task_name, app_name) == (TASK_FAILED_NAME, "Sales dashboard")
    assert user == "INTERNAL\\sa_scheduler"
    assert (task_id, app_id) == (TASK_FAILED_ID, APP_SALES_ID)
    assert LOG4NET_TIME.match(stamp)
    assert level == "INFO"
    assert GUID.match(execution_id)
    assert message == "Max retries reached"

    # The QRS now reports that run as the task's last execution, with its own script log.
    last = (await get_json(qrs, f"reloadtask/{TASK_FAILED_ID}"))["operational"][
        "lastExecutionResult"
    ]
    assert last["executionID"] == execution_id
    assert last["id"] == emission.execution.id != FAILED_RESULT_ID
    assert last["status"] == 8
    assert last["executingNodeName"] == host
    assert last["fileReferenceID"] not in (ZERO, FAILED_FILE_REFERENCE_ID)
    assert "Execution Failed" in await script_log(qrs, TASK_FAILED_ID)


async def test_emit_each_outcome_paced(sim: QlikSim, udp: socket.socket) -> None:
    port = udp.getsockname()[1]
    await sim.emit("aborted", to=f"127.0.0.1:{port}")
    aborted = await receive(udp)
    assert (aborted[0], aborted[5], aborted[10]) == (
        "/scheduler-task-aborted/",
        TASK_ABORTED_ID,
        "Execution State Change to Aborting",
    )
    sent = await sim.emit("succeeded", to=("127.0.0.1", port), count=3, rate=50)
    received = [await receive(udp) for _ in range(3)]
    assert {fields[0] for fields in received} == {"/scheduler-task-success//"}
    assert {fields[10] for fields in received} == {"Execution State Change to FinishedSuccess"}
    assert {fields[5] for fields in received} == {TASK_SUCCEEDED_ID}
    assert len({fields[9] for fields in received}) == 3  # a fresh execution id each
    assert [fields[9] for fields in received] == [e.execution.execution_id for e in sent]
    assert sim.site.tasks[TASK_SUCCEEDED_ID].last_execution == sent[-1].execution
    # A task without an app leaves fields 3 and 6 empty.
    await sim.emit("failed", TASK_EXTERNAL_ID, to=("127.0.0.1", port))
    external = await receive(udp)
    assert len(external) == 11
    assert (external[3], external[6]) == ("", "")


async def test_the_cli_emits_datagrams(udp: socket.socket) -> None:
    port = udp.getsockname()[1]
    code, out, err = await herald(
        "qlik-sim", "emit", "failed", "--to", f"127.0.0.1:{port}", "--count", "2", "--rate", "20"
    )
    assert code == 0, err
    received = [await receive(udp) for _ in range(2)]
    for fields in received:
        assert len(fields) == 11
        assert fields[0] == "/scheduler-task-failed/"
        assert fields[2] == TASK_FAILED_NAME
        assert fields[4] == "INTERNAL\\sa_scheduler"
        assert fields[5] == TASK_FAILED_ID
        assert LOG4NET_TIME.match(fields[7])
        assert fields[10] == "Max retries reached"
    assert received[0][9] != received[1][9]
    assert out.splitlines() == [";".join(fields) for fields in received]


async def test_the_cli_records_the_execution_in_a_running_sim(
    sim: QlikSim, qrs: httpx.AsyncClient, udp: socket.socket
) -> None:
    port = udp.getsockname()[1]
    code, _, err = await herald(
        "qlik-sim",
        "emit",
        "aborted",
        "--to",
        f"127.0.0.1:{port}",
        "--sim",
        sim.origin,
        "--certs",
        str(sim.certs.folder),
    )
    assert code == 0, err
    fields = await receive(udp)
    last = (await get_json(qrs, f"reloadtask/{TASK_ABORTED_ID}"))["operational"][
        "lastExecutionResult"
    ]
    assert last["executionID"] == fields[9]
    assert last["status"] == 6


async def test_the_cli_serves_until_terminated(certs: CertPaths) -> None:
    port = free_port()
    child = await Child.python(
        "-m",
        "herald_shared.cli",
        "qlik-sim",
        "serve",
        "--port",
        str(port),
        "--certs",
        str(certs.folder),
        "--fail-rate",
        "1",
    )
    try:
        await child.wait_for_line(lambda line: "QRS API at" in line)
        assert f"https://127.0.0.1:{port}/qrs/" in "\n".join(child.lines)
        folder_line = await child.wait_for_line(lambda line: "certificates in" in line)
        assert str(certs.folder) in folder_line
        async with httpx.AsyncClient(verify=certs.client_context(), headers=HEADERS) as client:
            response = await client.get(
                f"https://127.0.0.1:{port}/qrs/about", params={"xrfkey": KEY}
            )
        assert response.status_code == 500
    finally:
        child.terminate()
        assert await child.wait() == 0


# --- execution results: the reconciliation sweep's endpoints ------------------------------------


async def test_execution_results_filter_by_status_and_stop_time_in_stop_time_order(
    sim: QlikSim, qrs: httpx.AsyncClient
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=5)
    old = sim.record("failed", start=since - timedelta(hours=2))
    failed = sim.record("failed")
    aborted = sim.record("aborted")
    succeeded = sim.record("succeeded")
    alerting = f"(status eq 6 or status eq 8) and stopTime gt '{qrs_time(since)}'"
    found = await get_json(qrs, "executionresult/full", filter=alerting, orderby="stopTime asc")
    assert [item["executionID"] for item in found] == [failed.execution_id, aborted.execution_id]
    assert [item["status"] for item in found] == [8, 6]
    assert found[0]["taskID"] == TASK_FAILED_ID
    assert found[0]["stopTime"] <= found[1]["stopTime"]
    assert found[0]["schemaPath"] == "ExecutionResult"
    assert await get_json(qrs, "executionresult/count", filter=alerting) == {"value": 2}
    condensed = await get_json(qrs, "executionresult", filter=alerting)
    assert {item["id"] for item in condensed} == {failed.id, aborted.id}
    newest_first = await get_json(
        qrs,
        "executionresult/full",
        filter=f"stopTime gt '{qrs_time(since)}'",
        orderby="stopTime desc",
    )
    assert newest_first[0]["executionID"] == succeeded.execution_id
    assert old.execution_id not in {item["executionID"] for item in newest_first}
    [exact] = await get_json(
        qrs, "executionresult/full", filter=f"executionID eq {old.execution_id}"
    )
    assert exact["status"] == 8
    assert exact["stopTime"] < qrs_time(since)
    assert (await get(qrs, "executionresult/full", orderby="stopTime sideways")).status_code == 400
    assert (await get(qrs, "executionresult/full", filter="status eq")).status_code == 400
    assert sim.calls["executionresult_full"] == 5
    assert sim.calls["executionresult_count"] == 1


async def test_the_cli_records_executions_without_a_datagram(
    sim: QlikSim, qrs: httpx.AsyncClient
) -> None:
    code, out, err = await herald(
        "qlik-sim",
        "record",
        "failed",
        "--task",
        TASK_SUCCEEDED_ID,
        "--count",
        "3",
        "--ago",
        "7200",
        "--sim",
        sim.origin,
        "--certs",
        str(sim.certs.folder),
    )
    assert code == 0, err
    printed = [line.split()[0] for line in out.splitlines()]
    assert len(printed) == 3
    task = sim.site.tasks[TASK_SUCCEEDED_ID]
    assert [e.execution_id for e in task.executions[-3:]] == printed
    found = await get_json(
        qrs, "executionresult/full", filter=f"taskID eq {TASK_SUCCEEDED_ID} and status eq 8"
    )
    assert {item["executionID"] for item in found} == set(printed)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    assert all(e.stop <= two_hours_ago for e in task.executions[-3:])
    many = await qrs.post(
        f"{sim.control_url}/executions",
        json={"task": TASK_FAILED_ID, "outcome": "aborted", "execution_ids": ["e-1", "e-2"]},
    )
    assert many.status_code == 201
    assert [item["executionID"] for item in many.json()] == ["e-1", "e-2"]
    assert [e.execution_id for e in sim.site.tasks[TASK_FAILED_ID].executions[-2:]] == [
        "e-1",
        "e-2",
    ]
    unknown = await herald(
        "qlik-sim", "record", "failed", "--task", "No such task", "--sim", sim.origin
    )
    assert unknown[0] == 2
    assert "no task 'No such task'" in unknown[2]
