"""Small socket helpers shared by the mock LLM and the Redis fault relay."""

from __future__ import annotations

import asyncio
import socket
import struct


def abort_with_rst(transport: asyncio.BaseTransport | None) -> None:
    """Close a transport with a TCP RST (SO_LINGER 0) instead of a FIN: the peer sees a connection reset."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    if isinstance(transport, asyncio.WriteTransport):   # TCP stream transports: abort() drops unsent data
        transport.abort()
    else:
        transport.close()


def is_own_address(host: str) -> bool:
    """True when `host` is an address of one of this host's interfaces (in this network namespace)."""
    import psutil

    return any(a.address == host for addrs in psutil.net_if_addrs().values() for a in addrs)
