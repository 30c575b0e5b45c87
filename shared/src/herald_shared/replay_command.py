"""``herald replay``: deliver dead letters again, once what made them fail is fixed.

It reads which service instances are online from the broker's retained messages
(``following.py``), asks each chosen service on ``herald/v1/replay/<service>`` (one
:class:`~herald_shared.replay.ReplayRequest`), waits for the answer of every online instance of
it (each answers for its own ledger), then follows the receipts of the deliveries they put back
to pending until each has ended, a line per delivery. The contract is ``replay.py``; the service
side is ``delivery/replaying.py``.

Exit status: 0 when every replayed delivery was delivered, or there was nothing to replay and no
event id was asked for; 1 when a replayed delivery failed again or was still pending at
``--timeout``, an instance did not answer, an asked-for event has no dead letter anywhere, or
the broker cannot be reached; 2 for a service or destination that no online instance has.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

import msgspec

from herald_shared import config, following, replay, topics
from herald_shared.arguments import moment_or_ago
from herald_shared.bus import BusError, Message
from herald_shared.delivery.receipts import Receipt
from herald_shared.following import Follower, Instance, Roster, receipt_line, where
from herald_shared.replay import ReplayAnswer, ReplayRequest
from herald_shared.settings import BrokerSettings

__all__ = ["DEFAULT_TIMEOUT", "register", "run"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
EXIT_FAILED, EXIT_USAGE = 1, 2

_Delivery = tuple[str, str, str, str]  # service, event id, destination, target


@dataclass(kw_only=True)
class Follow(Follower):
    """What the broker has said so far about the services and about one replay request."""

    request: ReplayRequest
    awaited: set[Instance] = field(default_factory=set)  # whose answers are waited for
    answers: dict[Instance, ReplayAnswer] = field(default_factory=dict)
    # What the answers put back to pending, in their order (a dict: an ordered set).
    replayed: dict[_Delivery, None] = field(default_factory=dict)
    receipts: dict[_Delivery, Receipt] = field(default_factory=dict)

    def heard(self, section: str, rest: list[str], payload: bytes) -> None:
        if section == "replayed" and len(rest) == 2:
            self._answer((rest[0], rest[1]), replay.decode_answer(payload))
        elif section == "deliveries":
            self._receipt(msgspec.json.decode(payload, type=Receipt))

    def _answer(self, instance: Instance, answer: ReplayAnswer) -> None:
        if answer.id != self.request.id or instance in self.answers:
            return
        self.answers[instance] = answer
        service, name = instance[0], "/".join(instance)
        self.replayed.update(
            dict.fromkeys((service, r.event_id, r.destination, r.target) for r in answer.replayed)
        )
        count = len(answer.replayed)
        what = f"replaying {count} dead letter{'s' if count != 1 else ''}" if count else None
        self.say(f"{name}: {what or 'nothing to replay'}")
        for destination in answer.unknown_destinations:
            self.say(f"{name}: {destination} is not configured there; its dead letters stay")

    def _receipt(self, receipt: Receipt) -> None:
        # A service publishes in the order it commits: the answer, then the receipts of what it
        # replayed. A receipt before the answer is of an end before the replay.
        key = (receipt.service, receipt.event_id, receipt.destination, receipt.target)
        if key in self.receipts or key not in self.replayed:
            return
        self.receipts[key] = receipt
        self.say(receipt_line(receipt))

    def answered(self) -> bool:
        return self.awaited <= set(self.answers)

    def unfinished(self) -> list[_Delivery]:
        return [key for key in self.replayed if key not in self.receipts]

    def ended(self) -> bool:
        return self.answered() and not self.unfinished()

    def not_found(self) -> list[str]:
        """Asked-for event ids that no instance that answered has a dead letter for."""
        return [
            event_id
            for event_id in self.request.event_ids
            if self.answers and all(event_id in a.not_found for a in self.answers.values())
        ]


async def run(
    broker: BrokerSettings,
    request: ReplayRequest,
    services: list[str],
    within: float,
    out: TextIO = sys.stdout,
) -> int:
    """Ask ``services`` (none: every online one) to replay; the command's exit status."""
    prefix = broker.topic_prefix
    follow = Follow(request=request, prefix=prefix, out=out)

    async def on_message(message: Message) -> None:
        try:
            follow.take(message.topic, message.payload)
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("ignoring a message on %s that is not Herald's: %s", message.topic, error)

    families = ("status", "destinations", "replayed", "deliveries")
    bus = following.connection(broker, "replay", families, on_message)
    if not await following.connect(bus):
        return EXIT_FAILED
    try:
        await following.settled(follow.roster_changed)
        chosen = _chosen(follow.roster, services, request.destination)
        if isinstance(chosen, int):
            return chosen
        follow.awaited = {i for i in follow.roster.running() if i[0] in chosen}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        for service in chosen:
            try:
                await bus.publish(topics.replay_topic(prefix, service), replay.encode(request))
            except BusError as error:  # e.g. an account the ACL does not let ask
                print(f"herald: cannot ask {service} to replay: {error}", file=sys.stderr)
                return EXIT_FAILED
        follow.say(f"asked {_asked(follow, chosen)} to replay {replay.described(request)}")
        await following.wait_until(follow.changed, follow.answered, deadline - loop.time())
        await following.wait_until(follow.changed, follow.ended, deadline - loop.time())
    finally:
        await bus.close()
    return _verdict(follow, within)


def _chosen(roster: Roster, services: list[str], destination: str | None) -> list[str] | int:
    """The services to ask, or the exit status of why there are none."""
    running = roster.running()
    online = sorted({service for service, _ in running})
    if not online:
        print(
            "herald: no subscriber service is online (none announced its destinations on "
            "herald/v1/destinations/#): is any Herald service connected to this broker?",
            file=sys.stderr,
        )
        return EXIT_FAILED
    absent = [service for service in services if service not in online]
    if absent:
        print(
            f"herald: no instance of {', '.join(absent)} is online (online: {', '.join(online)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    chosen = services or online
    if destination is None:
        return chosen
    having = [s for s in chosen if any(destination in n for (t, _), n in running.items() if t == s)]
    if not having:
        known = sorted({name for (s, _), names in running.items() if s in chosen for name in names})
        print(
            f"herald: no online instance of {', '.join(chosen)} delivers to {destination!r} "
            f"(their destinations: {', '.join(known)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return having


def _asked(follow: Follow, chosen: list[str]) -> str:
    counts = {service: sum(1 for s, _ in follow.awaited if s == service) for service in chosen}
    return ", ".join(
        f"{service} ({count} instance{'s' if count != 1 else ''})"
        for service, count in counts.items()
    )


def _verdict(follow: Follow, within: float) -> int:
    problems = [
        f"no answer from {'/'.join(instance)} within {within:g} s: is it running? (the request"
        " waits in its session on the broker)"
        for instance in sorted(follow.awaited - set(follow.answers))
    ]
    problems += [
        f"{event_id}: no dead letter for it (never held here, delivered, or purged)"
        for event_id in follow.not_found()
    ]
    replayed = follow.replayed
    if not replayed:
        follow.say(f"nothing to replay: no instance holds {replay.described(follow.request)}")
    else:
        problems += [
            receipt_line(receipt)
            for key in replayed
            if (receipt := follow.receipts.get(key)) is not None and receipt.outcome != "delivered"
        ]
        problems += [
            f"{service}: {where(destination, target)}: still pending after {within:g} s"
            for service, _, destination, target in follow.unfinished()
        ]
        follow.say(f"summary: {_summary(follow)}")
    if problems:
        print("herald: not everything asked for was delivered again:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _summary(follow: Follow) -> str:
    counts: dict[str, int] = {}
    for key in follow.replayed:
        receipt = follow.receipts.get(key)
        outcome = "still pending" if receipt is None else receipt.outcome
        counts[outcome] = counts.get(outcome, 0) + 1
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from herald_shared.cli import add_config_argument

    parser = commands.add_parser(
        "replay",
        help="deliver dead letters again and follow them until each has ended",
        description="Ask the running services to deliver their dead letters again (all of "
        "them, or those chosen by event id, destination and time), and follow each until it "
        "is delivered or dead-lettered again. Exit status 0 when every one was delivered.",
    )
    add_config_argument(parser)
    parser.add_argument(
        "event_ids", nargs="*", metavar="ID", help="only these events (default: every one)"
    )
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        help="only this service (repeatable; default: every subscriber service online)",
    )
    parser.add_argument("--destination", help="only the dead letters of this destination")
    parser.add_argument(
        "--since",
        type=moment_or_ago,
        help="only those dead-lettered since then: a time (2026-12-03T06:00, local unless "
        "it has a zone) or a duration ago (2h, 1d)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the answers and the deliveries (default {DEFAULT_TIMEOUT:g})",
    )
    parser.set_defaults(handler=_handle)


def _handle(arguments: argparse.Namespace) -> int:
    broker = config.load(arguments.config).section("broker", BrokerSettings)
    request = ReplayRequest(
        id=replay.new_request_id(),
        event_ids=list(dict.fromkeys(arguments.event_ids)),
        destination=arguments.destination,
        since=None if arguments.since is None else arguments.since.astimezone(UTC),
        requested_by=getpass.getuser(),
        requested_at=datetime.now(UTC),
    )
    return asyncio.run(run(broker, request, arguments.service, arguments.timeout))
