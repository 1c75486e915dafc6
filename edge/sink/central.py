"""What the uplink and the downlink share in talking to the central: TLS, retries, and the
one record of whether the central is reachable.

`CentralHealth` is fed by every request the gateway makes to the central (uplink batches and
the downlink's long-poll alike, through the HTTP session's trace hooks, see
`edge.ops.metrics`), and read by the local fallback, the LAN page, `/readyz` and systemd's
status line, so that they can never disagree. Whoever must act the moment the central is back
(the uplink's senders, sleeping out a retry delay) subscribes with `on_reachable`.
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mashang.answers import Answer, classify

MAX_RETRY_AFTER = 300.0

log = logging.getLogger(__name__)


class Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


class CentralHealth:
    """Whether the central answers us. Thread-safe: fed on the loop, read from any thread."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.last_ok: float | None = None
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self._last_status: int | None = None
        self._on_reachable: list[Callable[[], None]] = []

    def on_reachable(self, callback: Callable[[], None]) -> None:
        """Call `callback()` whenever the central answers again after failing: on that
        transition only, not for every success, in the thread that fed the answer (the event
        loop, through the trace hooks) and outside the lock. It must be quick and must not
        raise; one that sleeps on the loop hands over with `loop.call_soon_threadsafe`."""
        with self._lock:
            self._on_reachable.append(callback)

    def answered(self, path: str, status: int | None, error: str | None) -> None:
        """One request to the central at `path`: sent (neither given), answered with an HTTP
        status, or failed with an error."""
        with self._lock:
            back = self._record(path, status, error)
            callbacks = list(self._on_reachable) if back else []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a subscriber's fault must not fail the request it watched
                log.exception("on_reachable callback %r failed", callback)

    def _record(self, path: str, status: int | None, error: str | None) -> bool:
        """Under the lock: note the request; whether the central is back (it was failing)."""
        was_failing = self.failing_since is not None
        if status is None and error is None:
            # Request sent: the central is reachable again, unless what failed was its
            # answer (an HTTP error stands until an answer says otherwise).
            if self.failing_since is None or self._last_status is None:
                self._succeeded()
                return was_failing
            return False
        self._last_status = status
        answer = classify(status) if status is not None else Answer.TRANSIENT
        if error is None and answer in (Answer.DELIVERED, Answer.REFUSED):
            self._succeeded()
            return was_failing
        if self.failing_since is None:
            self.failing_since = self._clock()
        if error is not None:
            self.last_error = f"{error} ({path})"
        elif answer is Answer.UNAUTHORIZED:
            self.last_error = (f"HTTP {status} on {path}: the central refuses our key or "
                               "clock (check central.key and the time)")
        else:
            self.last_error = f"HTTP {status} on {path}"
        return False

    def _succeeded(self) -> None:
        self.last_ok = self._clock()
        self.failing_since = None
        self.last_error = None

    def unreachable_for(self) -> float:
        with self._lock:
            return 0.0 if self.failing_since is None else self._clock() - self.failing_since

    def check(self, within: float) -> Check:
        with self._lock:
            moment = self._clock()
            if self.failing_since is not None:
                return Check(False, f"failing for {moment - self.failing_since:.0f} s: "
                                    f"{self.last_error}")
            if self.last_ok is None:
                return Check(False, "not reached yet")
            silent = moment - self.last_ok
            if silent > within:
                return Check(False, f"no answer for {silent:.0f} s (limit {within:.0f} s)")
            return Check(True, f"reached {silent:.0f} s ago")


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification is always on; a private CA is added, never a way to turn checks off."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class Backoff:
    """Exponential with jitter, capped; Retry-After is a floor."""

    def __init__(self, minimum: float, maximum: float) -> None:
        self._minimum = minimum
        self._maximum = maximum
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def next_delay(self, retry_after: float | None) -> float:
        ceiling = min(self._maximum, self._minimum * 2**self._failures)
        self._failures = min(self._failures + 1, 30)
        delay = random.uniform(ceiling / 2, ceiling)
        return max(delay, retry_after or 0.0)
