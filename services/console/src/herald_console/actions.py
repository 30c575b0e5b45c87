"""What an operator can do from the console: replay dead letters, add or expire a silence, send a
test alert. Each publishes on the broker, over the console's own connection, exactly what the
``herald`` commands publish, built by their code (``herald_shared.replay``, ``silence_command``,
``sendtest``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from herald_console.store import Store
from herald_shared import events, replay, sendtest, silence_command, silences, topics
from herald_shared.settings import BrokerSettings
from herald_shared.silences import Matcher, Silence

__all__ = ["TEST_KINDS", "ActionError", "Actions", "Publisher"]

TEST_KINDS: Final = ("failed", "aborted", "succeeded")
#: What "silence this …" from an event's page matches on.
SCOPES: Final = ("task", "stream", "app")


class ActionError(ValueError):
    """The request cannot be carried out as asked: its message says why, for the person."""


class Publisher(Protocol):
    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None: ...


@dataclass(frozen=True)
class ReplayAsked:
    service: str
    destination: str | None
    request: replay.ReplayRequest


class Actions:
    def __init__(self, broker: BrokerSettings, bus: Publisher, store: Store) -> None:
        self._broker = broker
        self._bus = bus
        self._store = store

    # --- replay ----------------------------------------------------------------------------

    async def replay_dead_letters(self, seqs: Iterable[int], by: str) -> list[ReplayAsked]:
        """One request per (service, destination) of the chosen dead letters."""
        groups: dict[tuple[str, str | None], list[str]] = {}
        for seq in seqs:
            letter = self._store.dead_letter(seq)
            if letter is None:
                raise ActionError(f"there is no dead letter {seq} (forgotten since?)")
            if letter["event_id"] is None:
                raise ActionError(f"dead letter {seq} is no event (unreadable): nothing to replay")
            key = (letter["service"], letter["destination"] or None)
            if letter["event_id"] not in groups.setdefault(key, []):
                groups[key].append(letter["event_id"])
        if not groups:
            raise ActionError("choose at least one dead letter to replay")
        return [
            await self.replay(service, event_ids, destination, by)
            for (service, destination), event_ids in groups.items()
        ]

    async def replay(
        self, service: str, event_ids: list[str], destination: str | None, by: str
    ) -> ReplayAsked:
        _topic_level(service, "a service name")
        request = replay.ReplayRequest(
            id=replay.new_request_id(),
            event_ids=event_ids,
            destination=destination,
            requested_by=f"console:{by}",
            requested_at=datetime.now(UTC),
        )
        self._store.add_replay_request(request, service)
        await self._bus.publish(
            topics.replay_topic(self._broker.topic_prefix, service), replay.encode(request)
        )
        return ReplayAsked(service, destination, request)

    # --- silences --------------------------------------------------------------------------

    def matchers_for(self, event_id: str, scope: str) -> list[Matcher]:
        """ "Silence this task / stream / app": the matcher from the stored event."""
        row = self._store.event(event_id)
        if row is None:
            raise ActionError(f"no event {event_id} in the history")
        if scope == "task":
            return [Matcher("task_names", row.task_name)]
        if scope == "stream" and row.stream:
            return [Matcher("streams", row.stream)]
        if scope == "app" and row.app_name:
            return [Matcher("app_names", row.app_name)]
        raise ActionError(f"this event has no {scope} to silence")

    async def add_silence(
        self, matchers: list[Matcher], duration: float, comment: str, by: str
    ) -> Silence:
        if not comment.strip():
            raise ActionError(
                "say why: a silence needs a comment (every silenced receipt shows it)"
            )
        if not matchers:
            raise ActionError("a silence needs at least one matcher")
        for matcher in matchers:
            try:
                silences.criterion(matcher)
            except ValueError as error:
                raise ActionError(str(error)) from None
        now = datetime.now(UTC)
        try:
            silence = silence_command.new_silence(
                matchers,
                now=now,
                ends=now + timedelta(seconds=duration),
                comment=comment.strip(),
                author=f"console:{by}",
            )
        except ValueError as error:
            raise ActionError(str(error)) from None
        await self._publish_silence(silence.id, silences.encode(silence))
        return silence

    async def expire_silence(self, silence_id: str) -> None:
        _topic_level(silence_id, "a silence id")
        await self._publish_silence(silence_id, b"")  # an empty retained message clears it

    async def _publish_silence(self, silence_id: str, payload: bytes) -> None:
        topic = topics.silence_topic(self._broker.topic_prefix, silence_id)
        await self._bus.publish(topic, payload, retain=True)

    # --- test alerts -----------------------------------------------------------------------

    async def send_test(self, kind: str) -> events.Event:
        if kind not in TEST_KINDS:
            raise ActionError(f"{kind!r}: the test alert is one of {', '.join(TEST_KINDS)}")
        event = sendtest.test_event(kind)
        await self._bus.publish(
            topics.topic_of(self._broker.topic_prefix, event), events.encode(event)
        )
        # In the history at once: its page, where the sender is sent, must not be a 404 until
        # the broker's copy arrives (which is then known, and taken as a redelivery).
        self._store.add_event(event)
        return event


def _topic_level(text: str, what: str) -> None:
    """``text`` goes into a topic as one level: no separator, no wildcard, not empty."""
    if not text or any(char in text for char in "/+#"):
        raise ActionError(f"{text!r} is not {what}")
