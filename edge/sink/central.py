"""What the uplink and the downlink share in talking to the central: TLS, retries, health."""

from __future__ import annotations

import email.utils
import random
import ssl
import time
from dataclasses import dataclass

MAX_RETRY_AFTER = 300.0


class Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class CentralHealth:
    """What the readiness check and the local fallback need to know about the central."""

    last_success: float | None = None
    failing_since: float | None = None
    last_error: str | None = None

    def succeeded(self) -> None:
        self.last_success = time.time()
        self.failing_since = None
        self.last_error = None

    def failed(self, reason: str) -> None:
        if self.failing_since is None:
            self.failing_since = time.time()
        self.last_error = reason

    def unreachable_for(self) -> float:
        return 0.0 if self.failing_since is None else time.time() - self.failing_since


def ssl_context(ca_file) -> ssl.SSLContext:
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
