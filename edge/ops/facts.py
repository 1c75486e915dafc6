"""The narrow view that operations (health, metrics, the LAN page, systemd, SIGHUP) get of the
running gateway: handles and callbacks that the gateway hands in, never a stage itself.

Nothing in `edge.ops` imports `edge.gateway`; whatever it may read or ask is listed here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge.buffer.outbox import OutboxStats, OutboxUsage
from edge.registry_store import RegistryStore
from edge.sink.central import CentralHealth
from edge.sink.uplink import UplinkCounts
from mashang.registry import Registry

__all__ = ["BrokerState", "GatewayFacts"]


class BrokerState(Protocol):
    """What the MQTT side tells about its connection (`edge.source.mqtt.Ingest` is one)."""

    subscribed: threading.Event

    @property
    def connected(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class GatewayFacts:
    gateway_id: str
    broker_address: str
    broker: BrokerState
    central: CentralHealth
    uplink: UplinkCounts
    outbox_usage: OutboxUsage
    # Blocking reads of the outbox file: call from a worker thread, never on the loop.
    outbox_stats: Callable[[], OutboxStats]
    waiting_alerts: Callable[[int], list[dict[str, Any]]]
    pipeline_full: Callable[[], bool]
    committed_messages: Callable[[], int]
    # What the rules remember of each button (a copy, safe from any thread).
    devices: Callable[[], dict[str, dict[str, Any]]]
    fallback_active: Callable[[], bool]
    fallback_waiting: Callable[[], list[dict[str, Any]]]
    # Runs work on the commit thread, between two commits.
    on_commit_thread: Callable[[Callable[[], None]], None]
    # Swaps the registry the rules judge by; call it on the commit thread only.
    use_registry: Callable[[Registry], None]
    registry_store: RegistryStore
    # Why a stage ended, once one has (the gateway is then stopping, to be restarted).
    failure: Callable[[], str | None]
    # Commits an event the gateway raises itself (type, data), as `gateway_event` builds it,
    # and tells the stages as after any commit (the LAN page's "handled here"). Raises
    # OutboxFull when it does not fit. On the commit thread only.
    record: Callable[[str, dict[str, Any]], None]
