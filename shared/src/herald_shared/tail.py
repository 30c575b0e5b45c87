"""``herald tail``: everything that goes over Herald's topics, one readable line each.

Events, delivery receipts, dead letters, silences, replay requests and their answers, service
status and destination lists, and a test alert's pending deliveries (not the acknowledgements the services send ingest), as an
operator wants to watch them
(``herald tail --config herald.yaml``); ``herald demo`` uses it to show what happens. ``--json``
prints one JSON object per message instead (for ``jq``), and ``--service``, ``--kind`` and
``--task`` keep only what concerns a service, an event kind or tasks whose name matches. Its
connection is ephemeral (a fresh client id, a clean session, no status), so two tails, or a tail
beside the demo, never push each other off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

from herald_shared import config, events, replay, self_report, silences, topics
from herald_shared.bus import Bus, Message
from herald_shared.delivery.receipts import attempts_done
from herald_shared.matcher import matches_pattern
from herald_shared.settings import BrokerSettings

__all__ = ["ReadinessChanges", "describe", "register", "tail"]


def describe(topic: str, payload: bytes) -> str:
    """One line for one message on a Herald topic."""
    parts = topic.split("/")
    section = parts[2] if len(parts) > 2 else ""
    try:
        if section == "events":
            return _event_line(events.decode(payload))
        if section == "status" and parts[-1] == "health":
            return _self_report_line("/".join(parts[3:-1]), payload)
        if section == "status":
            return f"STATUS     {'/'.join(parts[3:])} is {payload.decode()}"
        if section == "silences":
            return _silence_line("/".join(parts[3:]), payload)
        if section == "lease":
            return _lease_line("/".join(parts[3:]), payload)
        if section == "destinations":
            names = msgspec.json.decode(payload, type=list[str]) if payload else []
            return f"SERVES     {'/'.join(parts[3:])}: {', '.join(names) or '(stopped)'}"
        if section == "replay":
            request = replay.decode_request(payload)
            asked = f"{replay.described(request)}, asked by {request.requested_by}"
            return f"REPLAY     {'/'.join(parts[3:])}: {asked}"
        if section == "replayed":
            return _replayed_line(replay.decode_answer(payload))
        report: dict[str, Any] = msgspec.json.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError):
        return f"?          {topic}: {payload[:120]!r}"
    if section == "deliveries":
        where = f"{report['service']}/{report['destination']}"
        target = f" to {report['target']}" if report.get("target") else ""
        detail = f": {report['detail']}" if report.get("detail") else ""
        return f"DELIVERY   {where}{target} {report['outcome']} ({report['task_name']}){detail}"
    if section == "pending":
        where = f"{report['service']}/{report['destination']}"
        target = f" to {report['target']}" if report.get("target") else ""
        return f"PENDING    {where}{target} (test alert) after {attempts_done(report['attempts'])}: {report['reason']}"
    if section == "dead-letter":
        return f"DEAD       {report['service']}/{report.get('destination')}: {report['reason']}"
    return f"?          {topic}"


def _replayed_line(answer: replay.ReplayAnswer) -> str:
    """One instance's answer to a replay request (``replay.py``)."""
    said = [f"{len(answer.replayed)} back to pending"]
    if answer.not_found:
        said.append(f"no dead letter of {', '.join(answer.not_found)}")
    if answer.unknown_destinations:
        said.append(f"not configured: {', '.join(answer.unknown_destinations)}")
    return f"REPLAYED   {answer.service}/{answer.instance}: {'; '.join(said)}"


def _lease_line(job: str, payload: bytes) -> str:
    """``herald/v1/lease/ingest/reconcile``: which ingest sweeps the QRS (ingest's lease.py)."""
    if not payload:
        return f"LEASE      {job} cleared"
    claim: dict[str, Any] = msgspec.json.decode(payload)
    until = datetime.fromtimestamp(float(claim.get("expires_at", 0)), UTC)
    return f"LEASE      {job} held by {claim.get('holder')} until {until:%Y-%m-%d %H:%M:%S} UTC"


_PROBLEM = {"task_failed": "failure", "task_aborted": "abort"}
# How an event reached ingest, when not by the scheduler's datagram (the usual way).
_SOURCE = {"reconcile": "found by the reconciliation sweep: its datagram never arrived"}


def _silence_line(silence_id: str, payload: bytes) -> str:
    if not payload:
        return f"SILENCE    {silence_id} expired (cleared)"
    try:
        return f"SILENCE    {silences.decode(payload).describe()}"
    except ValueError as error:
        return f"SILENCE    {silence_id}: unreadable, ignored by the services ({error})"


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
    if event.source != "udp":
        line += f" [{_SOURCE.get(event.source, f'source: {event.source}')}]"
    if isinstance(event, events.TaskSucceeded) and event.recovers is not None:
        line += f" [recovers from the {_PROBLEM[event.recovers.kind]} of {event.recovers.occurred_at:%Y-%m-%d %H:%M}]"
    return line


@dataclass(frozen=True)
class Only:
    """``--service``, ``--kind``, ``--task``: a message is shown when it matches every one given.

    A message that cannot match a filter (a status line has no task) is left out while it is set.
    """

    service: str | None = None
    kind: str | None = None
    task: str | None = None  # a name pattern (`*`, `?`), case-insensitive

    def admits(self, topic: str, payload: bytes) -> bool:
        if self.service is None and self.kind is None and self.task is None:
            return True
        facts = _facts(topic, payload)
        task = facts.get("task")
        return (
            _same(self.service, facts.get("service"))
            and _same(self.kind, facts.get("kind"))
            and (self.task is None or (task is not None and matches_pattern([self.task], task)))
        )


class ReadinessChanges:
    """Which self-reports are news to a person watching: a change of an instance's readiness or
    version, or its stop. The reports also come with every change of its queue and every minute
    (``self_report.py``), which would drown the events in a busy tail."""

    def __init__(self) -> None:
        self._said: dict[str, tuple[bool, str, str] | None] = {}

    def news(self, topic: str, payload: bytes) -> bool:
        if topic.split("/")[2:3] != ["status"] or not topic.endswith("/health"):
            return True  # not a self-report
        try:
            report = self_report.decode(payload) if payload else None
        except ValueError:
            return True  # shown as what it is: not Herald's
        said = None if report is None else (report.ready, report.why, report.version)
        if topic in self._said and self._said[topic] == said:
            return False
        self._said[topic] = said
        return True


def _same(wanted: str | None, found: str | None) -> bool:
    return wanted is None or wanted == found


def _self_report_line(instance: str, payload: bytes) -> str:
    if not payload:
        return f"HEALTH     {instance}: (stopped)"
    report = self_report.decode(payload)
    ready = "ready" if report.ready else f"NOT READY ({report.why})"
    return f"HEALTH     {instance}: {ready}, {report.queued} queued, version {report.version}"


def _facts(topic: str, payload: bytes) -> dict[str, str]:
    """What a message is about: its service, event kind and task name, where it has them."""
    parts = topic.split("/")
    section = parts[2] if len(parts) > 2 else ""
    try:
        if section == "events":
            event = events.decode(payload)
            return {"kind": event.kind, "task": event.task.name}
        if section in ("status", "destinations") and len(parts) > 3:
            return {"service": parts[3]}
        report: dict[str, Any] = msgspec.json.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return {}
    if not isinstance(report, dict):
        return {}
    facts = {"service": str(report.get("service", ""))}
    about = report.get("event") if section == "dead-letter" else report
    if isinstance(about, dict):
        if "kind" in about:
            facts["kind"] = str(about["kind"])
        task = about.get("task_name") or (about.get("task") or {}).get("name")
        if task is not None:
            facts["task"] = str(task)
    return facts


def as_json(topic: str, payload: bytes, received: datetime) -> str:
    """One JSON object per message: when it arrived, its topic and its payload as it was sent."""
    try:
        body: Any = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        body = payload.decode(errors="replace")  # status lines are plain `online`/`offline`
    return msgspec.json.encode(
        {"received": received.isoformat(timespec="milliseconds"), "topic": topic, "payload": body}
    ).decode()


async def tail(
    broker: BrokerSettings, out: TextIO = sys.stdout, *, only: Only = Only(), json: bool = False
) -> None:
    """Print until cancelled."""

    readiness = ReadinessChanges()

    async def show(message: Message) -> None:
        if message.topic.split("/")[2:3] in (["acks"], ["lease"]):
            # Bookkeeping: acknowledgements (one per batch and service) and the sweep's lease
            # (renewed every interval) would drown what an operator watches for.
            return
        if not readiness.news(message.topic, message.payload):
            return
        if not only.admits(message.topic, message.payload):
            return
        now = datetime.now().astimezone()
        if json:
            line = as_json(message.topic, message.payload, now)
        else:
            line = f"{now:%H:%M:%S} {describe(message.topic, message.payload)}"
        print(line, file=out, flush=True)

    subscription = f"{broker.topic_prefix}/{topics.VERSION}/#"
    bus = Bus(broker, "tail", subscriptions=[subscription], handler=show, ephemeral=True)
    bus.start()
    try:
        await asyncio.Event().wait()
    finally:
        await bus.close()


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from herald_shared.cli import add_config_argument

    parser = commands.add_parser("tail", help="print what goes over Herald's topics")
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    parser.add_argument("--service", help="only this service's receipts, dead letters and status")
    parser.add_argument(
        "--kind",
        choices=events.KINDS,
        help="only events, receipts and dead letters of this kind",
    )
    parser.add_argument(
        "--task", metavar="PATTERN", help="only tasks whose name matches, e.g. 'Reload Finance*'"
    )
    parser.set_defaults(handler=_handle)


def _handle(arguments: argparse.Namespace) -> int:
    broker = config.load(arguments.config).section("broker", BrokerSettings)
    only = Only(service=arguments.service, kind=arguments.kind, task=arguments.task)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail(broker, only=only, json=arguments.json))
    return 0
