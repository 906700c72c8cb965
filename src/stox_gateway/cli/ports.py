"""Is a port free? Asked before a server starts, so a taken one is one line, not a traceback."""

from __future__ import annotations

import errno
import socket


def port_in_use(host: str, port: int) -> bool:
    """True when nothing may listen on `host:port` now (0 = any port: never in use)."""
    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def taken_ports(bindings: list[tuple[str, int, str]]) -> list[str]:
    """For each (host, port, setting) in use, the line that says what to change."""
    return [
        f"port {port} is in use; set {setting}"
        for host, port, setting in bindings
        if port_in_use(host, port)
    ]
