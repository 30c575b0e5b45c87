"""The UDP socket the Sense nodes' log4net appenders send to.

Reading never waits for anything: whenever the socket is readable, everything waiting in it is
read at once and handed over as one batch, which the service checks and stores in one commit.
The socket asks for a large receive buffer so that a burst of thousands of datagrams waits in
the kernel rather than being dropped. ``0.0.0.0`` listens on IPv4; ``::`` on IPv6 and,
dual-stack, IPv4 too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
OnDatagrams = Callable[[list[tuple[bytes, Address]]], None]

# At most this many datagrams per batch, so a flood cannot starve the rest of the event loop.
BATCH = 512
# SO_RCVBUFFORCE (Linux) goes past net.core.rmem_max when the process may (root, CAP_NET_ADMIN).
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def _network(source: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(source, strict=False)
    except ValueError:
        return None  # a host name


async def resolve(name: str) -> set[Address]:
    """Every address (A and AAAA) the system resolver gives for ``name``; empty if none."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_DGRAM)
    except OSError:
        return set()
    return {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}


Resolver = Callable[[str], Awaitable[set[Address]]]


class SourceFilter:
    """``ingest.allowed_sources``: addresses, CIDR ranges and host names; empty allows every source.

    Host names (as Butler's ``allowedSources`` takes them) are resolved when ingest starts and
    again every ``ingest.allowed_sources_refresh`` (``refresh()``, run by the service), so a node
    whose address changes is let in again after at most that long. A datagram is never held up by
    a lookup: ``allows`` only reads the addresses of the last resolution. A name that resolves to
    nothing is logged as a warning each time, and lets nothing in until it resolves.
    """

    def __init__(self, sources: Sequence[str], resolver: Resolver = resolve) -> None:
        parsed = [(source, _network(source)) for source in sources]
        self._networks = [network for _, network in parsed if network is not None]
        self.names = [source for source, network in parsed if network is None]
        self._resolver = resolver
        self._resolved: dict[str, set[Address]] = {name: set() for name in self.names}
        self._open = not sources

    async def refresh(self) -> None:
        for name in self.names:
            addresses = await self._resolver(name)
            if not addresses:
                log.warning(
                    "ingest.allowed_sources: %r does not resolve to any address; datagrams "
                    "from that node are rejected until it does (check the name and DNS)",
                    name,
                )
            elif addresses != self._resolved[name]:
                log.info(
                    "ingest.allowed_sources: %s is %s", name, ", ".join(sorted(map(str, addresses)))
                )
            self._resolved[name] = addresses

    def allows(self, address: Address) -> bool:
        if self._open:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # an IPv4 sender seen through a dual-stack socket
        if any(address in network for network in self._networks):
            return True
        return any(
            address in resolved or _mapped(address) in resolved
            for resolved in self._resolved.values()
        )


def _mapped(address: Address) -> Address:
    """An IPv4 address as the IPv4-mapped IPv6 address a resolver may return for it."""
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(f"::ffff:{address}")
    return address


OnError = Callable[[OSError], None]


class Listener:
    def __init__(
        self, sock: socket.socket, on_datagrams: OnDatagrams, on_error: OnError | None = None
    ) -> None:
        self._sock = sock
        self._on_datagrams = on_datagrams
        self._on_error = on_error
        self._failing = False  # on_error is told once per run of errors, not at every read
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._drain)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _drain(self) -> None:
        batch: list[tuple[bytes, Address]] = []
        while len(batch) < BATCH:
            try:
                data, source = self._sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                log.warning("UDP socket error: %s", error)
                if not self._failing and self._on_error is not None:
                    self._on_error(error)
                self._failing = True
                break
            self._failing = False
            batch.append((data, ipaddress.ip_address(source[0])))
        if batch:
            try:
                self._on_datagrams(batch)
            except Exception:
                log.exception("handling %d datagrams failed", len(batch))  # the socket goes on

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


def listen(
    host: str,
    port: int,
    buffer_bytes: int,
    on_datagrams: OnDatagrams,
    on_error: OnError | None = None,
) -> Listener:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, buffer_bytes)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if granted < buffer_bytes:  # Linux reports twice what was set; less means it was capped
        log.warning(
            "the kernel granted a %d-byte UDP receive buffer of the %d asked for; raise "
            "net.core.rmem_max so bursts are not dropped",
            granted,
            buffer_bytes,
        )
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    listener = Listener(sock, on_datagrams, on_error)
    log.info("listening for scheduler datagrams on %s:%d/udp", host, listener.port)
    return listener
