"""``herald silence add | list | expire``: silences on the broker, for the people on call.

``add`` publishes a retained :class:`~herald_shared.silences.Silence` on
``herald/v1/silences/<id>`` and prints its id; ``list`` reads the retained ones and shows each
with its state (active, pending, expired); ``expire ID`` (or a unique start of it) clears its
retained message, which every service takes as the silence's end. Times are shown in the local
time zone; a ``--until`` without a zone is local time too.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from herald_shared import config, following, silences, topics
from herald_shared.arguments import duration, moment
from herald_shared.bus import Bus, BusError, Message
from herald_shared.settings import BrokerSettings
from herald_shared.silences import Matcher, Silence

__all__ = ["new_silence", "register", "state"]


def _matcher(text: str) -> Matcher:
    key, equals, value = text.partition("=")
    if not equals or not key.strip() or not value:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write KEY=VALUE, e.g. streams=Finance or 'task_names=Reload Finance*'"
        )
    matcher = Matcher(key.strip(), value)
    try:
        silences.criterion(matcher)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return matcher


def new_silence(
    matchers: Sequence[Matcher],
    *,
    now: datetime,
    ends: datetime,
    comment: str,
    author: str,
    services: list[str] | None = None,
    destinations: list[str] | None = None,
) -> Silence:
    """A silence starting now; raises ValueError when it would end before it starts."""
    if ends <= now:
        raise ValueError(f"the silence would end ({ends:%Y-%m-%d %H:%M %Z}) before it starts")
    return Silence(
        id=silences.new_id(),
        matchers=list(matchers),
        starts=now.astimezone(UTC),
        ends=ends.astimezone(UTC),
        author=author,
        comment=comment,
        services=services,
        destinations=destinations,
    )


async def _connected(broker: BrokerSettings, handler: Callable[[Message], None] | None) -> Bus:
    async def handle(message: Message) -> None:
        if handler is not None:
            handler(message)

    subscriptions = [topics.silence_topic(broker.topic_prefix, "+")] if handler else []
    bus = Bus(
        broker,
        "silence",
        subscriptions=subscriptions,
        handler=handle if handler else None,
        # A fresh client id per run and no status: two commands at once never push each other
        # off, and ingest never takes the command for a service that acknowledges events.
        ephemeral=True,
    )
    bus.start()
    try:
        await asyncio.wait_for(bus.wait_connected(), broker.connect_timeout)
    except TimeoutError:
        await bus.close()
        raise BusError(f"cannot reach the broker at {broker.host}:{broker.port}") from None
    return bus


async def _publish(broker: BrokerSettings, silence_id: str, payload: bytes) -> None:
    """The silence's retained message (an empty ``payload`` clears it)."""
    bus = await _connected(broker, None)
    try:
        await bus.publish(
            topics.silence_topic(broker.topic_prefix, silence_id), payload, retain=True
        )
    finally:
        await bus.close()


async def _fetch(broker: BrokerSettings) -> list[Silence]:
    """Every silence retained on the broker, oldest first; unreadable ones are reported."""
    found: dict[str, Silence] = {}
    arrived = asyncio.Event()

    def take(message: Message) -> None:
        arrived.set()
        if not message.payload:
            return
        try:
            silence = silences.decode(message.payload)
        except ValueError as error:
            print(f"herald: ignoring {message.topic}: {error}", file=sys.stderr)
            return
        found[silence.id] = silence

    bus = await _connected(broker, take)
    try:
        await following.settled(arrived)
    finally:
        await bus.close()
    return sorted(found.values(), key=lambda silence: silence.starts)


def state(silence: Silence, now: datetime) -> str:
    if now < silence.starts:
        return "pending"
    return "active" if now < silence.ends else "expired"


def _list_line(silence: Silence, now: datetime) -> str:
    ends = silence.ends.astimezone()
    return (
        f"{silence.id}  {state(silence, now):<7}  until {ends:%Y-%m-%d %H:%M %Z}  "
        f"{silence.what()}  by {silence.author}: {silence.comment}"
    )


def _broker(arguments: argparse.Namespace) -> BrokerSettings:
    return config.load(arguments.config).section("broker", BrokerSettings)


def _add(arguments: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    ends = now + arguments.duration if arguments.duration is not None else arguments.until
    try:
        silence = new_silence(
            arguments.match,
            now=now,
            ends=ends,
            comment=arguments.comment,
            author=arguments.author,
            services=arguments.service or None,
            destinations=arguments.destination or None,
        )
    except ValueError as error:
        print(f"herald: {error}", file=sys.stderr)
        return 2
    broker = _broker(arguments)
    asyncio.run(_publish(broker, silence.id, silences.encode(silence)))
    print(f"added silence {silence.id} until {silence.ends.astimezone():%Y-%m-%d %H:%M %Z}")
    return 0


def _list(arguments: argparse.Namespace) -> int:
    found = asyncio.run(_fetch(_broker(arguments)))
    now = datetime.now(UTC)
    shown = [s for s in found if arguments.all or state(s, now) != "expired"]
    if not shown:
        print("no silences")
    for silence in shown:
        print(_list_line(silence, now))
    return 0


def _expire(arguments: argparse.Namespace) -> int:
    broker = _broker(arguments)
    found = asyncio.run(_fetch(broker))
    chosen = [s for s in found if s.id.startswith(arguments.id)]
    if len(chosen) != 1:
        why = "no silence" if not chosen else f"{len(chosen)} silences"
        print(
            f"herald: {why} on {broker.host}:{broker.port} has an id starting with "
            f"{arguments.id!r} (herald silence list --all shows them)",
            file=sys.stderr,
        )
        return 1
    [silence] = chosen
    asyncio.run(_publish(broker, silence.id, b""))
    print(f"expired silence {silence.id}")
    return 0


def _handle(arguments: argparse.Namespace) -> int:
    try:
        result: int = arguments.action(arguments)
    except BusError as error:
        print(f"herald: {error}", file=sys.stderr)
        return 1
    return result


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from herald_shared.cli import add_config_argument

    parser = commands.add_parser("silence", help="add, list or expire silences")
    actions = parser.add_subparsers(dest="silence_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="silence the events that match, for a while")
    add_config_argument(add)
    add.add_argument(
        "--match",
        action="append",
        required=True,
        type=_matcher,
        metavar="KEY=VALUE",
        help=f"a when: criterion; repeat for more, all must hold (keys: {', '.join(silences.KEYS)},"
        " task_custom_properties.<name>, app_custom_properties.<name>)",
    )
    until = add.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="duration", type=duration, help="how long, e.g. 2h")
    until.add_argument("--until", type=moment, help="until when, e.g. 2026-12-03T06:00")
    add.add_argument("--comment", required=True, help="why: shown in every silenced receipt")
    add.add_argument("--author", default=getpass.getuser(), help="who (default: your user name)")
    add.add_argument("--service", action="append", help="only in this service (repeatable)")
    add.add_argument(
        "--destination", action="append", help="only for this destination (repeatable)"
    )
    add.set_defaults(handler=_handle, action=_add)

    listing = actions.add_parser("list", help="the silences on the broker")
    add_config_argument(listing)
    listing.add_argument("--all", action="store_true", help="expired ones too")
    listing.set_defaults(handler=_handle, action=_list)

    expire = actions.add_parser("expire", help="end a silence now")
    add_config_argument(expire)
    expire.add_argument("id", help="the silence's id, or a unique start of it")
    expire.set_defaults(handler=_handle, action=_expire)
