"""The narrow view that operations (health, metrics, the LAN page, systemd, SIGHUP) get of the
running gateway: handles and callbacks that the gateway hands in, never a stage itself.

Nothing in `edge.ops` imports `edge.gateway`; whatever it may read or ask is listed here.
`Report` turns what it knows into the facts the gateway tells the central (PROTOCOL §6).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

from edge.buffer.outbox import OutboxError, OutboxStats, OutboxUsage
from edge.registry_store import RegistryStore
from edge.sink.central import CentralHealth
from edge.sink.uplink import UplinkCounts
from mashang import wire
from mashang.registry import Registry

__all__ = ["BrokerState", "GatewayFacts", "Report"]

# How long the outbox's depth is reused before it is read again (see Report).
REPORT_EVERY = 1.0


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


def software_version() -> str | None:
    try:
        return metadata.version("mashang-edge")
    except metadata.PackageNotFoundError:  # run from a tree that was never installed
        return None


class Report:
    """The gateway facts sent with every batch and command poll: software version, outbox
    depth per class, age of the oldest waiting alert, uptime.

    Called on the loop for every batch: the outbox is read at most once every REPORT_EVERY
    seconds (a read as cheap as the uplink's own `pending`), so a burst does not read it per
    request. Never raises: an outbox that SQLite refuses is reported without its depth."""

    def __init__(self, outbox_stats: Callable[[], OutboxStats],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._outbox_stats = outbox_stats
        self._clock = clock
        self._started = clock()
        self._version = software_version()
        self._read: tuple[float, OutboxStats | None] | None = None

    def __call__(self) -> wire.GatewayFacts:
        now = self._clock()
        if self._read is None or now - self._read[0] >= REPORT_EVERY:
            try:
                self._read = (now, self._outbox_stats())
            except OutboxError:
                self._read = (now, None)
        read_at, stats = self._read
        oldest = stats.alerts.oldest_age if stats else None
        return wire.GatewayFacts(
            version=self._version,
            outbox=wire.OutboxDepth(alert=stats.alerts.events, log=stats.logs.events)
            if stats else None,
            oldest_alert_waiting_s=None if oldest is None
            else round(max(0.0, oldest + now - read_at), 3),  # a wall clock set back
            uptime_s=round(now - self._started, 3),
        )
