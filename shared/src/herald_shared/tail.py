"""``herald tail``: everything that goes over Herald's topics, one readable line each.

Events, delivery receipts, dead letters and service status (not the acknowledgements the
services send ingest), as an operator wants to watch them
(``herald tail --config herald.yaml``); ``herald demo`` uses it to show what happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from datetime import datetime
from typing import Any, TextIO

import msgspec

from herald_shared import config, events, topics
from herald_shared.bus import Bus, Message
from herald_shared.settings import BrokerSettings


def describe(topic: str, payload: bytes) -> str:
    """One line for one message on a Herald topic."""
    parts = topic.split("/")
    section = parts[2] if len(parts) > 2 else ""
    try:
        if section == "events":
            return _event_line(events.decode(payload))
        if section == "status":
            return f"STATUS     {'/'.join(parts[3:])} is {payload.decode()}"
        report: dict[str, Any] = msgspec.json.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return f"?          {topic}: {payload[:120]!r}"
    if section == "deliveries":
        where = f"{report['service']}/{report['destination']}"
        target = f" to {report['target']}" if report.get("target") else ""
        detail = f": {report['detail']}" if report.get("detail") else ""
        return f"DELIVERY   {where}{target} {report['outcome']} ({report['task_name']}){detail}"
    if section == "dead-letter":
        return f"DEAD       {report['service']}/{report.get('destination')}: {report['reason']}"
    return f"?          {topic}"


def _event_line(event: events.Event) -> str:
    app = event.app
    where = f' app "{app.name}"' if app is not None else ""
    if app is not None and app.stream is not None:
        where += f" in {app.stream.name}"
    line = f'EVENT      {event.kind} "{event.task.name}"{where} on {event.sense_host}'
    if event.execution.status:
        line += f", {event.execution.status}"
    if event.script_log is not None:
        line += f", script log {event.script_log.total_lines} lines"
    if event.enrichment.status == "partial":
        line += f" [partial: {'; '.join(event.enrichment.reasons)}]"
    if isinstance(event, events.TaskSucceeded) and event.recovers is not None:
        line += f" [recovers the {event.recovers.kind.removeprefix('task_')} of {event.recovers.occurred_at:%Y-%m-%d %H:%M}]"
    return line


async def tail(broker: BrokerSettings, out: TextIO = sys.stdout) -> None:
    """Print until cancelled."""

    async def show(message: Message) -> None:
        if message.topic.split("/")[2:3] == ["acks"]:
            return  # bookkeeping between the services and ingest, one per batch and service
        print(
            f"{datetime.now():%H:%M:%S} {describe(message.topic, message.payload)}",
            file=out,
            flush=True,
        )

    subscription = f"{broker.topic_prefix}/{topics.VERSION}/#"
    bus = Bus(broker, "tail", subscriptions=[subscription], handler=show, persistent=False)
    bus.start()
    try:
        await asyncio.Event().wait()
    finally:
        await bus.close()


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from herald_shared.cli import add_config_argument

    parser = commands.add_parser("tail", help="print what goes over Herald's topics")
    add_config_argument(parser)
    parser.set_defaults(handler=_handle)


def _handle(arguments: argparse.Namespace) -> int:
    broker = config.load(arguments.config).section("broker", BrokerSettings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail(broker))
    return 0
