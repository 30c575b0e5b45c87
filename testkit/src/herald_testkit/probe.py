"""A probe service: a subscriber service whose one destination POSTs each event to a URL.

It runs on the real runtime (signals, grace period, bus, runner, outbox), so process-level
tests (SIGKILL mid-delivery, SIGTERM during a slow delivery) exercise exactly what every
Herald service does, against an :class:`~herald_testkit.http.HttpReceiver` they control::

    python -m herald_testkit.probe --config herald.yaml --url http://127.0.0.1:PORT/ \
        --state-dir DIR [--grace 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from herald_shared import config, events
from herald_shared.delivery.destination import Destination, PermanentError, TransientError
from herald_shared.http_client import HttpClient, Unreachable
from herald_shared.runtime import Context, ServiceSpec, configure, serve
from herald_shared.settings import DeliverySettings, ServiceSection
from herald_shared.subscriber import SubscriberService


class ProbeSettings(ServiceSection):
    url: str
    delivery: DeliverySettings = DeliverySettings()


class PostDestination(Destination):
    name = "post"

    def __init__(self, url: str) -> None:
        self._url = url
        # Its session opens on first use; the runner's attempt timeout ends a slow one first.
        self._client = HttpClient(timeout=300.0)

    async def close(self) -> None:
        await self._client.close()

    async def deliver(self, event: events.Event, target: str) -> str | None:
        try:
            answer = await self._client.request(
                "POST",
                self._url,
                body=events.encode(event),
                headers={"Content-Type": "application/json", "Idempotency-Key": event.event_id},
            )
        except Unreachable as error:
            raise TransientError(f"POST failed: {error}") from None
        if answer.status >= 500:
            raise TransientError(f"HTTP {answer.status}: {answer.text}")
        if answer.status >= 400:
            raise PermanentError(f"HTTP {answer.status}: {answer.text}")
        return f"HTTP {answer.status}"


def build(settings: ProbeSettings, context: Context) -> SubscriberService:
    return SubscriberService(
        name="probe",
        destinations=[PostDestination(settings.url)],
        broker=context.broker,
        delivery=settings.delivery,
        state_dir=settings.state_dir,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--grace", type=float, default=10.0)
    arguments = parser.parse_args()
    settings = ProbeSettings(
        url=arguments.url,
        state_dir=Path(arguments.state_dir),
        delivery=DeliverySettings(
            initial_backoff=0.1, max_backoff=0.5, shutdown_grace=arguments.grace
        ),
    )
    spec = ServiceSpec(
        name="probe",
        section="probe",
        settings=ProbeSettings,
        build=build,
        configure=lambda _document: settings,
    )
    document = config.load(arguments.config)
    return asyncio.run(serve(document, configure(document, [spec])))


if __name__ == "__main__":
    sys.exit(main())
