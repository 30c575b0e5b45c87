"""``herald send-test``: a test alert through the whole pipeline, and what became of it everywhere.

Like a contact point's Test button, it tells the truth: it publishes a sample event marked
``test: true`` (a fresh id, so no ledger has seen it) and waits, up to ``--timeout``, until every
destination of every running service has reported on it. What to wait for comes from the
retained messages of the broker (``following.py``): each service instance whose status is
``online`` lists its destinations. Receipts say how a delivery ended; the pending topic says
which deliveries are still being retried, and why.

The exit status is 0 only if every destination reported and none failed: each delivered it, or
skipped it on purpose (the metrics writer and the log archiver do not count a test). A delivery
that was dead-lettered, or is still pending at the timeout, and a destination that never
answered make it 1, with a summary naming each.

"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

import msgspec

from herald_shared import config, events, following, samples, topics
from herald_shared.bus import Bus, Handler, Message
from herald_shared.delivery.destination import DeliveryError
from herald_shared.delivery.receipts import Pending, Receipt
from herald_shared.following import Follower, receipt_line, where
from herald_shared.settings import BrokerSettings

__all__ = ["DEFAULT_TIMEOUT", "Watch", "connection", "register", "send_test", "test_event"]

_SAMPLES: dict[str, Callable[[], events.Event]] = {
    "failed": samples.sample_failed,
    "aborted": samples.sample_aborted,
    "succeeded": samples.sample_succeeded,
}

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0

_Delivery = tuple[str, str, str]  # service, destination, target


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
        test=True,
    )


@dataclass(kw_only=True)
class Watch(Follower):
    """What the broker has said so far about the services and about one test alert."""

    event_id: str
    receipts: dict[_Delivery, Receipt] = field(default_factory=dict)
    pending: dict[_Delivery, Pending] = field(default_factory=dict)

    def heard(self, section: str, rest: list[str], payload: bytes) -> None:
        if section == "deliveries":
            self._receipt(msgspec.json.decode(payload, type=Receipt))
        elif section == "pending":
            self._pending(msgspec.json.decode(payload, type=Pending))

    def _receipt(self, receipt: Receipt) -> None:
        if receipt.event_id != self.event_id:
            return
        self.receipts[(receipt.service, receipt.destination, receipt.target)] = receipt
        self.say(receipt_line(receipt))

    def _pending(self, pending: Pending) -> None:
        if pending.event_id != self.event_id:
            return
        self.pending[(pending.service, pending.destination, pending.target)] = pending
        if pending.attempts:  # "taken on" is not news; a failed attempt is
            self.say(f"{pending.service}: {_retrying(pending)}")

    def expected(self) -> set[tuple[str, str]]:
        """(service, destination) of every destination of every instance that is online."""
        return {
            (service, name)
            for (service, _), names in self.roster.running().items()
            for name in names
        }

    def unfinished(self) -> list[str]:
        """Every destination or delivery still owed a receipt, described; empty when all ended."""
        owed: list[str] = []
        for service, name in sorted(self.expected()):
            deliveries = [key for key in self.receipts if key[:2] == (service, name)]
            waiting = [
                pending
                for key, pending in self.pending.items()
                if key[:2] == (service, name) and key not in self.receipts
            ]
            owed += [f"{service}: {_retrying(pending)}" for pending in waiting]
            if not deliveries and not waiting:
                owed.append(f"{service}: {name}: no report")
        return owed

    def done(self) -> bool:
        return bool(self.expected()) and not self.unfinished()

    def failures(self) -> list[str]:
        return [
            f"{key[0]}: {where(key[1], key[2])}: {receipt.outcome}"
            + (f": {receipt.detail}" if receipt.detail else "")
            for key, receipt in sorted(self.receipts.items())
            if receipt.outcome in ("dead_lettered", "suppressed")
        ]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for receipt in self.receipts.values():
            counts[receipt.outcome] = counts.get(receipt.outcome, 0) + 1
        parts = [f"{counts[outcome]} {outcome}" for outcome in sorted(counts)]
        unfinished = self.unfinished()
        silent = sum(line.endswith(": no report") for line in unfinished)
        if len(unfinished) > silent:
            parts.append(f"{len(unfinished) - silent} still pending")
        if silent:
            parts.append(f"{silent} without a report")
        return ", ".join(parts) or "no reports"


def _retrying(pending: Pending) -> str:
    place = where(pending.destination, pending.target)
    if not pending.attempts:
        return f"{place}: pending, not attempted yet"
    line = f"{place}: pending, attempt {pending.attempts} failed: {pending.reason}"
    if pending.next_attempt_at is not None:
        line += f"; retrying at {pending.next_attempt_at.astimezone():%H:%M:%S}"
    return line


def connection(broker: BrokerSettings, handler: Handler) -> Bus:
    """send-test's own connection (``following.connection``)."""
    families = ("status", "destinations", "deliveries", "pending")
    return following.connection(broker, "send-test", families, handler)


async def send_test(
    broker: BrokerSettings, kind: str, within: float, out: TextIO = sys.stdout
) -> int:
    event = test_event(kind)
    prefix = broker.topic_prefix
    watch = Watch(event_id=event.event_id, prefix=prefix, out=out)

    async def on_message(message: Message) -> None:
        try:
            watch.take(message.topic, message.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("ignoring a message on %s that is not Herald's: %s", message.topic, error)

    bus = connection(broker, on_message)
    if not await following.connect(bus):
        return 1
    try:
        await bus.publish(topics.topic_of(prefix, event), events.encode(event))
        print(
            f"published the test alert {event.kind} {event.event_id} for task "
            f"{event.task.name!r}; waiting up to {within:g} s for every destination",
            file=out,
            flush=True,
        )
        await following.wait_until(watch.changed, watch.done, within)  # the verdict says why
    finally:
        await bus.close()
    return _verdict(watch, within, out)


def _verdict(watch: Watch, timeout: float, out: TextIO) -> int:
    print(f"summary: {watch.summary()}", file=out, flush=True)
    if not watch.expected():
        print(
            "herald: no running service announced its destinations on "
            "herald/v1/destinations/#: is any Herald service connected to this broker?",
            file=sys.stderr,
        )
        return 1
    problems = watch.failures() + [f"{line} (after {timeout:g} s)" for line in watch.unfinished()]
    if problems:
        print("herald: the test alert did not reach every destination:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from herald_shared.cli import add_config_argument

    parser = commands.add_parser(
        "send-test", help="send a test alert and wait for every destination's report"
    )
    add_config_argument(parser)
    parser.add_argument(
        "--kind",
        choices=sorted(_SAMPLES),
        default="failed",
        help="which sample alert to send (default: failed)",
    )
    parser.add_argument(
        "--timeout",
        "--wait",  # its name before it waited for every destination
        dest="timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for every destination's report (default {DEFAULT_TIMEOUT:g})",
    )
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
    return asyncio.run(send_test(broker, arguments.kind, arguments.timeout))


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
