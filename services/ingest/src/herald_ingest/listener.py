"""The UDP socket the Sense nodes' log4net appenders send to.

Reading never waits for anything: each datagram is handed to a synchronous callback that only
parses it and stores it. The socket asks for a large receive buffer so that a burst of thousands
of datagrams waits in the kernel rather than being dropped. ``0.0.0.0`` listens on IPv4; ``::``
on IPv6 and, dual-stack, IPv4 too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
OnDatagram = Callable[[bytes, Address], None]


class SourceFilter:
    """``ingest.allowed_sources``: addresses and CIDR ranges; empty allows every source."""

    def __init__(self, sources: Sequence[str]) -> None:
        self._networks = [ipaddress.ip_network(source, strict=False) for source in sources]

    def allows(self, address: Address) -> bool:
        if not self._networks:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # an IPv4 sender seen through a dual-stack socket
        return any(address in network for network in self._networks)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: OnDatagram) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            self._on_datagram(data, ipaddress.ip_address(addr[0]))
        except Exception:
            log.exception("handling a datagram failed")  # one bad datagram never stops the socket

    def error_received(self, exc: Exception) -> None:
        log.warning("UDP socket error: %s", exc)


async def listen(
    host: str, port: int, buffer_bytes: int, on_datagram: OnDatagram
) -> asyncio.DatagramTransport:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if granted < buffer_bytes:
        log.warning(
            "the kernel granted a %d-byte UDP receive buffer of the %d asked for; raise "
            "net.core.rmem_max so bursts are not dropped",
            granted,
            buffer_bytes,
        )
    sock.bind((host, port))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(on_datagram), sock=sock)
    log.info("listening for scheduler datagrams on %s:%d/udp", host, sock.getsockname()[1])
    return transport
