"""systemd integration: readiness and a watchdog fed only while the pipeline is alive.

The sd_notify protocol is one datagram per message on the unix socket named by
`$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace), with newline-separated
`KEY=value` assignments: `READY=1`, `STOPPING=1`, `STATUS=…`, `WATCHDOG=1`. Without
`$NOTIFY_SOCKET` (not started by systemd) every call is a no-op.

The watchdog (`WatchdogSec=` in the unit, `$WATCHDOG_USEC` in our environment) must be fed
more often than its interval, and only while the gateway does its job. A thread of its own
asks, every half interval, both working threads to prove they are alive: the commit thread
(a no-op run through `Pipeline.call_soon`, so it passes the same queue as the messages) and
the asyncio loop (a callback). `WATCHDOG=1` is sent only when both answered the previous
round. A commit thread stuck in a transaction, a dead one, or a blocked loop therefore stop
the feeding, and systemd restarts the gateway; the broker keeps every unacked message. The
one deliberate wait, a full outbox, counts as alive: a restart cannot free disk space.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify datagrams; silent without $NOTIFY_SOCKET or when the socket is gone."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self.watchdog_usec = _watchdog_usec(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        if self._address is None:
            return False
        message = "\n".join(assignments).encode()
        with self._lock:
            try:
                if self._socket is None:
                    kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    self._socket = socket.socket(socket.AF_UNIX, kind)
                self._socket.sendto(message, self._address)
                return True
            except OSError as exc:
                log.debug("sd_notify %r failed: %s", assignments, exc)
                return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def status(self, text: str) -> bool:
        # One line: a newline would start a new assignment.
        return self.notify("STATUS=" + " ".join(text.split()))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """The watchdog interval systemd gave us, if it is meant for this process."""
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec if usec > 0 else None


class Liveness:
    """Probes the commit thread and the asyncio loop; tells whether both answered.

    Works with or without systemd: /healthz reports the same facts that decide the feeding.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        call_on_commit_thread: Callable[[Callable[[], None]], None],
        deliberately_waiting: Callable[[], bool],
    ) -> None:
        self._loop = loop
        self._call_on_commit_thread = call_on_commit_thread
        self._deliberately_waiting = deliberately_waiting
        self._lock = threading.Lock()
        self._round = 0
        self._answers = {"commit": 0, "loop": 0}
        self.last_answer = {"commit": time.monotonic(), "loop": time.monotonic()}

    def probe(self) -> None:
        """Start a new round: each side answers by running a tiny callback."""
        with self._lock:
            self._round += 1
            number = self._round
        self._call_on_commit_thread(lambda: self._answer("commit", number))
        # A closed loop raises RuntimeError: it will never answer again, which is the point.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._answer, "loop", number)

    def _answer(self, side: str, number: int) -> None:
        with self._lock:
            self._answers[side] = max(self._answers[side], number)
            self.last_answer[side] = time.monotonic()

    def answered_last_round(self) -> dict[str, bool]:
        """Which sides answered the most recent probe (the full outbox counts as answering)."""
        with self._lock:
            number = self._round
            answered = {side: got >= number for side, got in self._answers.items()}
        if not answered["commit"] and self._deliberately_waiting():
            answered["commit"] = True
        return answered

    def silent_for(self) -> dict[str, float]:
        moment = time.monotonic()
        with self._lock:
            return {side: moment - at for side, at in self.last_answer.items()}

    def stalled(self, longer_than: float) -> list[str]:
        """Sides that have not answered for longer than this (none while deliberately waiting)."""
        silent = self.silent_for()
        stalled = [side for side, seconds in silent.items() if seconds > longer_than]
        if "commit" in stalled and self._deliberately_waiting():
            stalled.remove("commit")
        return stalled


class Watchdog:
    """A thread that probes every `interval` seconds and feeds systemd when both answered.

    Without a systemd watchdog it still probes, for /healthz.
    """

    def __init__(self, notifier: Notifier, liveness: Liveness, interval: float) -> None:
        self._notifier = notifier
        self._liveness = liveness
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self.fed = 0
        self.missed = 0

    @staticmethod
    def interval_for(notifier: Notifier, default: float = 5.0) -> float:
        """Half the systemd interval (what sd_watchdog_enabled(3) recommends), else default."""
        if notifier.watchdog_usec:
            return max(0.01, notifier.watchdog_usec / 1e6 / 2)
        return default

    def start(self) -> None:
        self._liveness.probe()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        feeding = self._notifier.watchdog_usec is not None
        missed_in_a_row = 0
        while not self._stop.wait(self._interval):
            answered = self._liveness.answered_last_round()
            if all(answered.values()):
                if feeding and self._notifier.watchdog():
                    self.fed += 1
                if missed_in_a_row:
                    log.warning("watchdog: answers again after %d silent rounds", missed_in_a_row)
                missed_in_a_row = 0
            else:
                self.missed += 1
                missed_in_a_row += 1
                if missed_in_a_row == 1:  # said once per stall, not every round
                    silent = " and the ".join(SIDES[s] for s, ok in answered.items() if not ok)
                    log.warning("watchdog: no answer from the %s%s", silent,
                                "; not feeding systemd" if feeding else "")
            self._liveness.probe()


SIDES = {"commit": "commit thread", "loop": "asyncio loop"}
