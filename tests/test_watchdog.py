"""systemd's notify protocol, read from a real unix datagram socket as systemd would: READY=1
once running, WATCHDOG=1 while the pipeline is alive (and not while its commit is stuck),
STOPPING=1 on SIGTERM."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.gateway import OUTBOX_FILE
from tests.helpers.support import device_topic, publish, wait_for

pytestmark = pytest.mark.system

WATCHDOG_USEC = 1_000_000  # fed every half second


class NotifySocket:
    """What systemd listens on: a unix datagram socket; records every message with its time."""

    def __init__(self) -> None:
        # Unix socket paths are limited to 108 bytes: a short folder, not pytest's tmp_path.
        self.folder = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
        self.path = self.folder / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, list[str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append((time.monotonic(), data.decode().split("\n")))

    def assignments(self) -> list[str]:
        with self._lock:
            return [line for _, lines in self.messages for line in lines]

    def times_of(self, assignment: str) -> list[float]:
        with self._lock:
            return [at for at, lines in self.messages if assignment in lines]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


def start_under_systemd(make_gateway, central_url: str, notify: NotifySocket):
    gateway = make_gateway(central_url)
    gateway.env.update(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC=str(WATCHDOG_USEC))
    gateway.env.pop("WATCHDOG_PID", None)
    gateway.start()
    return gateway


def test_ready_then_fed_then_stopping(broker, central, make_gateway, notify_socket):
    gateway = start_under_systemd(make_gateway, central.url, notify_socket)
    wait_for(lambda: "READY=1" in notify_socket.assignments(), what="READY=1")
    ready_at = notify_socket.times_of("READY=1")[0]
    wait_for(lambda: len([t for t in notify_socket.times_of("WATCHDOG=1") if t > ready_at]) >= 3,
             what="three WATCHDOG=1 after READY=1")
    assert any(line.startswith("STATUS=") for line in notify_socket.assignments())

    assert gateway.terminate() == 0
    wait_for(lambda: "STOPPING=1" in notify_socket.assignments(), 5, what="STOPPING=1")
    stopping_at = notify_socket.times_of("STOPPING=1")[0]
    assert stopping_at > ready_at
    assert notify_socket.assignments().count("READY=1") == 1


def test_watchdog_starves_while_the_commit_is_stuck(broker, central, make_gateway,
                                                    notify_socket):
    """Another process holds the outbox's write lock: the commit thread waits inside its
    transaction, so the gateway stops feeding systemd; once the lock is gone, feeding resumes
    and the press that waited is delivered."""
    gateway = start_under_systemd(make_gateway, central.url, notify_socket)
    wait_for(lambda: len(notify_socket.times_of("WATCHDOG=1")) >= 2, what="the watchdog fed")

    def starving() -> bool:
        fed = notify_socket.times_of("WATCHDOG=1")
        return not fed or time.monotonic() - fed[-1] > 4 * WATCHDOG_USEC / 1e6

    blocker = sqlite3.connect(gateway.data_dir / OUTBOX_FILE, isolation_level=None, timeout=10)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        publish(broker.port, [(device_topic("btn-stuck"), json.dumps({"seq": 1}))])
        wait_for(starving, 20, interval=0.1, what="the watchdog to go hungry")
        assert gateway.running(), "the gateway must wait, not die, while the disk is locked"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    released_at = time.monotonic()
    wait_for(lambda: any(t > released_at for t in notify_socket.times_of("WATCHDOG=1")),
             what="feeding to resume once the commit went through")
    wait_for(lambda: any(e["device_id"] == "btn-stuck" for e in central.events("button.press")),
             what="the press that waited to reach the central")
    assert "no answer from the commit thread" in gateway.output()
