"""Contract tests every destination runs, as Alertmanager's ``notify/test/test.go`` does for its
notifiers: the HTTP status table, "no configured secret leaks", and ``when:``/``targets()``.

A destination's test file (``tests/herald_<service>/test_contract.py``) writes one builder,
``build(url, *, timeout=10.0, when=None) -> Destination``, that configures the real destination
(with recognisable secrets) against ``url``, and calls::

    @pytest.mark.parametrize("row", contract.HTTP_STATUS_TABLE, ids=str)
    async def test_the_status_table(row: contract.Row) -> None:
        await contract.check_http_status(build, row, SAMPLE, SECRETS)

    async def test_no_secret_leaks(tmp_path: Path) -> None:
        await contract.check_http_secrets(build, SAMPLE, SECRETS, tmp_path)

    async def test_when_and_targets(tmp_path: Path) -> None:
        async with HttpReceiver() as server:
            destination = build(server.url, when=contract.selecting(SAMPLE))
            await contract.check_selection(destination, SAMPLE, ["prod"], tmp_path)

Destinations that do not speak HTTP (SMTP, MQTT, files) use :func:`attempt`,
:func:`run_until_ended` and :func:`assert_hidden` with their own servers and faults.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec
import prometheus_client

from herald_shared import topics
from herald_shared.delivery.destination import (
    Destination,
    PermanentError,
    Skipped,
    TransientError,
)
from herald_shared.delivery.receipts import DeadLetter, Receipt
from herald_shared.events import Event
from herald_shared.settings import DeliverySettings
from herald_testkit.http import Answer, HttpReceiver
from herald_testkit.memory_bus import memory_runner
from herald_testkit.ports import free_port

__all__ = [
    "FAULT_TIMEOUT",
    "HTTP_STATUS_TABLE",
    "SERVICE",
    "Attempted",
    "Build",
    "Result",
    "Row",
    "Run",
    "assert_hidden",
    "attempt",
    "captured_logs",
    "check_http_secrets",
    "check_http_status",
    "check_selection",
    "run_until_ended",
    "selecting",
]

Result = Literal["delivered", "transient", "permanent", "skipped"]
SERVICE = "contract"  # the service name the contract's runs report under
#: Quick retries: a contract run ends in a second, not in the production backoff.
_FAST_RETRIES = DeliverySettings(initial_backoff=0.01, max_backoff=0.05, shutdown_grace=2.0)
FAULT_TIMEOUT = 1.0  # the destination's own timeout in the row whose server never answers


class Build(Protocol):
    """Configures the real destination against ``url``; ``when`` is its ``when:`` mapping."""

    def __call__(
        self, url: str, *, timeout: float = 10.0, when: dict[str, Any] | None = None
    ) -> Destination: ...


@dataclass(frozen=True)
class Attempted:
    """What one ``deliver()`` said: its result, and the reason or detail the runner would keep."""

    result: Result
    text: str = ""
    retry_after: float | None = None


async def attempt(destination: Destination, event: Event) -> Attempted:
    """One delivery of ``event`` to the destination's first target, as the runner's lane sees it
    (any other exception is a bug in the destination and fails the test)."""
    targets = destination.targets(event)
    assert targets, f"{destination.name} chose no target for {event.kind}"
    try:
        detail = await destination.deliver(event, targets[0].id)
    except TransientError as error:
        return Attempted("transient", error.reason, error.retry_after)
    except PermanentError as error:
        return Attempted("permanent", error.reason)
    except Skipped as error:
        return Attempted("skipped", error.reason)
    return Attempted("delivered", detail or "")


# --- the HTTP status table --------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row: what the server answers (None: nothing listens), and what the runner must hear."""

    name: str
    answer: Answer | None
    expect: Result
    retry_after: float | None = None
    timeout: float = 10.0
    #: The answer's Location names another server, which must never see the request (nor
    #: the keys in its headers): a redirect is not followed.
    redirect: bool = False

    def __str__(self) -> str:
        return self.name

    @property
    def status(self) -> int | None:
        if self.answer is None or self.answer.hang or self.answer.drop:
            return None
        return self.answer.status


def _status(status: int, result: Result, retry_after: str | None = None) -> Row:
    headers = {"Retry-After": retry_after} if retry_after else {}
    name = f"{status} Retry-After {retry_after}" if retry_after else str(status)
    seconds = float(retry_after) if retry_after else None
    # Every answer quotes the request: no secret may come back in a reason or a detail.
    return Row(name, Answer(status, f"answer {status}", headers, echo=True), result, seconds)


HTTP_STATUS_TABLE: Sequence[Row] = (
    _status(200, "delivered"),
    _status(201, "delivered"),
    _status(202, "delivered"),
    _status(204, "delivered"),
    _status(408, "transient"),
    _status(425, "transient"),
    _status(429, "transient"),
    _status(429, "transient", "7"),
    _status(500, "transient"),
    _status(502, "transient"),
    _status(503, "transient", "3"),
    _status(504, "transient"),
    _status(400, "permanent"),
    _status(401, "permanent"),
    _status(403, "permanent"),
    _status(404, "permanent"),
    _status(410, "permanent"),
    _status(413, "permanent"),
    _status(422, "permanent"),
    *(
        Row(f"{status} redirect", Answer(status, "moved"), "permanent", redirect=True)
        for status in (301, 302, 303, 307, 308)
    ),
    Row("timeout", Answer(hang=True), "transient", timeout=FAULT_TIMEOUT),
    Row("connection dropped", Answer(drop=True), "transient"),
    Row("connection refused", None, "transient"),
)


async def check_http_status(
    build: Build, row: Row, event: Event, secrets: Sequence[str] = ()
) -> Attempted:
    """The destination, started against a server that answers 200, then delivering ``event``
    while the server answers ``row``'s status to every request, says what the row says; none
    of ``secrets`` is in its reason or in what it logged."""
    async with HttpReceiver() as server, HttpReceiver() as elsewhere:
        url = server.url if row.answer is not None else f"http://127.0.0.1:{free_port()}/"
        destination = build(url, timeout=row.timeout)
        with captured_logs() as logged:
            await destination.start()
            try:
                if row.answer is not None:
                    server.default = row.answer
                    if row.redirect:
                        location = {"Location": f"{elsewhere.url}collect"}
                        server.default = replace(row.answer, headers=location)
                attempted = await attempt(destination, event)
            finally:
                server.release_hung()
                await destination.close()
        if row.answer is not None:
            assert server.requests, f"{destination.name} sent nothing to {url}"
        assert not elsewhere.requests, f"{destination.name} followed the redirect"
    where = f"{destination.name}, server answering {row}"
    assert attempted.result == row.expect, f"{where}: {attempted}"
    if row.expect == "transient":
        assert attempted.retry_after == row.retry_after, f"{where}: Retry-After not passed on"
    if row.status is not None and row.expect != "delivered":
        assert str(row.status) in attempted.text, f"{where}: the reason hides the status"
    assert_hidden(secrets, reason=attempted.text, log=logged.getvalue())
    return attempted


# --- secrets ----------------------------------------------------------------------------------


@dataclass
class Run:
    """What a runner published (receipts, dead letters) and logged while deliveries ended."""

    published: list[bytes] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    logged: str = ""


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line at DEBUG and above, with tracebacks, as the service would write them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def run_until_ended(
    destinations: Sequence[Destination], events: Sequence[Event], state_dir: Path
) -> Run:
    """Run the real delivery core (ledger, lanes, outbox) over ``events`` until every delivery
    they make has its receipt; what it published and logged."""
    owed = sum(
        len(destination.targets(event))
        for event in events
        for destination in destinations
        if destination.when.matches(event)
    )
    receipts = topics.deliveries_topic("herald", SERVICE)
    letters = topics.dead_letter_topic("herald", SERVICE)
    with captured_logs() as logged:
        async with memory_runner(
            state_dir, destinations, delivery=_FAST_RETRIES, service=SERVICE
        ) as running:
            await running.publish(*events)
            await running.bus.wait_for(
                lambda seen: sum(item.topic == receipts for item in seen) >= owed
            )
    seen = running.bus.seen
    return Run(
        published=[item.payload for item in seen],
        receipts=[
            msgspec.json.decode(s.payload, type=Receipt) for s in seen if s.topic == receipts
        ],
        dead_letters=[
            msgspec.json.decode(s.payload, type=DeadLetter) for s in seen if s.topic == letters
        ],
        logged=logged.getvalue(),
    )


def _metrics_text() -> str:
    """The Prometheus metrics every Herald process serves on /metrics."""
    return prometheus_client.generate_latest().decode()


def assert_hidden(secrets: Sequence[str], run: Run | None = None, **places: object) -> None:
    """None of ``secrets`` is in the run's log, receipts and dead letters, in the metrics, or in
    the ``repr`` (or the text) of each place; the failure names the place and the secret's
    position, never the secret."""
    texts = {
        name: value if isinstance(value, str) else repr(value) for name, value in places.items()
    }
    texts["metrics"] = _metrics_text()
    if run is not None:
        texts["log"] = run.logged
        texts["receipts and dead letters"] = b"\n".join(run.published).decode()
    assert all(secrets), "an empty secret would be found everywhere"
    if not secrets:
        return
    found = [
        f"secret #{number} in the {name}"
        for number, secret in enumerate(secrets)
        for name, text in texts.items()
        if secret in text
    ]
    assert not found, ", ".join(found)


async def check_http_secrets(
    build: Build, event: Event, secrets: Sequence[str], state_dir: Path, *settings: object
) -> Run:
    """Configured with ``secrets``, the destination meets a server that quotes each request
    (URL, headers, body) in its 500 and then in its 400s; the delivery is retried, then
    dead-lettered, and no secret shows in the log, receipts, dead letters, metrics, or the
    reprs of the destination and of ``settings``."""
    async with HttpReceiver() as server:
        server.respond_with(Answer(500, "failed", echo=True))
        server.default = Answer(400, "refused", echo=True)
        destination = build(server.url)
        run = await run_until_ended([destination], [event], state_dir)
    assert len(server.requests) >= 2, "the 500 was not retried"
    assert run.receipts, "no delivery was made"
    assert {r.outcome for r in run.receipts} == {"dead_lettered"}, run.receipts
    assert "500" in run.logged, "the retry after the 500 was not logged"
    assert_hidden(secrets, run, destination=destination, settings=settings)
    return run


# --- when: and targets() ----------------------------------------------------------------------


def selecting(event: Event) -> dict[str, Any]:
    """A ``when:`` that takes ``event``'s task and no other."""
    return {"task_names": [event.task.name]}


def _excluded_by(event: Event) -> Event:
    """``event`` for another task (and with its own id), which :func:`selecting` excludes."""
    task = msgspec.structs.replace(event.task, name=f"Another task than {event.task.name}")
    return msgspec.structs.replace(event, event_id=f"other-{event.event_id}", task=task)


async def check_selection(
    destination: Destination, wanted: Event, targets: Sequence[str], state_dir: Path
) -> Run:
    """With ``when:`` set to :func:`selecting` ``wanted``, the destination delivers ``wanted`` to
    exactly ``targets`` (the ids its settings configure) and never takes on the other task's."""
    excluded = _excluded_by(wanted)
    assert [target.id for target in destination.targets(wanted)] == list(targets)
    assert destination.when.matches(wanted)
    assert not destination.when.matches(excluded)
    run = await run_until_ended([destination], [excluded, wanted], state_dir)
    assert sorted((r.event_id, r.target) for r in run.receipts) == sorted(
        (wanted.event_id, target) for target in targets
    ), run.receipts
    return run
