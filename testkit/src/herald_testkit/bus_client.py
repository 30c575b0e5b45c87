"""A bare bus subscriber in its own process, to prove acknowledgement-after-handling.

Prints every payload it receives as one line on stdout. With ``--mode hold`` its handler never
returns, so nothing is acknowledged; killing it then must leave the message with the broker::

    python -m herald_testkit.bus_client --host H --port P --prefix T --topic F --mode hold|ack
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from herald_shared.bus import Bus, Message
from herald_shared.settings import BrokerSettings


async def run(arguments: argparse.Namespace) -> None:
    async def handler(message: Message) -> None:
        print(message.payload.decode(), flush=True)
        if arguments.mode == "hold":
            await asyncio.Event().wait()

    settings = BrokerSettings(
        host=arguments.host,
        port=arguments.port,
        topic_prefix=arguments.prefix,
        instance="probe",
        protocol=arguments.protocol,
    )
    bus = Bus(settings, "bus-probe", subscriptions=[arguments.topic], handler=handler)
    bus.start()
    await bus.wait_connected()
    print("connected", flush=True)
    # SIGTERM stops it cleanly, so acknowledgements already given reach the broker first.
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await bus.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--mode", choices=["hold", "ack"], required=True)
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
