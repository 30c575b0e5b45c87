"""What the console takes from the broker: each message into the store or the live view.

Events, receipts, pending deliveries, dead letters and replay answers go to the history
(:class:`~herald_console.store.Store`); the retained status, destination lists and silences are
the present, kept in memory (the broker sends them again on every connect). Whatever changed is
announced to the pages that follow it live (:class:`Announcements`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import msgspec

from herald_console.store import Report, Store
from herald_shared import events, replay, self_report, silences, topics
from herald_shared.bus import ONLINE
from herald_shared.delivery.receipts import DeadLetter, Pending
from herald_shared.self_report import SelfReport
from herald_shared.silences import Silence

__all__ = ["FAMILIES", "Announcements", "Feed", "Instance", "subscriptions"]

log = logging.getLogger(__name__)

#: The topic families the console follows.
FAMILIES: Final = (
    "events",
    "deliveries",
    "dead-letter",
    "pending",
    "status",
    "destinations",
    "silences",
    "replayed",
)


def subscriptions(prefix: str) -> list[str]:
    return [topics.family_filter(prefix, family) for family in FAMILIES]


@dataclass
class Instance:
    """One service instance, as its retained messages and its receipts describe it."""

    service: str
    instance: str
    status: str = "unknown"
    destinations: list[str] = field(default_factory=list)
    status_at: float = 0.0
    report: SelfReport | None = None  # what it says of itself (version, readiness, queue)

    @property
    def online(self) -> bool:
        return self.status == ONLINE.decode()


#: One change notice: its number, what changed (event, delivery, …) and which (an id).
Notice = tuple[int, str, str]


class Announcements:
    """Fan-out of change notices to every live page (Server-Sent Events), never blocking intake:
    a page that does not keep up loses notices, not the console its pace.

    Notices are numbered and the last :data:`KEPT` are kept: a page rendered at notice n that
    connects (or reconnects, with ``Last-Event-ID``) a moment later gets what it missed since."""

    QUEUE: Final = 256
    KEPT: Final = 1024

    def __init__(self) -> None:
        self._listeners: set[asyncio.Queue[Notice]] = set()
        self._recent: collections.deque[Notice] = collections.deque(maxlen=self.KEPT)
        self.last = 0

    def listen(self, since: int | None = None) -> asyncio.Queue[Notice]:
        queue: asyncio.Queue[Notice] = asyncio.Queue(self.QUEUE)
        if since is not None:
            for notice in self._recent:
                if notice[0] > since and not queue.full():
                    queue.put_nowait(notice)
        self._listeners.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue[Notice]) -> None:
        self._listeners.discard(queue)

    def say(self, kind: str, data: str) -> None:
        self.last += 1
        notice = (self.last, kind, data)
        self._recent.append(notice)
        for queue in self._listeners:
            if not queue.full():
                queue.put_nowait(notice)


class Feed:
    def __init__(self, store: Store, prefix: str, announcements: Announcements) -> None:
        self.store = store
        self.announcements = announcements
        self.instances: dict[tuple[str, str], Instance] = {}
        self.silences: dict[str, Silence] = {}
        #: service -> when its last receipt (or dead letter) arrived
        self.last_seen: dict[str, float] = {}
        #: event ids stored since the start (for acknowledgements)
        self.on_event: Callable[[str], None] = lambda _event_id: None
        self._root = f"{prefix}/{topics.VERSION}/"

    def take(self, topic: str, payload: bytes) -> None:
        """One message; one that is not Herald's is logged and dropped, never retried."""
        family, _, rest = topic.removeprefix(self._root).partition("/")
        try:
            self._take(family, rest.split("/"), payload)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as error:
            log.warning("ignoring a message on %s that is not Herald's: %s", topic, error)

    def _take(self, family: str, parts: list[str], payload: bytes) -> None:
        now = time.time()
        if family == "events":
            event = events.decode(payload)
            self.store.add_event(event, payload)
            self.on_event(event.event_id)
            self.announcements.say("event", event.event_id)
        elif family == "deliveries":
            for receipt in msgspec.json.decode(payload, type=Report).per_event():
                self.store.add_receipt(receipt)
                self.last_seen[receipt.service] = now
                self.announcements.say("delivery", receipt.event_id)
        elif family == "pending":
            pending = msgspec.json.decode(payload, type=Pending)
            self.store.add_pending(pending)
            self.announcements.say("delivery", pending.event_id)
        elif family == "dead-letter":
            letter = msgspec.json.decode(payload, type=DeadLetter)
            self.store.add_dead_letter(letter)
            self.last_seen[letter.service] = now
            self.announcements.say(
                "dead_letter", "" if letter.event is None else letter.event.event_id
            )
        elif family == "replayed":
            answer = replay.decode_answer(payload)
            self.store.add_replay_answer(answer, now)
            for item in answer.replayed:
                self.announcements.say("delivery", item.event_id)
            self.announcements.say("replayed", answer.id)
        elif family in ("status", "destinations") and len(parts) == 2:
            self._instance(family, parts[0], parts[1], payload, now)
        elif family == "status" and len(parts) == 3 and parts[2] == "health":
            self._self_report(parts[0], parts[1], payload)
        elif family == "silences" and len(parts) == 1:
            self._silence(parts[0], payload)

    def _instance(self, family: str, service: str, name: str, payload: bytes, now: float) -> None:
        key = (service, name)
        if not payload and family == "status":
            self.instances.pop(key, None)  # retired: its status was cleared
            return
        instance = self.instances.setdefault(key, Instance(service, name))
        if family == "status":
            instance.status = payload.decode(errors="replace")
            instance.status_at = now
        else:
            instance.destinations = msgspec.json.decode(payload, type=list[str]) if payload else []
        self.announcements.say("service", service)

    def _self_report(self, service: str, name: str, payload: bytes) -> None:
        if not payload:  # a clean stop cleared it
            if (service, name) in self.instances:
                self.instances[service, name].report = None
        else:
            report = self_report.decode(payload)
            self.instances.setdefault((service, name), Instance(service, name)).report = report
        self.announcements.say("service", service)

    def _silence(self, silence_id: str, payload: bytes) -> None:
        if not payload:
            self.silences.pop(silence_id, None)
        else:
            silence = silences.decode(payload)
            if silence.id != silence_id:
                raise ValueError(f"its id {silence.id!r} is not the one in the topic")
            self.silences[silence_id] = silence
        self.announcements.say("silence", silence_id)
