"""One gateway per data directory and per broker session, refused at start otherwise.

Two gateways on one data directory would commit into one outbox and ack each other's
messages; two with one MQTT client id on one broker take the session from each other every
reconnect. Both locks are released by the kernel when the process ends, however it ends
(SIGKILL, power cut), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["AlreadyRunning", "CannotStart", "Instance", "claim_instance"]

LOCK_FILE = "gateway.lock"


class CannotStart(Exception):
    """The gateway cannot start as configured; the message is the one line an operator needs."""


class AlreadyRunning(CannotStart):
    """Another gateway holds the data directory or the broker session; the message says which."""


@dataclass
class Instance:
    """Held for the gateway's lifetime; `release()` at a clean stop."""

    lock_file: IO[str]
    session: socket.socket

    def release(self) -> None:
        self.session.close()
        self.lock_file.close()


def claim_instance(data_dir: Path, broker: str, client_id: str) -> Instance:
    """Lock `data_dir` (flock) and the pair (broker, client id) on this machine (an abstract
    Unix socket named for it), or raise AlreadyRunning naming the other gateway."""
    path = data_dir / LOCK_FILE
    lock_file = path.open("a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().strip() or "another process"
        lock_file.close()
        raise AlreadyRunning(
            f"another gateway ({holder}) is running on the data directory {data_dir}: "
            "stop it first, or give this one a gateway.data_dir of its own"
        ) from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"pid {os.getpid()}\n")
    lock_file.flush()
    session = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        session.bind(f"\0mashang-gateway {broker} {client_id}")
    except OSError:
        session.close()
        lock_file.close()
        raise AlreadyRunning(
            f"another gateway on this machine already uses the MQTT client id {client_id!r} "
            f"at the broker {broker}: the two would take the broker session from each other; "
            "give each gateway its own gateway.id (or mqtt.client_id)"
        ) from None
    return Instance(lock_file, session)
