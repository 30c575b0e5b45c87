"""Silences: "say nothing about these events until then", kept on the broker, applied by every
subscriber service.

A silence is a retained message on ``herald/v1/silences/<id>`` (:class:`Silence`, JSON), so every
service learns every silence from the broker, also one added while it was down, with no database
of its own. Its matchers use the ``when:`` criteria (:mod:`herald_shared.matcher`): each one is a
key and one value (``streams=Finance``, ``task_names=Reload Finance*``,
``task_custom_properties.Owner=BI``) and all must hold. ``services`` and ``destinations``, when
given, limit it to those. It is active from ``starts`` until ``ends``; one whose end has passed
is ignored even while its retained message is still there, and ``herald silence expire`` clears
the message (an empty retained payload), which ends it at once.

:class:`SilenceBook` is one service's view: it follows the topic and answers which active
silences cover an event. What a silenced delivery becomes (a ``silenced`` receipt) is decided in
:mod:`herald_shared.delivery.quiet`.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, get_args

import msgspec
from pydantic import ValidationError

from herald_shared import topics
from herald_shared.events import Event
from herald_shared.matcher import When

__all__ = [
    "KEYS",
    "Matcher",
    "Silence",
    "SilenceBook",
    "criterion",
    "decode",
    "encode",
    "new_id",
]

log = logging.getLogger(__name__)

#: The ``--match`` keys: the ``when:`` criteria that take a list of values.
KEYS: Final = (
    "kinds",
    "task_types",
    "task_names",
    "app_names",
    "streams",
    "task_tags",
    "app_tags",
)
#: Keys followed by ``.<custom property name>``.
PROPERTY_KEYS: Final = ("task_custom_properties", "app_custom_properties")


class Matcher(msgspec.Struct, frozen=True):
    """One criterion: a ``when:`` key and one value (a pattern for names and streams)."""

    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class Silence(msgspec.Struct, kw_only=True, frozen=True):
    """On ``herald/v1/silences/<id>``, retained: what is silenced, from when until when, why."""

    id: str
    matchers: list[Matcher]
    starts: datetime
    ends: datetime
    author: str
    comment: str
    services: list[str] | None = None  # None: every service
    destinations: list[str] | None = None  # None: every destination

    def what(self) -> str:
        """Its matchers and scope, e.g. ``streams=Finance in emailer to email-failed``."""
        what = " ".join(str(matcher) for matcher in self.matchers)
        if self.services:
            what += f" in {', '.join(self.services)}"
        if self.destinations:
            what += f" to {', '.join(self.destinations)}"
        return what

    def describe(self) -> str:
        """One line for a person: what, until when, who and why."""
        return (
            f"{self.id} {self.what()} from {self.starts:%Y-%m-%d %H:%M} until "
            f"{self.ends:%Y-%m-%d %H:%M %Z}, by {self.author}: {self.comment}"
        )


encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Silence)


def decode(payload: bytes) -> Silence:
    """A silence from its JSON; raises ValueError with a readable reason."""
    try:
        silence = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ValueError(f"not a Herald silence: {error}") from None
    if silence.starts.tzinfo is None or silence.ends.tzinfo is None:
        raise ValueError("not a Herald silence: starts and ends need a time zone")
    if not silence.matchers:
        raise ValueError("a silence needs at least one matcher")
    for matcher in silence.matchers:
        criterion(matcher)
    return silence


def new_id() -> str:
    return str(uuid.uuid4())


def criterion(matcher: Matcher) -> When:
    """The ``when:`` matcher of one criterion; raises ValueError naming the bad key or value."""
    key, _, name = matcher.key.partition(".")
    if key in PROPERTY_KEYS and name:
        data: dict[str, object] = {key: {name: [matcher.value]}}
    elif key in KEYS and not name:
        data = {key: [matcher.value]}
    else:
        known = ", ".join((*KEYS, *(f"{k}.<name>" for k in PROPERTY_KEYS)))
        raise ValueError(f"{matcher.key!r} is not a silence key (known: {known})")
    try:
        return When.model_validate(data)
    except ValidationError as error:
        choices = _choices(key)
        hint = f" (one of {', '.join(choices)})" if choices else ""
        problem = error.errors()[0]["msg"]
        raise ValueError(f"{matcher}: {problem}{hint}") from None


def _choices(key: str) -> tuple[str, ...]:
    annotation = When.model_fields[key].annotation if key in When.model_fields else None
    for arm in get_args(annotation):  # list[Kind] | None
        for item in get_args(arm):
            literal = get_args(item)
            if literal:
                return tuple(str(value) for value in literal)
    return ()


@dataclass(frozen=True)
class _Facts:
    """What the silence keys look at in one event, read (and case-folded) once per event."""

    kind: str
    task_type: str
    names: dict[str, str | None]  # task_names, app_names, streams: the folded text
    task_tags: frozenset[str]
    app_tags: frozenset[str]
    properties: dict[str, dict[str, list[str]]]

    @classmethod
    def of(cls, event: Event) -> _Facts:
        app = event.app
        stream = None if app is None or app.stream is None else app.stream.name
        return cls(
            kind=event.kind,
            task_type=event.task.type,
            names={
                "task_names": event.task.name.casefold(),
                "app_names": None if app is None else app.name.casefold(),
                "streams": None if stream is None else stream.casefold(),
            },
            task_tags=frozenset(event.task.tags),
            app_tags=frozenset(() if app is None else app.tags),
            properties={
                "task_custom_properties": event.task.custom_properties,
                "app_custom_properties": {} if app is None else app.custom_properties,
            },
        )


Test = Callable[[_Facts], bool]


def _test(matcher: Matcher) -> Test:
    """What ``criterion(matcher).matches`` decides, compiled once: a service checks every active
    silence against every event it takes (``bench/silences.py``)."""
    key, _, name = matcher.key.partition(".")
    value = matcher.value
    if key == "kinds":
        return lambda facts: facts.kind == value
    if key == "task_types":
        return lambda facts: facts.task_type == value
    if key in ("task_names", "app_names", "streams"):
        # Shell patterns, case-insensitive, as when: compares them (fnmatchcase on folded text).
        folded = value.casefold()
        if not any(special in folded for special in "*?["):
            return lambda facts: facts.names[key] == folded
        pattern = re.compile(fnmatch.translate(folded))
        return lambda facts: (text := facts.names[key]) is not None and bool(pattern.match(text))
    if key == "task_tags":
        return lambda facts: value in facts.task_tags
    if key == "app_tags":
        return lambda facts: value in facts.app_tags
    return lambda facts: value in facts.properties[key].get(name, ())


@dataclass(frozen=True)
class _Known:
    """A silence as a service checks it: its matchers compiled once, its times as seconds."""

    silence: Silence
    tests: tuple[Test, ...]
    starts: float
    ends: float

    def active(self, now: float) -> bool:
        return self.starts <= now < self.ends


class SilenceBook:
    """One service's silences, as the retained messages on the silences topic say."""

    def __init__(self, topic_prefix: str, service: str) -> None:
        self.service = service
        self._prefix = topics.silence_topic(topic_prefix, "")
        self._known: dict[str, _Known] = {}

    @property
    def subscription(self) -> str:
        return self._prefix + "+"

    def takes(self, topic: str) -> bool:
        """Whether a message on ``topic`` is a silence (and not an event)."""
        return topic.startswith(self._prefix)

    def update(self, topic: str, payload: bytes) -> None:
        """Learn, replace or forget one silence from its message; a bad one is logged, ignored."""
        silence_id = topic[len(self._prefix) :]
        if not payload:
            if self._known.pop(silence_id, None) is not None:
                log.info("silence %s was expired", silence_id)
            return
        try:
            silence = decode(payload)
            if silence.id != silence_id:
                raise ValueError(f"its id {silence.id!r} is not the one in the topic")
        except ValueError as error:
            log.warning("ignoring the silence on %s: %s", topic, error)
            return
        if silence.services is not None and self.service not in silence.services:
            self._known.pop(silence_id, None)  # (it may have been narrowed since)
            return
        self._known[silence_id] = _Known(
            silence,
            tuple(_test(matcher) for matcher in silence.matchers),
            silence.starts.timestamp(),
            silence.ends.timestamp(),
        )
        log.info("silence: %s", silence.describe())

    def add(self, silence: Silence) -> None:
        """Learn a silence directly (what :meth:`update` does with its message)."""
        self.update(self._prefix + silence.id, encode(silence))

    def get(self, silence_id: str) -> Silence | None:
        known = self._known.get(silence_id)
        return None if known is None else known.silence

    def active(self, now: float) -> list[Silence]:
        return [known.silence for known in self._known.values() if known.active(now)]

    def matching(self, event: Event, now: float) -> list[Silence]:
        """The active silences whose matchers all hold for ``event``."""
        if not self._known:
            return []
        facts = _Facts.of(event)
        found = []
        for known in self._known.values():  # plain loops: this runs for every event taken
            if known.starts <= now < known.ends:
                for test in known.tests:
                    if not test(facts):
                        break
                else:
                    found.append(known.silence)
        return found

    def still_active(self, silence_ids: list[str], now: float) -> list[Silence]:
        """Those of ``silence_ids`` that are known and active now."""
        found = (self._known.get(silence_id) for silence_id in silence_ids)
        return [known.silence for known in found if known is not None and known.active(now)]

    @staticmethod
    def covers(silence: Silence, destination: str) -> bool:
        return silence.destinations is None or destination in silence.destinations
