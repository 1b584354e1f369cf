"""Loopback ports: find free ones, refuse ones in use."""

from __future__ import annotations

import socket

from harness.errors import HarnessError

LOOPBACK = "127.0.0.1"


def is_port_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def is_listening(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(exclude: set[int] | None = None) -> int:
    """A port the OS considers free now, not in `exclude`."""
    exclude = exclude or set()
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port
    raise HarnessError("no free loopback port found", "free some ports or check the machine's port range")


def allocate_ports(count: int, base: int | None = None) -> list[int]:
    """`count` distinct free ports: consecutive from `base` when given (each must be free), else any."""
    if base is not None:
        ports = list(range(base, base + count))
        for port in ports:
            if not is_port_free(port):
                raise HarnessError(f"port {port} on {LOOPBACK} is in use",
                                   "stop what listens there or choose another --base-port")
        return ports
    chosen: set[int] = set()
    result = []
    for _ in range(count):
        port = free_port(chosen)
        chosen.add(port)
        result.append(port)
    return result


def require_free(port: int, what: str) -> None:
    if not is_port_free(port):
        raise HarnessError(f"port {port} on {LOOPBACK} for {what} is in use",
                           "stop the process listening there (`harness down`?) or choose another port")
