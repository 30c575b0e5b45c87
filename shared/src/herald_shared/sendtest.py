"""``herald send-test``: a synthetic event through the whole pipeline, and what became of it.

It publishes a sample event (marked ``source: test``, with a fresh id so no ledger has seen it)
on the events topic, then prints every delivery receipt and dead letter about it that arrives
within the wait. The exit status is 0 when at least one service delivered it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from herald_shared import config, events, samples, topics
from herald_shared.bus import Bus, Message
from herald_shared.delivery.destination import DeliveryError
from herald_shared.settings import BrokerSettings

_SAMPLES: dict[str, Callable[[], events.Event]] = {
    "failed": samples.sample_failed,
    "aborted": samples.sample_aborted,
    "succeeded": samples.sample_succeeded,
}


def test_event(kind: str) -> events.Event:
    sample = _SAMPLES[kind]()
    execution_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    local = now.astimezone()
    return msgspec.structs.replace(
        sample,
        event_id=events.event_id_for(sample.kind, execution_id),
        execution=msgspec.structs.replace(sample.execution, id=execution_id),
        occurred_at=now,
        received_at=now,
        # The scheduler stamps its own local time; so does this.
        log_timestamp=local.strftime("%Y-%m-%d %H:%M:%S,") + f"{local.microsecond // 1000:03d}",
        source="test",
    )


async def send_test(broker: BrokerSettings, kind: str, wait: float) -> int:
    event = test_event(kind)
    prefix = broker.topic_prefix
    outcomes: list[str] = []

    async def on_report(message: Message) -> None:
        report = msgspec.json.decode(message.payload)
        if report.get("event_id") == event.event_id:
            outcomes.append(report["outcome"])
            where = report["destination"] + (f" ({report['target']})" if report["target"] else "")
            detail = f": {report['detail']}" if report.get("detail") else ""
            print(f"{report['service']}: {where}: {report['outcome']}{detail}", flush=True)
        elif (report.get("event") or {}).get("event_id") == event.event_id:
            print(f"{report['service']}: dead letter: {report['reason']}", flush=True)

    bus = Bus(
        broker,
        "send-test",
        subscriptions=[
            f"{prefix}/{topics.VERSION}/deliveries/#",
            f"{prefix}/{topics.VERSION}/dead-letter/#",
        ],
        handler=on_report,
        persistent=False,
    )
    bus.start()
    try:
        await asyncio.wait_for(bus.wait_connected(), broker.connect_timeout)
    except TimeoutError:
        print(f"herald: cannot reach the broker at {broker.host}:{broker.port}", file=sys.stderr)
        await bus.close()
        return 1
    await bus.publish(topics.topic_of(prefix, event), events.encode(event))
    print(
        f"published {event.kind} {event.event_id} for task {event.task.name!r}; waiting {wait:g} s for receipts"
    )
    await asyncio.sleep(wait)
    await bus.close()
    if "delivered" not in outcomes:
        print("herald: no service reported a delivery", file=sys.stderr)
        return 1
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from herald_shared.cli import add_config_argument

    parser = commands.add_parser("send-test", help="send a synthetic event and show its receipts")
    add_config_argument(parser)
    parser.add_argument("--kind", choices=sorted(_SAMPLES), default="failed")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for receipts")
    parser.add_argument(
        "--email",
        metavar="ADDRESS",
        help="instead, send a test e-mail to ADDRESS through the emailer's SMTP server and show its answer",
    )
    parser.set_defaults(handler=_handle)


def _handle(arguments: argparse.Namespace) -> int:
    document = config.load(arguments.config)
    if arguments.email:
        return _send_test_email(document, arguments.email)
    broker = document.section("broker", BrokerSettings)
    return asyncio.run(send_test(broker, arguments.kind, arguments.wait))


def _send_test_email(document: config.ConfigDocument, address: str) -> int:
    try:
        from herald_emailer.service import SERVICE, send_test_message
    except ImportError:
        print("herald: the emailer (herald-emailer) is not installed", file=sys.stderr)
        return 2
    settings = SERVICE.load_settings(document)
    try:
        answer = asyncio.run(send_test_message(settings, address))
    except DeliveryError as error:
        print(
            f"herald: the test e-mail to {address} was not accepted: {error.reason}",
            file=sys.stderr,
        )
        return 1
    print(f"the SMTP server accepted the test e-mail to {address}: {answer}")
    return 0
