"""Wires the stages together and runs them until SIGTERM or SIGINT.

    MQTT ──▶ ingest ──▶ pipeline (rules, outbox commit, ack) ──▶ uplink ──HTTP──▶ central
      ▲                                                                            │
      └──── feedback ◀──────────────── downlink (long-poll) ◀──────────────────────┘

The broker connection runs in a process of its own (the MQTT process, see edge.source.mqtt);
ingest parses on its `mqtt-in` thread, the pipeline runs on its own commit thread, and the
uplink, downlink, fallback and HTTP listener on the asyncio loop of the main thread.

Every stage is supervised: if the MQTT process, the commit thread, the uplink, the downlink or
the fallback ends while the gateway is not stopping, the gateway says why, turns /healthz to
503 at once, stops in order (what was received is committed) and exits 1, for systemd to
start it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.buffer.outbox import EventClass, Outbox, OutboxUsage
from edge.config import GatewayConfig
from edge.downlink.feedback import Feedback
from edge.downlink.indicators import Indicators
from edge.downlink.poll import Downlink
from edge.events import Event
from edge.instance import CannotStart, claim_instance
from edge.ops.facts import GatewayFacts, Report
from edge.ops.http import make_status_app, start_site
from edge.ops.operations import Operations
from edge.registry_store import RegistryStore
from edge.sink.central import CentralHealth, ssl_context
from edge.sink.fallback import Fallback
from edge.sink.uplink import Uplink
from edge.source.mqtt import Ingest, Received
from edge.transform.pipeline import Pipeline
from edge.transform.rules import Rules, gateway_event
from edge.words import describe_os_error
from mashang.registry import Registry

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite"
REGISTRY_FILE = "registry.json"
DEVICES_FILE = "devices.json"
CURSOR_FILE = "downlink.cursor"
# glibc's mallopt parameter for the number of malloc arenas (malloc.h).
M_ARENA_MAX = -8
BUTTON_FEEDBACK = {"button.press", "button.repeat"}
# A stall's violation is an alert beside its scan's `scan.rejected`: the scanner hears that one.
SCANNER_FEEDBACK = {"scan.accepted", "scan.rejected", "visit.checkin"}


class Gateway:
    def __init__(self, config: GatewayConfig, config_path: Path | None = None,
                 log_level: str | None = None) -> None:
        self.config = config
        data_dir = config.gateway.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        key = config.central_key()
        client_id = config.mqtt.client_id or f"mashang-gateway-{config.gateway.id}"
        self.instance = claim_instance(data_dir, f"{config.mqtt.host}:{config.mqtt.port}",
                                       client_id)
        # Why a stage ended, once one has: the gateway then stops and exits non-zero.
        self.failure: str | None = None
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.outbox_usage = OutboxUsage()
        self.outbox, _ = Outbox.open_checked(  # a damaged file is moved aside, an alert raised
            data_dir / OUTBOX_FILE, max_bytes=config.outbox.max_bytes,
            log_ttl=config.outbox.log_ttl, usage=self.outbox_usage,
        )
        self.registry_store = RegistryStore(data_dir / REGISTRY_FILE)
        registry, set_aside = self.registry_store.load_at_start()
        if set_aside:  # started with no registry: ask the central for the whole of it
            Downlink.reset_cursor(data_dir / CURSOR_FILE)
        self.rules = Rules(config.rules, registry, data_dir / DEVICES_FILE)
        # What the gateway tells the central of itself with each batch and poll (PROTOCOL §6).
        report = Report(self.outbox.stats)
        self.uplink = Uplink(
            config.central, config.outbox, self.outbox, gateway_id=config.gateway.id, key=key,
            facts=report,
        )
        self.ingest = Ingest(
            config.mqtt,
            client_id=client_id,
            topic_root=config.gateway.topic_root,
            deliver=self._received,
            adapters=config.adapters,
            on_failure=self._failed_elsewhere,
        )
        # The lights, sirens and speakers buttons name in the registry (docs/indicators.md).
        self.indicators = Indicators(
            config.indicators, registry, publish=self.ingest.publish, watch=self.ingest.watch,
            topic_root=config.gateway.topic_root,
            zigbee2mqtt_base=config.adapters.zigbee2mqtt_base, gateway_id=config.gateway.id,
        )
        self.feedback = Feedback(self.ingest.publish, config.gateway.topic_root, self.indicators)
        self.pipeline = Pipeline(
            self.rules,
            self.outbox,
            ack=self.ingest.ack,
            on_committed=self._committed,
            on_failure=self._failed_elsewhere,
            tick_interval=config.rules.tick_interval,
        )
        self.downlink = Downlink(
            config.central,
            gateway_id=config.gateway.id,
            key=key,
            feedback=self.feedback,
            apply_registry=self._apply_registry,
            revoke_code=self._revoke_code,
            alert_resolved=self._alert_resolved,
            cursor_path=data_dir / CURSOR_FILE,
            facts=report,
        )
        self.central_health = CentralHealth()
        # The central's return, seen by any request (the command poll's, a batch), ends the
        # uplink's retry waits at once.
        self.central_health.on_reachable(self.uplink.central_reachable)
        self.fallback = Fallback(
            config.fallback, self.outbox, self.central_health, config.gateway.id
        )
        self.ops = Operations(self._facts(), config, config_path, log_level)

    def _facts(self) -> GatewayFacts:
        """What operations may see of the stages (edge.ops.facts)."""
        config = self.config
        return GatewayFacts(
            gateway_id=config.gateway.id,
            broker_address=f"{config.mqtt.host}:{config.mqtt.port}",
            broker=self.ingest,
            central=self.central_health,
            uplink=self.uplink.counts,
            outbox_usage=self.outbox_usage,
            outbox_stats=self.outbox.stats,
            waiting_alerts=self._waiting_alerts,
            pipeline_full=lambda: self.pipeline.full,
            committed_messages=lambda: self.pipeline.committed_messages,
            devices=self.rules.device_snapshot,
            fallback_active=lambda: self.fallback.active,
            fallback_waiting=lambda: self.fallback.waiting,
            on_commit_thread=self.pipeline.call_soon,
            use_registry=self._use_registry,
            registry_store=self.registry_store,
            failure=lambda: self.failure,
            record=self._record,
        )

    def _waiting_alerts(self, limit: int) -> list[dict[str, Any]]:
        return [json.loads(item.body) for item in self.outbox.peek(EventClass.ALERT, limit)]

    # -- hand-offs between stages -----------------------------------------------------------

    def _received(self, batch: list[Received]) -> None:
        """On ingest's thread: waits while the pipeline holds all it may take."""
        for received in batch:
            self.ops.received(received.messages)
        self.pipeline.submit(batch)

    def _committed(self, events: list[Event]) -> None:
        """On the commit thread, right after the commit: tell the uplink and the devices."""
        self.uplink.notify(any(event.is_alert for event in events))
        self.ops.committed(events)
        for event in events:
            if event.device_id is None:
                continue
            if event.type in BUTTON_FEEDBACK:
                self.feedback.button(event.device_id, event.data["alert_id"], "received")
            elif event.type in SCANNER_FEEDBACK:
                data = event.data
                self.feedback.scanner(event.device_id, data.get("seq"), data["result"],
                                      data["reason"], data["subject"])

    def _record(self, event_type: str, data: dict[str, Any]) -> None:
        """On the commit thread: commit an event the gateway raises itself (the LAN page's
        "handled here"), then tell the stages, as after any commit."""
        events = [gateway_event(event_type, data)]
        self.outbox.put(events)
        self._committed(events)

    def _use_registry(self, registry: Registry) -> None:
        """On the commit thread: the registry the rules judge by and the indicators follow."""
        self.rules.replace_registry(registry)
        self.indicators.use_registry(registry)

    def _apply_registry(self, registry: Registry) -> None:
        def replace() -> None:
            self.registry_store.replace(registry)
            self._use_registry(registry)

        self.pipeline.call_soon(replace)

    def _alert_resolved(self, device_id: str, alert_id: str) -> None:
        """The butler closed the emergency: the button's next press is a new one."""
        self.pipeline.call_soon(lambda: self.rules.close_alert(device_id, alert_id))

    def _revoke_code(self, code: str) -> None:
        def deny() -> None:
            registry = self.registry_store.load()
            if code not in registry.denied_codes:
                denied = [*registry.denied_codes, code]
                registry = registry.model_copy(update={"denied_codes": denied})
                self.registry_store.replace(registry)
                self.rules.replace_registry(registry)

        self.pipeline.call_soon(deny)

    # -- supervision --------------------------------------------------------------------------

    def _failed(self, reason: str) -> None:
        """On the loop: a stage ended. The first reason stands; stopping begins."""
        if self.failure is None and not self._stop.is_set():
            self.failure = reason
            log.critical("%s; stopping so that the supervisor starts the gateway again", reason)
        self._stop.set()

    def _failed_elsewhere(self, reason: str) -> None:
        """From another thread (the commit thread, ingest's)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._failed, reason)

    def _supervise(self, name: str, task: asyncio.Task[None]) -> None:
        def ended(task: asyncio.Task[None]) -> None:
            if self._stop.is_set():
                return  # stopping: the task was cancelled, or ended because of it
            error = None if task.cancelled() else task.exception()
            if error is not None:
                log.critical("the %s ended", name, exc_info=error)
                self._failed(f"the {name} ended: {type(error).__name__}: {error}")
            else:
                self._failed(f"the {name} ended")

        task.add_done_callback(ended)

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> int:
        started = time.monotonic()
        loop = self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        page_password = self.config.http.page_password
        http = self.config.http
        try:
            runner = await start_site(
                make_status_app(self.ops,
                                page_password.get_secret_value() if page_password else None),
                http.host, http.port,
            )
        except OSError as exc:
            self.close()
            raise CannotStart(f"http.listen {http.listen}: {describe_os_error(exc)}") from exc
        self.outbox.put([gateway_event("gateway.started", {"gateway_id": self.config.gateway.id},
                                       priority="low")])
        connector = aiohttp.TCPConnector(ssl=ssl_context(self.config.central.ca_file))
        async with aiohttp.ClientSession(
            connector=connector, trace_configs=self.ops.trace_configs()
        ) as session:
            tasks = {
                "uplink": asyncio.create_task(self.uplink.run(session)),
                "downlink": asyncio.create_task(self.downlink.run(session)),
                "fallback": asyncio.create_task(self.fallback.run(session)),
            }
            for name, task in tasks.items():
                self._supervise(name, task)
            self.pipeline.start()
            self.ingest.start()
            self.ops.started()
            log.info("gateway %s running (%.0f ms to start); health on http://%s/healthz",
                     self.config.gateway.id, (time.monotonic() - started) * 1000, http.listen)
            await self._stop.wait()
            log.info("stopping: no new messages; committing what is in flight")
            self.ops.stopping()
            self.ingest.stop_taking()
            await asyncio.to_thread(self.pipeline.stop)
            self.ingest.close()
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        await runner.cleanup()
        self.ops.stopped()
        self.close()
        log.info("stopped; %d messages committed this run", self.pipeline.committed_messages)
        return 0 if self.failure is None else 1

    def close(self) -> None:
        self.outbox.close()
        self.instance.release()


def one_malloc_arena() -> None:
    """glibc gives each thread that allocates an arena of its own, and each keeps what it once
    held: 0.3 to 1 MB a thread after the first burst (bench/NOTES.md). One arena for all, as
    MALLOC_ARENA_MAX=1 would; before any thread starts. Elsewhere than glibc, nothing."""
    import ctypes

    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, 1)


def run_gateway(config: GatewayConfig, config_path: Path | None = None,
                log_level: str | None = None) -> int:
    one_malloc_arena()
    return asyncio.run(Gateway(config, config_path, log_level).run())
