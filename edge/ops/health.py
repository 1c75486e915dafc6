"""Liveness and readiness, with the reasons a person needs (served at /healthz and /readyz).

- Live (`/healthz`): subscribed to the broker, and the commit thread and the asyncio loop
  both answer the watchdog's probes. 200 once subscribed, 503 otherwise.
- Ready (`/readyz`): the broker is connected, the central answered recently and is not
  failing now, and the outbox is below its cap. 200 when all three hold, 503 with the failing
  checks' reasons otherwise.

How the central is doing is learnt from every request the gateway makes to it (uplink
batches and the downlink's long-poll), through the HTTP session's trace hooks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

# Answers that mean the central cannot take our events now (PROTOCOL §3: transient or auth).
FAILING_STATUSES = {401, 403, 408, 429}
# Answers that mean our credentials or clock are refused, which deserve their own words.
AUTH_STATUSES = {401, 403}
# The commit thread or the loop not answering for this long makes the gateway not live.
STALLED_AFTER = 30.0


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


class CentralReach:
    """Whether the central answers us; fed from the HTTP session's trace hooks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_ok: float | None = None
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self.last_status: int | None = None

    def answered(self, path: str, status: int | None, error: str | None) -> None:
        with self._lock:
            if status is None and error is None:
                # Request sent: the central is reachable again, unless what failed was its
                # answer (an HTTP error stands until an answer says otherwise).
                if self.failing_since is None or self.last_status is None:
                    self._succeeded()
                return
            self.last_status = status
            if error is None and status is not None and status < 500 \
                    and status not in FAILING_STATUSES:
                self._succeeded()
                return
            if self.failing_since is None:
                self.failing_since = time.time()
            if error is not None:
                self.last_error = f"{error} ({path})"
            elif status in AUTH_STATUSES:
                self.last_error = (f"HTTP {status} on {path}: the central refuses our key or "
                                   "clock (check central.key and the time)")
            else:
                self.last_error = f"HTTP {status} on {path}"

    def _succeeded(self) -> None:
        self.last_ok = time.time()
        self.failing_since = None
        self.last_error = None

    def check(self, within: float) -> Check:
        with self._lock:
            moment = time.time()
            if self.failing_since is not None:
                return Check(False, f"failing for {moment - self.failing_since:.0f} s: "
                                    f"{self.last_error}")
            if self.last_ok is None:
                return Check(False, "not reached yet")
            silent = moment - self.last_ok
            if silent > within:
                return Check(False, f"no answer for {silent:.0f} s (limit {within:.0f} s)")
            return Check(True, f"reached {silent:.0f} s ago")


def broker_check(ingest: Any, where: str) -> Check:
    if ingest.subscribed.is_set():
        return Check(True, f"subscribed at {where}")
    if ingest.connected:
        return Check(False, f"connected to {where}, subscriptions not confirmed")
    return Check(False, f"not connected to {where} (reconnecting)")


def outbox_check(stats: Any, full: bool) -> Check:
    share = stats.used_bytes / stats.max_bytes if stats.max_bytes else 1.0
    usage = f"{stats.used_bytes:,} of {stats.max_bytes:,} bytes ({share:.0%})"
    if full:
        return Check(False, f"full: nothing more fits, MQTT acks held back; {usage}")
    if stats.used_bytes >= stats.max_bytes:
        return Check(False, f"at its cap: {usage}")
    return Check(True, usage)


def pipeline_check(liveness: Any) -> Check:
    if liveness is None:
        return Check(True, "starting")
    stalled = liveness.stalled(STALLED_AFTER)
    if stalled:
        silent = liveness.silent_for()
        names = ", ".join(f"{side} silent {silent[side]:.0f} s" for side in stalled)
        return Check(False, f"stalled: {names}")
    return Check(True, "commit thread and loop answering")


def verdict(checks: dict[str, Check]) -> tuple[bool, dict[str, Any]]:
    ok = all(check.ok for check in checks.values())
    return ok, {
        "ok": ok,
        "checks": {name: check.as_json() for name, check in checks.items()},
        "reasons": [f"{name}: {check.detail}" for name, check in checks.items() if not check.ok],
    }
