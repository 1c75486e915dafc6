"""What went wrong, in the words an operator needs: shared by the stages' log lines, the LAN
page and `mashang doctor`, so one fault reads the same everywhere."""

from __future__ import annotations

import errno
import socket

__all__ = ["describe_os_error"]


def describe_os_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out (host down, or a firewall drops the packets)"
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another program listens there: choose a free port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available on this machine"
    return f"{type(exc).__name__}: {exc.strerror or exc}"
