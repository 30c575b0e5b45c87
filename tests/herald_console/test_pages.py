"""The console's pages in a real browser (Debian's headless Chromium, driven by Playwright),
fed by a real pipeline: the Qlik Sense stand-in's failed reloads go through ingest, the emailer
(to a real SMTP server) and the log archiver, over a real Mosquitto, to the console.

A dead letter's replay is answered by a stand-in service of the test's own (``pager``), a real
MQTT client that takes the request and publishes the answer and the delivered receipt, as the
owning service would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import aiomqtt
import msgspec
import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    HttpCredentials,
    Page,
    async_playwright,
    expect,
)
from playwright.async_api import Error as PlaywrightError

from herald_qlik_sim.data import TASK_FAILED_ID, TASK_FAILED_NAME, TASK_NO_OWNER_EMAIL_ID
from herald_shared import events, replay, silences, topics
from herald_shared.delivery import receipts
from herald_testkit.mqtt import Observer
from herald_testkit.pipeline import PREFIX

from .conftest import OPERATOR, OPERATOR_PASSWORD, VIEWER, VIEWER_PASSWORD, basic
from .events_for_tests import failure_now
from .pipeline import ConsolePipeline, console_system

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright's own browser download is not used
WAIT = 60_000  # ms: what the pipeline has to deliver, on a shared machine


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConsolePipeline]:
    async with console_system(tmp_path_factory.mktemp("console-system")) as pipeline:
        yield pipeline


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


Opener = Callable[[str | None, str | None], Awaitable[BrowserContext]]


@pytest_asyncio.fixture(loop_scope="module")
async def contexts(browser: Browser, system: ConsolePipeline) -> AsyncIterator[Opener]:
    opened: list[BrowserContext] = []

    async def open_as(name: str | None, password: str | None) -> BrowserContext:
        credentials: HttpCredentials | None = None
        if name is not None:
            credentials = {"username": name, "password": password or ""}
        context = await browser.new_context(
            base_url=system.console_url,
            http_credentials=credentials,
            viewport={"width": 1280, "height": 900},
        )
        opened.append(context)
        return context

    yield open_as
    for context in opened:
        await context.close()


async def operator_page(contexts: Opener) -> Page:
    return await (await contexts(OPERATOR, OPERATOR_PASSWORD)).new_page()


async def failed_reload(system: ConsolePipeline, task: str = TASK_FAILED_ID) -> str:
    """A failed reload of ``task`` through the whole pipeline; its event id."""
    burst = await system.record(1, task)
    await system.send(burst)
    [event_id] = burst.event_ids()
    return event_id


async def test_a_failed_reload_appears_live_with_each_destinations_outcome(
    system: ConsolePipeline, contexts: Opener
) -> None:
    page = await operator_page(contexts)
    await page.goto("/")
    await page.evaluate("window.sameDocument = true")  # gone if the page were loaded again
    event_id = await failed_reload(system)
    row = page.locator(f"#event-{event_id}")
    await expect(row).to_contain_text(TASK_FAILED_NAME, timeout=WAIT)
    await expect(row).to_contain_text("failed")
    for recipient in ("oncall@example.com", "bi-team@example.com"):
        await expect(row).to_contain_text(
            f"emailer · email-failed ({recipient}): delivered", timeout=WAIT
        )
    await expect(row).to_contain_text("log-archiver · archive: delivered", timeout=WAIT)
    assert await page.evaluate("window.sameDocument") is True

    await row.get_by_role("link", name=TASK_FAILED_NAME).click()
    await expect(page.locator("h1")).to_contain_text(TASK_FAILED_NAME)
    # The links the event carries (qlik.qmc_url and qlik.hub_url in the configuration).
    qmc = await page.get_by_role("link", name="QMC").get_attribute("href")
    hub = await page.get_by_role("link", name="Hub").get_attribute("href")
    assert (qmc, hub) == ("https://sense.example.com/qmc", "https://sense.example.com/hub")
    await expect(page.locator("pre.log")).to_contain_text("Error")
    await expect(page.locator("#deliveries")).to_contain_text("log-archiver")
    await expect(page.locator("ol.timeline")).to_contain_text("delivered")


@contextlib.asynccontextmanager
async def pager_service(system: ConsolePipeline) -> AsyncIterator[list[replay.ReplayRequest]]:
    """The stand-in owner of the ``pager`` dead letters: answers every replay request on the
    broker with the asked-for deliveries replayed, then their delivered receipts."""
    asked: list[replay.ReplayRequest] = []

    async def serve(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            request = replay.decode_request(message.payload)
            asked.append(request)
            answer = replay.ReplayAnswer(
                id=request.id,
                service="pager",
                instance="pager-1",
                replayed=[
                    replay.ReplayedDelivery(e, request.destination or "sms")
                    for e in request.event_ids
                ],
                not_found=[],
            )
            await client.publish(
                topics.replayed_topic(PREFIX, "pager", "pager-1"), replay.encode(answer), qos=1
            )
            for event_id in request.event_ids:
                receipt = {
                    "event_id": event_id, "kind": "task_failed", "task_id": TASK_FAILED_ID,
                    "task_name": TASK_FAILED_NAME, "service": "pager", "destination": "sms",
                    "target": "", "outcome": "delivered", "attempts": 1, "at": datetime.now(UTC),
                }  # fmt: skip
                await client.publish(
                    topics.deliveries_topic(PREFIX, "pager"), receipts.encode(receipt), qos=1
                )

    async with aiomqtt.Client(
        system.broker.host, system.broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(topics.replay_topic(PREFIX, "pager"), qos=1)
        task = asyncio.create_task(serve(client))
        try:
            yield asked
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def event_of(system: ConsolePipeline, event_id: str, within: float = 60) -> events.Event:
    """The event as the console stored it, once it has (its JSON API says so)."""
    async with aiohttp.ClientSession(headers=basic(OPERATOR, OPERATOR_PASSWORD)) as session:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            async with session.get(f"{system.console_url}/api/v1/events/{event_id}") as response:
                if response.status == 200:
                    return events.decode(msgspec.json.encode((await response.json())["event"]))
            assert asyncio.get_running_loop().time() < deadline, f"{event_id} never stored"
            await asyncio.sleep(0.2)


async def test_a_dead_letter_is_replayed_from_its_page_and_its_answer_and_receipt_shown(
    system: ConsolePipeline, contexts: Opener
) -> None:
    event_id = await failed_reload(system)
    event = await event_of(system, event_id)
    letter = receipts.DeadLetter(
        service="pager", destination="sms", target="", reason="SMS gateway answered 500 five times",
        attempts=5, at=datetime.now(UTC), event=event,
    )  # fmt: skip
    page = await operator_page(contexts)
    async with pager_service(system) as asked:
        await page.goto("/dead-letters")
        async with aiomqtt.Client(system.broker.host, system.broker.port) as client:
            await client.publish(
                topics.dead_letter_topic(PREFIX, "pager"), receipts.encode(letter), qos=1
            )
        row = page.locator(f'tr[data-event="{event_id}"]')
        await expect(row).to_contain_text("SMS gateway answered 500 five times", timeout=WAIT)
        await expect(row).to_contain_text("pager · sms")
        await expect(row).to_contain_text("dead lettered")
        await row.get_by_role("checkbox").check()
        await page.get_by_role("button", name="Replay the chosen").click()
        await expect(page.locator(".notice")).to_contain_text("Replay asked")
        await expect(page.locator("ul.replays")).to_contain_text("pager-1 replayed 1", timeout=WAIT)
        await expect(page.locator(f'tr[data-event="{event_id}"]')).to_contain_text(
            "delivered", timeout=WAIT
        )
    [request] = asked
    assert (request.event_ids, request.destination) == ([event_id], "sms")
    assert request.requested_by == f"console:{OPERATOR}"
    # The event's own page tells the story in order.
    await page.goto(f"/events/{event_id}")
    timeline = page.locator("ol.timeline")
    await expect(timeline).to_contain_text("replay")
    await expect(timeline).to_contain_text("sms: back to pending")
    await expect(page.locator("#deliveries")).to_contain_text("pager · sms: delivered")


async def test_a_silence_made_on_an_events_page_is_retained_and_stops_the_next_alert(
    system: ConsolePipeline, contexts: Opener
) -> None:
    first = await failed_reload(system, TASK_NO_OWNER_EMAIL_ID)
    page = await operator_page(contexts)
    await event_of(system, first)
    await page.goto(f"/events/{first}")
    form = page.locator("form.silence")
    await form.get_by_label("Silence this").select_option("task")
    await form.get_by_label("for").select_option("2h")
    await form.get_by_label("because").fill("HR source system migration")
    await form.get_by_role("button", name="Silence").click()
    await expect(page).to_have_url(f"{system.console_url}/silences")
    row = page.locator("table.silences tbody tr").filter(has_text="task_names=Reload HR headcount")
    await expect(row).to_contain_text("active", timeout=WAIT)
    await expect(row).to_contain_text(f"console:{OPERATOR}: HR source system migration")

    # Retained on the broker, as `herald silence add` leaves it.
    async with Observer(
        system.broker.host, system.broker.port, topics.silence_topic(PREFIX, "+")
    ) as seen:
        [message] = await seen.wait_for(lambda s: len(s) >= 1)
    assert message.retain
    silence = silences.decode(message.payload)
    assert [str(m) for m in silence.matchers] == ["task_names=Reload HR headcount"]

    async def silences_active(count: int) -> None:
        for _ in range(600):
            found = [
                await system.metric(name, "herald_silences_active{")
                for name in ("emailer", "log-archiver")
            ]
            if found == [count, count]:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"silences active: {found}")

    await silences_active(1)
    mails = len(system.destinations.smtp.received)
    second = await failed_reload(system, TASK_NO_OWNER_EMAIL_ID)
    await event_of(system, second)
    await page.goto(f"/events/{second}")
    deliveries = page.locator("#deliveries")
    for where in ("emailer · email-failed (oncall@example.com)", "log-archiver · archive"):
        await expect(deliveries).to_contain_text(f"{where}: silenced", timeout=WAIT)
    assert len(system.destinations.smtp.received) == mails

    # Expired from the page: the retained message is cleared and the services forget it.
    await page.goto("/silences")
    await row.get_by_role("button", name="Expire").click()
    await expect(page.locator("table.silences")).not_to_contain_text(
        "task_names=Reload HR headcount", timeout=WAIT
    )
    await silences_active(0)


async def test_a_viewer_reads_but_cannot_replay_or_silence_and_nobody_else_gets_in(
    system: ConsolePipeline, contexts: Opener
) -> None:
    event_id = await failed_reload(system)
    await event_of(system, event_id)
    viewer = await (await contexts(VIEWER, VIEWER_PASSWORD)).new_page()
    await viewer.goto(f"/events/{event_id}")
    await expect(viewer.locator("h1")).to_contain_text(TASK_FAILED_NAME)
    await expect(viewer.locator("form.silence")).to_have_count(0)
    token = await viewer.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    origin = {"Origin": system.console_url}
    forms: tuple[tuple[str, dict[str, str | float | bool]], ...] = (
        (
            "/silences",
            {
                "csrf": token,
                "event_id": event_id,
                "scope": "task",
                "duration": "2h",
                "comment": "x",
            },
        ),
        ("/replay", {"csrf": token, "letter": "1"}),
        ("/test", {"csrf": token, "kind": "failed"}),
    )
    for path, form in forms:
        response = await viewer.request.post(path, form=form, headers=origin, max_redirects=0)
        assert response.status == 403, path
        assert "viewer" in await response.text()

    # Without an account the browser is asked to log in (and a headless one cannot).
    anonymous = await (await contexts(None, None)).new_page()
    with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        await anonymous.goto("/")
    for path in ("/", f"/events/{event_id}", "/api/v1/events", "/live"):
        response = await anonymous.request.get(path)
        assert response.status == 401, path
        assert response.headers["www-authenticate"].startswith("Basic ")

    operator = await operator_page(contexts)
    await operator.goto("/test")
    without = await operator.request.post(
        "/test", form={"kind": "failed"}, headers=origin, max_redirects=0
    )
    assert without.status == 403
    assert "CSRF" in await without.text()
    token = await operator.locator('meta[name="csrf-token"]').get_attribute("content")
    elsewhere = await operator.request.post(
        "/test",
        form={"csrf": token or "", "kind": "failed"},
        headers={"Origin": "http://evil.example"},
        max_redirects=0,
    )
    assert elsewhere.status == 403


async def test_a_test_alert_sent_from_the_page_shows_its_receipts_as_they_arrive(
    system: ConsolePipeline, contexts: Opener
) -> None:
    page = await operator_page(contexts)
    await page.goto("/test")
    await page.get_by_label("Kind").select_option("failed")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("h1")).to_contain_text("test", timeout=WAIT)
    deliveries = page.locator("#deliveries")
    await expect(deliveries).to_contain_text(
        "emailer · email-failed (oncall@example.com): delivered", timeout=WAIT
    )
    # The log archiver does not archive a test alert: it says so.
    await expect(deliveries).to_contain_text("log-archiver · archive: skipped", timeout=WAIT)


async def test_a_hostile_task_name_arriving_live_is_shown_as_text_and_runs_nothing(
    system: ConsolePipeline, contexts: Opener
) -> None:
    page = await operator_page(contexts)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto("/")
    await page.evaluate("window.sameDocument = true")
    hostile = '<script>alert("task")</script><img src=x onerror=alert("img")>'
    event = msgspec.structs.replace(
        failure_now(900, name=hostile, stream=f"<b>{hostile}</b>"),
        links=events.Links(qmc='javascript:alert("qmc")', hub="https://sense.example.com/hub"),
    )
    async with aiomqtt.Client(system.broker.host, system.broker.port) as client:
        await client.publish(topics.topic_of(PREFIX, event), events.encode(event), qos=1)
    row = page.locator(f"#event-{event.event_id}")
    await expect(row).to_contain_text(hostile, timeout=WAIT)  # the text itself, as it came
    assert await page.evaluate("window.sameDocument") is True
    await page.goto(f"/events/{event.event_id}")
    await expect(page.locator("h1")).to_contain_text(hostile)
    # A link the event carries is a link only when it is http(s): no javascript: URL is offered.
    await expect(page.get_by_role("link", name="Hub")).to_have_attribute(
        "href", "https://sense.example.com/hub"
    )
    await expect(page.get_by_role("link", name="QMC")).to_have_count(0)
    assert await page.locator("img[src=x]").count() == 0
    assert dialogs == []


async def test_a_failure_while_the_console_was_killed_is_in_its_history_once_it_is_back(
    system: ConsolePipeline, contexts: Opener
) -> None:
    await system.kill("console")  # SIGKILL: no goodbye, the broker keeps its session
    event_id = await failed_reload(system)
    # Delivered meanwhile by the rest of the pipeline; the console hears of it when it is back.
    await system.start_service("console")
    page = await operator_page(contexts)
    await page.goto("/")
    row = page.locator(f"#event-{event_id}")
    await expect(row).to_contain_text(TASK_FAILED_NAME, timeout=WAIT)
    await expect(row).to_contain_text("log-archiver · archive: delivered", timeout=WAIT)
