"""The console's JSON API against a real console on a free port, fed by a real Mosquitto: what
it keeps of what the broker carries, who may do what, and what its actions publish."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import pytest

from herald_console.service import ConsoleService
from herald_shared import events, replay, self_report, silences, topics
from herald_shared.delivery import receipts
from herald_shared.settings import BrokerSettings
from herald_testkit.mqtt import Observer, Seen, publisher

from .conftest import basic, url
from .events_for_tests import dead_letter, failure_now, receipt


async def publish(
    broker: BrokerSettings, topic: str, payload: bytes, *, retain: bool = False
) -> None:
    async with publisher(broker.host, broker.port) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


async def publish_event(broker: BrokerSettings, event: events.Event) -> None:
    await publish(broker, topics.topic_of(broker.topic_prefix, event), events.encode(event))


async def get_json(session: aiohttp.ClientSession, address: str) -> Any:
    async with session.get(address) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def until_json(
    session: aiohttp.ClientSession, address: str, holds: Callable[[Any], bool], within: float = 20
) -> Any:
    found: list[Any] = []

    async def check() -> bool:
        found[:] = [await get_json(session, address)]
        return holds(found[0])

    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), within)
    return found[0]


async def csrf(session: aiohttp.ClientSession, console: ConsoleService) -> str:
    token: str = (await get_json(session, url(console, "/api/v1/session")))["csrf_token"]
    return token


async def test_without_an_account_every_page_and_endpoint_answers_401(
    console: ConsoleService,
) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for path in ("/", "/api/v1/events", "/static/console.css", "/live"):
            async with anonymous.get(url(console, path)) as response:
                assert response.status == 401, path
                assert response.headers["WWW-Authenticate"].startswith("Basic ")
        async with anonymous.post(url(console, "/api/v1/test"), json={}) as response:
            assert response.status == 401
    async with (
        aiohttp.ClientSession(headers=basic("olivia", "wrong")) as wrong,
        wrong.get(url(console, "/api/v1/events")) as response,
    ):
        assert response.status == 401


async def test_an_event_and_its_receipts_are_kept_and_filtered(
    console: ConsoleService, broker_settings: BrokerSettings, viewer: aiohttp.ClientSession
) -> None:
    prefix = broker_settings.topic_prefix
    failed = failure_now(1, name="Reload Finance", stream="Finance")
    other = failure_now(2, name="Reload Sales", stream="Sales")
    await publish_event(broker_settings, failed)
    await publish_event(broker_settings, other)
    await publish(
        broker_settings,
        topics.deliveries_topic(prefix, "emailer"),
        receipt(failed, "emailer", "email-failed", "delivered", target="oncall@example.com"),
    )
    await publish(
        broker_settings,
        topics.deliveries_topic(prefix, "chat-notifier"),
        receipt(failed, "chat-notifier", "slack:ops", "grouped", detail="in digest 7"),
    )
    listing = await until_json(
        viewer,
        url(console, "/api/v1/events"),
        lambda found: (
            len(found["events"]) == 2
            and len(found["events"][-1]["deliveries"]) + len(found["events"][0]["deliveries"]) == 2
        ),
    )
    by_id = {e["event_id"]: e for e in listing["events"]}
    states = {
        (d["service"], d["destination"], d["state"]) for d in by_id[failed.event_id]["deliveries"]
    }
    # Any state a receipt carries is kept as it is, also one this console does not know.
    assert states == {
        ("emailer", "email-failed", "delivered"),
        ("chat-notifier", "slack:ops", "grouped"),
    }

    async def ids(query: str) -> set[str]:
        found = await get_json(viewer, url(console, f"/api/v1/events?{query}"))
        return {e["event_id"] for e in found["events"]}

    assert await ids("task=finance") == {failed.event_id}
    assert await ids("stream=sales") == {other.event_id}
    assert await ids("outcome=grouped") == {failed.event_id}
    assert await ids("kind=task_aborted") == set()
    assert await ids("since=2000-01-01T00:00") == {failed.event_id, other.event_id}
    assert await ids("until=2000-01-01T00:00") == set()

    one = await get_json(viewer, url(console, f"/api/v1/events/{failed.event_id}"))
    assert one["event"]["task"]["name"] == "Reload Finance"
    assert one["event"]["links"]["qmc"] == failed.links.qmc
    assert sorted(t["what"] for t in one["timeline"]) == ["delivered", "grouped"]

    async with viewer.get(url(console, "/api/v1/events?since=yesterday")) as response:
        assert response.status == 400
        assert "since='yesterday'" in await response.text()
    async with viewer.get(url(console, "/api/v1/events/no-such-event")) as response:
        assert response.status == 404


async def test_a_digests_receipt_ends_the_delivery_of_every_alert_it_carried(
    console: ConsoleService, viewer: aiohttp.ClientSession, broker_settings: BrokerSettings
) -> None:
    carried = [failure_now(n) for n in (11, 12)]
    prefix = broker_settings.topic_prefix
    for event in carried:
        await publish_event(broker_settings, event)
        await publish(
            broker_settings,
            topics.deliveries_topic(prefix, "emailer"),
            receipt(event, "emailer", "email-failed", "grouped", detail="grouped into digest-1"),
        )
    digest = msgspec.structs.replace(carried[0], event_id="digest-1")
    await publish(
        broker_settings,
        topics.deliveries_topic(prefix, "emailer"),
        receipt(
            digest,
            "emailer",
            "email-failed",
            "delivered",
            kind="digest",
            event_ids=[event.event_id for event in carried],
            detail="250 OK",
        ),
    )
    for event in carried:
        one = await until_json(
            viewer,
            url(console, f"/api/v1/events/{event.event_id}"),
            lambda found: [d["state"] for d in found["deliveries"]] == ["delivered"],
        )
        assert one["deliveries"][0]["detail"] == "in digest-1: 250 OK"
        assert sorted(t["what"] for t in one["timeline"]) == ["delivered", "grouped"]
    async with viewer.get(url(console, "/api/v1/events/digest-1")) as response:
        assert response.status == 404  # a digest is no event of its own


async def test_a_viewer_may_read_but_neither_replay_nor_silence_nor_test(
    console: ConsoleService, viewer: aiohttp.ClientSession
) -> None:
    token = await csrf(viewer, console)
    headers = {"X-CSRF-Token": token}
    for path, body in (
        ("/api/v1/replay", {"service": "emailer", "event_ids": ["x"]}),
        (
            "/api/v1/silences",
            {
                "matchers": [{"key": "streams", "value": "Finance"}],
                "duration": "2h",
                "comment": "x",
            },
        ),
        ("/api/v1/test", {"kind": "failed"}),
    ):
        async with viewer.post(url(console, path), json=body, headers=headers) as response:
            assert response.status == 403, path
            assert "viewer" in await response.text()
    form = {"csrf": token, "kind": "failed"}
    async with viewer.post(url(console, "/test"), data=form, allow_redirects=False) as response:
        assert response.status == 403


async def test_a_change_without_the_csrf_token_or_from_another_origin_is_refused(
    console: ConsoleService, operator: aiohttp.ClientSession, broker_settings: BrokerSettings
) -> None:
    prefix = broker_settings.topic_prefix
    async with Observer(
        broker_settings.host, broker_settings.port, topics.events_filter(prefix)
    ) as seen:
        async with operator.post(url(console, "/api/v1/test"), json={"kind": "failed"}) as response:
            assert response.status == 403
            assert "CSRF" in await response.text()
        async with operator.post(
            url(console, "/api/v1/test"),
            json={"kind": "failed"},
            headers={"X-CSRF-Token": "0" * 64},
        ) as response:
            assert response.status == 403
        token = await csrf(operator, console)
        async with operator.post(
            url(console, "/test"),
            data={"csrf": token, "kind": "failed"},
            headers={"Origin": "https://evil.example.com"},
            allow_redirects=False,
        ) as response:
            assert response.status == 403
            assert "evil.example.com" in await response.text()
        # With the token and its own origin it is done: the test alert is on the broker.
        origin = f"http://127.0.0.1:{console.port}"
        async with operator.post(
            url(console, "/test"),
            data={"csrf": token, "kind": "aborted"},
            headers={"Origin": origin},
            allow_redirects=False,
        ) as response:
            assert response.status == 303
            location = response.headers["Location"]
            event_id = location.rsplit("/", 1)[-1]
        # Its page is there at once (the sender is sent to it), before the broker's copy.
        async with operator.get(url(console, location)) as page:
            assert page.status == 200
            assert '<span class="test">test</span>' in await page.text()
        [published] = await seen.wait_for(lambda s: len(s) >= 1)
        event = events.decode(published.payload)
        assert (event.event_id, event.kind, event.test) == (event_id, "task_aborted", True)


async def test_replaying_a_dead_letter_asks_its_service_and_shows_the_answer_and_receipt(
    console: ConsoleService, operator: aiohttp.ClientSession, broker_settings: BrokerSettings
) -> None:
    prefix = broker_settings.topic_prefix
    failed = failure_now(3)
    await publish(
        broker_settings,
        topics.dead_letter_topic(prefix, "emailer"),
        dead_letter(failed, "emailer", "email-failed", "SMTP 550 mailbox unavailable"),
    )
    letters = await until_json(
        operator,
        url(console, "/api/v1/dead-letters"),
        lambda found: len(found["dead_letters"]) == 1,
    )
    [letter] = letters["dead_letters"]
    assert (letter["event_id"], letter["reason"]) == (
        failed.event_id,
        "SMTP 550 mailbox unavailable",
    )

    def is_request(seen: Seen) -> bool:
        return seen.topic == topics.replay_topic(prefix, "emailer")

    async with Observer(
        broker_settings.host, broker_settings.port, f"{prefix}/v1/replay/#"
    ) as seen:
        token = await csrf(operator, console)
        async with operator.post(
            url(console, "/api/v1/replay"),
            json={"dead_letters": [letter["seq"]]},
            headers={"X-CSRF-Token": token},
        ) as response:
            assert response.status == 200, await response.text()
            [asked] = (await response.json())["requests"]
        [message] = await seen.wait_for(lambda s: any(is_request(m) for m in s))
    request = replay.decode_request(message.payload)
    assert request.id == asked["id"]
    assert (request.event_ids, request.destination) == ([failed.event_id], "email-failed")
    assert request.requested_by == "console:olivia"

    answer = replay.ReplayAnswer(
        id=request.id,
        service="emailer",
        instance="mail-1",
        replayed=[replay.ReplayedDelivery(failed.event_id, "email-failed")],
        not_found=[],
    )
    await publish(
        broker_settings, topics.replayed_topic(prefix, "emailer", "mail-1"), replay.encode(answer)
    )
    await publish(
        broker_settings,
        topics.deliveries_topic(prefix, "emailer"),
        receipt(failed, "emailer", "email-failed", "delivered", attempts=1),
    )
    replays = await until_json(
        operator,
        url(console, "/api/v1/replays"),
        lambda found: bool(found["replays"][0]["answers"]),
    )
    assert replays["replays"][0]["answers"][0]["replayed"] == [
        {"event_id": failed.event_id, "destination": "email-failed", "target": ""}
    ]
    letters = await until_json(
        operator,
        url(console, "/api/v1/dead-letters"),
        lambda found: found["dead_letters"][0]["state_now"] == "delivered",
    )
    one = await get_json(operator, url(console, f"/api/v1/events/{failed.event_id}"))
    assert [t["what"] for t in one["timeline"]][-3:] == ["replay", "replayed", "delivered"]


async def test_a_silence_is_published_retained_listed_and_expired(
    console: ConsoleService, operator: aiohttp.ClientSession, broker_settings: BrokerSettings
) -> None:
    prefix = broker_settings.topic_prefix
    failed = failure_now(4, stream="Finance")
    await publish_event(broker_settings, failed)
    await until_json(
        operator, url(console, "/api/v1/events"), lambda found: len(found["events"]) == 1
    )
    token = await csrf(operator, console)
    headers = {"X-CSRF-Token": token}
    async with operator.post(
        url(console, "/api/v1/silences"),
        json={
            "event_id": failed.event_id,
            "scope": "stream",
            "duration": "2h",
            "comment": "DB maintenance",
        },
        headers=headers,
    ) as response:
        assert response.status == 200, await response.text()
        added = await response.json()
    assert added["matchers"] == [{"key": "streams", "value": "Finance"}]
    # Retained: a client that connects later still gets it.
    async with Observer(
        broker_settings.host, broker_settings.port, topics.silence_topic(prefix, "+")
    ) as seen:
        [message] = await seen.wait_for(lambda s: len(s) == 1)
    assert message.retain
    assert silences.decode(message.payload).comment == "DB maintenance"
    listed = await until_json(
        operator, url(console, "/api/v1/silences"), lambda found: len(found["silences"]) == 1
    )
    assert listed["silences"][0]["state"] == "active"

    for body, problem in (
        (
            {"matchers": [{"key": "streams", "value": "x"}], "duration": "2h", "comment": " "},
            "comment",
        ),
        (
            {"matchers": [{"key": "colour", "value": "x"}], "duration": "2h", "comment": "c"},
            "not a silence key",
        ),
        (
            {"matchers": [{"key": "streams", "value": "x"}], "duration": "soon", "comment": "c"},
            "duration",
        ),
    ):
        async with operator.post(
            url(console, "/api/v1/silences"), json=body, headers=headers
        ) as response:
            assert response.status == 400
            assert problem in (await response.json())["error"]

    async with operator.post(
        url(console, f"/api/v1/silences/{added['id']}/expire"), headers=headers
    ) as response:
        assert response.status == 200
    await until_json(
        operator, url(console, "/api/v1/silences"), lambda found: found["silences"] == []
    )


async def test_a_hostile_task_name_is_shown_escaped_on_every_page(
    console: ConsoleService, broker_settings: BrokerSettings, viewer: aiohttp.ClientSession
) -> None:
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    failed = failure_now(5, name=hostile, stream=hostile)
    await publish_event(broker_settings, failed)
    await until_json(
        viewer, url(console, "/api/v1/events"), lambda found: len(found["events"]) == 1
    )
    for path in (
        "/",
        f"/events/{failed.event_id}",
        f"/events/{failed.event_id}/row",
        "/?task=script",
    ):
        async with viewer.get(url(console, path)) as response:
            html = await response.text()
            assert response.status == 200, path
            assert "<script>alert" not in html, path
            assert "<img src=x" not in html, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]


async def test_a_message_that_is_not_heralds_is_dropped_and_the_console_carries_on(
    console: ConsoleService, broker_settings: BrokerSettings, viewer: aiohttp.ClientSession
) -> None:
    prefix = broker_settings.topic_prefix
    await publish(broker_settings, f"{prefix}/v1/events/task_failed/reload/x", b"{not json")
    await publish(broker_settings, topics.deliveries_topic(prefix, "emailer"), b'{"event_id": 1}')
    failed = failure_now(6)
    await publish_event(broker_settings, failed)
    found = await until_json(
        viewer, url(console, "/api/v1/events"), lambda f: len(f["events"]) == 1
    )
    assert found["events"][0]["event_id"] == failed.event_id


async def test_the_services_page_shows_each_instance_from_its_retained_messages(
    console: ConsoleService, broker_settings: BrokerSettings, viewer: aiohttp.ClientSession
) -> None:
    prefix = broker_settings.topic_prefix
    await publish(
        broker_settings, topics.status_topic(prefix, "emailer", "mail-1"), b"online", retain=True
    )
    await publish(
        broker_settings,
        topics.destinations_topic(prefix, "emailer", "mail-1"),
        msgspec.json.encode(["email-failed"]),
        retain=True,
    )
    found = await until_json(
        viewer,
        url(console, "/api/v1/services"),
        lambda f: any(i["service"] == "emailer" and i["destinations"] for i in f["instances"]),
    )
    [emailer] = [i for i in found["instances"] if i["service"] == "emailer"]
    assert (emailer["instance"], emailer["online"], emailer["destinations"]) == (
        "mail-1",
        True,
        ["email-failed"],
    )
    # The console is a service too: its own status is there.
    assert any(i["service"] == "console" and i["online"] for i in found["instances"])

    # What the instance says of itself: readiness, queue, last event, version, on the page too.
    said = self_report.SelfReport(
        version="9.9.9",
        ready=False,
        why="not connected to the <SMTP> server",
        queued=17,
        last_event_at=datetime(2026, 12, 3, 3, 2, tzinfo=UTC),
        started_at=datetime(2026, 12, 3, 0, 0, tzinfo=UTC),
    )
    report_topic = topics.self_report_topic(prefix, "emailer", "mail-1")
    await publish(broker_settings, report_topic, self_report.encode(said), retain=True)
    found = await until_json(
        viewer,
        url(console, "/api/v1/services"),
        lambda f: any(i["self_report"] for i in f["instances"] if i["instance"] == "mail-1"),
    )
    [emailer] = [i for i in found["instances"] if i["instance"] == "mail-1"]
    assert emailer["self_report"]["queued"] == 17
    assert emailer["self_report"]["ready"] is False
    assert emailer["self_report"]["version"] == "9.9.9"
    async with viewer.get(url(console, "/services")) as response:
        page = await response.text()
    assert "not ready" in page
    assert "9.9.9" in page
    assert "not connected to the &lt;SMTP&gt; server" in page
    for topic in (
        topics.status_topic(prefix, "emailer", "mail-1"),
        topics.destinations_topic(prefix, "emailer", "mail-1"),
        report_topic,
    ):
        await publish(broker_settings, topic, b"", retain=True)


@pytest.mark.parametrize("path", ["/", "/dead-letters", "/silences", "/services", "/test"])
async def test_every_page_renders_for_a_viewer(
    console: ConsoleService, viewer: aiohttp.ClientSession, path: str
) -> None:
    async with viewer.get(url(console, path)) as response:
        assert response.status == 200
        assert "victor · viewer" in await response.text()


async def test_each_stored_event_is_acknowledged_to_ingest_like_every_subscribers(
    console: ConsoleService, broker_settings: BrokerSettings
) -> None:
    # Ingest waits for every service whose status is online (the console's is): without the
    # acknowledgement it would resend every event to it until keep_for.
    prefix = broker_settings.topic_prefix
    acks = topics.acks_topic(prefix, "console", broker_settings.instance)
    async with Observer(broker_settings.host, broker_settings.port, acks) as seen:
        failed = failure_now(7)
        await publish_event(broker_settings, failed)
        await seen.wait_for(
            lambda s: any(failed.event_id in msgspec.json.decode(m.payload) for m in s)
        )


async def test_a_retried_delivery_shows_why_and_when_next_until_its_receipt_ends_it(
    console: ConsoleService, broker_settings: BrokerSettings, viewer: aiohttp.ClientSession
) -> None:
    prefix = broker_settings.topic_prefix
    failed = failure_now(8)
    await publish_event(broker_settings, failed)
    now = datetime.now(UTC)
    pending = receipts.Pending(
        event_id=failed.event_id, service="emailer", destination="email-failed",
        target="oncall@example.com", attempts=2, reason="SMTP 451 try again later", at=now,
        next_attempt_at=now + timedelta(seconds=30),
    )  # fmt: skip
    await publish(
        broker_settings, topics.pending_topic(prefix, "emailer"), receipts.encode(pending)
    )
    address = url(console, f"/api/v1/events/{failed.event_id}")

    def state(found: Any) -> tuple[str, ...]:
        deliveries = found.get("deliveries", [])
        return tuple(deliveries[0][key] or "" for key in ("state", "detail")) if deliveries else ()

    async def until_state(holds: Callable[[tuple[str, ...]], bool]) -> Any:
        for _ in range(200):
            async with viewer.get(address) as response:
                if response.status == 200 and holds(state(found := await response.json())):
                    return found
            await asyncio.sleep(0.1)
        raise AssertionError("the delivery never reached the state")

    found = await until_state(lambda s: s[:1] == ("retrying",))
    [delivery] = found["deliveries"]
    assert delivery["detail"] == "SMTP 451 try again later"
    assert delivery["attempts"] == 2
    assert pending.next_attempt_at is not None
    assert delivery["next_attempt_at"].startswith(pending.next_attempt_at.isoformat()[:19])
    async with viewer.get(url(console, "/?outcome=retrying")) as response:
        html = await response.text()
        assert "attempt 2 failed: SMTP 451 try again later; next at" in html

    await publish(
        broker_settings,
        topics.deliveries_topic(prefix, "emailer"),
        receipt(
            failed, "emailer", "email-failed", "delivered", target="oncall@example.com", attempts=3
        ),
    )
    await until_state(lambda s: s[:1] == ("delivered",))
    # A late word about an attempt before the receipt does not undo it.
    await publish(
        broker_settings, topics.pending_topic(prefix, "emailer"), receipts.encode(pending)
    )
    await publish_event(broker_settings, failure_now(9))  # after the late pending, in order
    await until_json(viewer, url(console, "/api/v1/events"), lambda f: len(f["events"]) == 2)
    assert state(await get_json(viewer, address))[0] == "delivered"
