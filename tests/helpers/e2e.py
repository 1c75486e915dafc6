"""Helpers for the end-to-end tests: simulated buttons on the real broker whose LED feedback
is recorded, the gateway's copy of the registry, and percentiles for latency reports."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devices.simulators.buttons import SimulatedButton
from edge.registry_store import RegistryStore
from mashang.registry import Registry
from tests.helpers.support import Gateway, wait_for

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass(frozen=True)
class Feedback:
    device_id: str
    alert_id: str | None
    state: str | None
    by: str | None
    at: float  # time.time() when the button got it


@dataclass
class FeedbackLog:
    """Every feedback message the simulated buttons received over MQTT, in arrival order."""

    items: list[Feedback] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, device_id: str, feedback: dict) -> None:  # SimulatedButton's on_feedback
        item = Feedback(
            device_id,
            feedback.get("alert_id"),
            feedback.get("state"),
            feedback.get("by"),
            time.time(),
        )
        with self._lock:
            self.items.append(item)

    def of(self, device_id: str, state: str | None = None) -> list[Feedback]:
        with self._lock:
            return [
                item
                for item in self.items
                if item.device_id == device_id and state in (None, item.state)
            ]

    def wait(self, device_id: str, state: str, timeout: float = 20.0) -> Feedback:
        """The first `state` feedback the button got, once it has one."""
        found = wait_for(
            lambda: self.of(device_id, state), timeout, what=f"{state!r} feedback at {device_id}"
        )
        return found[0]


@contextmanager
def buttons(
    port: int, device_ids: list[str], feedback: FeedbackLog | None = None
) -> Iterator[dict[str, SimulatedButton]]:
    """Connected simulated buttons (one real paho client each), stopped cleanly at the end."""
    started: dict[str, SimulatedButton] = {}
    try:
        for device_id in device_ids:
            button = SimulatedButton(device_id, port=port, on_feedback=feedback)
            button.start()
            started[device_id] = button
        yield started
    finally:
        for button in started.values():
            button.stop()


def gateway_registry(gateway: Gateway) -> Registry | None:
    path = gateway.data_dir / "registry.json"
    if not path.exists():
        return None
    try:
        return RegistryStore(path).load()
    except ValueError:
        return None


def synced_gateway(make_gateway, central_url: str, device_ids: list[str]) -> Gateway:
    """A started gateway that already holds the central's registry with these buttons."""
    gateway = make_gateway(central_url)
    gateway.start()
    wait_gateway_registry(gateway, device_ids)
    return gateway


def wait_gateway_registry(gateway: Gateway, device_ids: list[str], timeout: float = 30.0) -> None:
    """Until the gateway holds the central's registry (sent as `registry.replace` by the
    downlink) with these buttons in it. The gateway writes the file and hands the rules the
    registry in one step on its commit thread, so a press published after the file shows them
    is judged with them."""

    def arrived() -> bool:
        assert gateway.running(), f"gateway exited:\n{gateway.output()[-3000:]}"
        registry = gateway_registry(gateway)
        held = {button.device_id for button in registry.buttons} if registry else set()
        return set(device_ids) <= held

    wait_for(arrived, timeout, what="the registry at the gateway")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
