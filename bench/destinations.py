"""Benchmark: the e-mail, chat and incident services against their stand-ins.

For each service, a real Mosquitto, the service as its own process (``herald run <service>``)
and the stand-ins it delivers to (aiosmtpd with STARTTLS and AUTH; Slack and Teams webhooks that
validate payloads; New Relic's Event and Log APIs and Signl4). This script publishes failed
reloads (each its own task, so no rate limit applies) and counts the delivery receipts until
every destination has delivered every one.

Prints, per service and destination: messages/s delivered, and the service's RSS (idle, peak).

    uv run python bench/destinations.py [--burst 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import msgspec

from herald_shared import events, samples, topics
from herald_testkit.bench import Figures, RssSampler, fast_client, megabytes, run
from herald_testkit.chat_standins import ChatStandins
from herald_testkit.incident_standins import NewRelicStandIn, Signl4StandIn
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.smtp_server import SmtpServer

PREFIX = "bench"
SMTP_PASSWORD = "bench-Passw0rd"
INSERT_KEY = "NRII-bench-insert-key-0123456789"


def failure(n: int) -> events.TaskFailed:
    """A failed reload of a task of its own (rate limits are per task)."""
    base = samples.sample_failed()
    execution_id = f"00000000-0000-4000-8000-{n:012d}"
    task_id = f"11111111-0000-4000-8000-{n:012d}"
    return msgspec.structs.replace(
        base,
        event_id=events.event_id_for("task_failed", execution_id),
        execution=msgspec.structs.replace(base.execution, id=execution_id),
        task=msgspec.structs.replace(base.task, id=task_id),
    )


async def emailer_section(stack: AsyncExitStack, work: Path) -> str:
    smtp = await stack.enter_async_context(
        SmtpServer(work / "smtp", users={"alerts": SMTP_PASSWORD})
    )
    (work / "smtp-password").write_text(SMTP_PASSWORD)
    return f"""
emailer:
  state_dir: {work}/state
  from_address: qlik-alerts@example.com
  smtp: {{host: 127.0.0.1, port: {smtp.port}, tls: starttls, username: alerts,
         password_file: {work}/smtp-password, ca_file: {smtp.ca_file}}}
  failed: {{recipients: [ops@example.com], recipients_custom_property: null,
            app_owner: {{enabled: false}}, rate_limit: null, group: {{enabled: false}}}}
"""


async def chat_section(stack: AsyncExitStack, work: Path) -> str:
    chat = await stack.enter_async_context(ChatStandins())
    return f"""
chat_notifier:
  state_dir: {work}/state
  slack: [{{name: ops, webhook_url: "{chat.slack_url("T0/B0/benchbenchbenchbench")}", rate_limit: null,
           group: {{enabled: false}}}}]
  teams: [{{name: ops, webhook_url: "{chat.teams_url("bench-teams-token-0123")}", rate_limit: null,
           group: {{enabled: false}}}}]
"""


async def incident_section(stack: AsyncExitStack, work: Path) -> str:
    new_relic = await stack.enter_async_context(NewRelicStandIn({"1001": INSERT_KEY}))
    signl4 = await stack.enter_async_context(Signl4StandIn("bench-team-secret"))
    return f"""
incident_forwarder:
  state_dir: {work}/state
  new_relic:
    event_url: {new_relic.base_url}
    log_url: {new_relic.log_url}
    accounts: [{{name: bench, account_id: "1001", insert_key: {INSERT_KEY}}}]
    event: {{enabled: true, always_accounts: [bench], rate_limit: null}}
    log: {{enabled: true, always_accounts: [bench], rate_limit: null}}
  signl4: {{enabled: true, url: "{signl4.url}", rate_limit: null}}
"""


SERVICES: dict[str, Callable[[AsyncExitStack, Path], object]] = {
    "emailer": emailer_section,
    "chat-notifier": chat_section,
    "incident-forwarder": incident_section,
}


async def bench_service(service: str, burst: int) -> Figures:
    work = Path(tempfile.mkdtemp(prefix=f"herald-bench-{service}-"))
    async with AsyncExitStack() as stack:
        broker = stack.enter_context(Mosquitto(work / "mosquitto"))
        section = await SERVICES[service](stack, work)  # type: ignore[misc]
        config = work / "herald.yaml"
        config.write_text(
            f"broker: {{host: {broker.host}, port: {broker.port}, topic_prefix: {PREFIX}, instance: bench}}\n"
            "health: {host: 127.0.0.1, port: 0}\nlogging: {level: WARNING}\n" + str(section)
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "herald_shared.cli", "run", service, "--config", str(config)
        )
        try:
            async with fast_client(broker.host, broker.port) as client:
                await client.subscribe(topics.status_topic(PREFIX, service, "bench"), qos=1)
                await client.subscribe(topics.deliveries_topic(PREFIX, service), qos=1)
                delivered: Counter[str] = Counter()
                last: dict[str, float] = {}
                online = asyncio.Event()

                async def listen() -> None:
                    async for message in client.messages:
                        if message.payload == b"online":
                            online.set()
                            continue
                        if not isinstance(message.payload, bytes) or not message.payload.startswith(
                            b"{"
                        ):
                            continue
                        receipt = msgspec.json.decode(message.payload)
                        if receipt["outcome"] == "delivered":
                            delivered[receipt["destination"]] += 1
                            last[receipt["destination"]] = time.perf_counter()

                listener = asyncio.create_task(listen())
                await asyncio.wait_for(online.wait(), 30)
                await asyncio.sleep(1.0)
                sampler = RssSampler(process.pid)
                idle = sampler.now()
                sampling = asyncio.create_task(sampler.run())
                batch = [failure(n) for n in range(burst)]
                started = time.perf_counter()
                await asyncio.gather(
                    *(
                        client.publish(topics.topic_of(PREFIX, e), events.encode(e), qos=1)
                        for e in batch
                    )
                )
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    if delivered and min(delivered.values()) >= burst:
                        break
                sampling.cancel()
                listener.cancel()
        finally:
            process.terminate()
            await process.wait()
    figures: Figures = {"idle_rss_mb": megabytes(idle), "peak_rss_mb": megabytes(sampler.peak)}
    for destination, count in delivered.items():
        figures[f"{destination} messages/s"] = round(count / (last[destination] - started), 1)
        figures[f"{destination} delivered"] = count
    return figures


async def main(arguments: argparse.Namespace) -> Figures:
    figures: Figures = {"burst": arguments.burst}
    for service in SERVICES:
        for key, value in (await bench_service(service, arguments.burst)).items():
            figures[f"{service}: {key}"] = value
    return figures


def _print(figures: Figures) -> None:
    print(
        f"Herald destinations: a burst of {figures['burst']:.0f} failed reloads, each service on its own"
    )
    for key, value in figures.items():
        if key != "burst":
            print(f"  {key:<60} {value:>9.1f}")


if __name__ == "__main__":
    run(__doc__, main, _print, burst=500, rate=0.0, seconds=0.0)
