"""Liveness and readiness, with the reasons a person needs (served at /healthz and /readyz).

- Live (`/healthz`): subscribed to the broker, and the commit thread and the asyncio loop
  both answer the watchdog's probes. 200 once subscribed, 503 otherwise.
- Ready (`/readyz`): the broker is connected, the central answered recently and is not
  failing now, and the outbox is below its cap. 200 when all three hold, 503 with the failing
  checks' reasons otherwise.

How the central is doing is `edge.sink.central.CentralHealth`'s to say.
"""

from __future__ import annotations

from typing import Any

from edge.sink.central import Check

# The commit thread or the loop not answering for this long makes the gateway not live.
STALLED_AFTER = 30.0


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


def stages_check(failure: str | None) -> Check:
    if failure is not None:
        return Check(False, f"{failure}; the gateway is stopping to be restarted")
    return Check(True, "every stage running")


def verdict(checks: dict[str, Check]) -> tuple[bool, dict[str, Any]]:
    ok = all(check.ok for check in checks.values())
    return ok, {
        "ok": ok,
        "checks": {name: check.as_json() for name, check in checks.items()},
        "reasons": [f"{name}: {check.detail}" for name, check in checks.items() if not check.ok],
    }
