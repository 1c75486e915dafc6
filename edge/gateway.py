"""Wires the stages together and runs them until SIGTERM or SIGINT.

    MQTT ──▶ ingest ──▶ pipeline (rules, outbox commit, ack) ──▶ uplink ──HTTP──▶ central
      ▲                                                                            │
      └──── feedback ◀──────────────── downlink (long-poll) ◀──────────────────────┘

Ingest runs on paho's network thread, the pipeline on its own commit thread, and the uplink,
downlink, fallback and HTTP listener on the asyncio loop of the main thread.
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
from edge.downlink.poll import Downlink
from edge.events import Event
from edge.ops.facts import GatewayFacts
from edge.ops.http import make_status_app, start_site
from edge.ops.operations import Operations
from edge.registry_store import RegistryStore
from edge.sink.central import CentralHealth, ssl_context
from edge.sink.fallback import Fallback
from edge.sink.uplink import Uplink
from edge.source.mqtt import Ingest, Received
from edge.transform.pipeline import Pipeline
from edge.transform.rules import Rules, gateway_event
from mashang.registry import Registry

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite"
REGISTRY_FILE = "registry.json"
DEVICES_FILE = "devices.json"
CURSOR_FILE = "downlink.cursor"
BUTTON_FEEDBACK = {"button.press", "button.repeat"}
SCANNER_FEEDBACK = {"scan.accepted", "scan.rejected", "stall.violation", "visit.checkin"}


class Gateway:
    def __init__(self, config: GatewayConfig, config_path: Path | None = None,
                 log_level: str | None = None) -> None:
        self.config = config
        data_dir = config.gateway.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        key = config.central_key()
        self.outbox_usage = OutboxUsage()
        self.outbox = Outbox(
            data_dir / OUTBOX_FILE, max_bytes=config.outbox.max_bytes,
            log_ttl=config.outbox.log_ttl, usage=self.outbox_usage,
        )
        self.registry_store = RegistryStore(data_dir / REGISTRY_FILE)
        self.rules = Rules(config.rules, self.registry_store.load(), data_dir / DEVICES_FILE)
        self.uplink = Uplink(
            config.central, config.outbox, self.outbox, gateway_id=config.gateway.id, key=key
        )
        self.ingest = Ingest(
            config.mqtt,
            client_id=config.mqtt.client_id or f"mashang-gateway-{config.gateway.id}",
            topic_root=config.gateway.topic_root,
            deliver=self._received,
            adapters=config.adapters,
        )
        self.feedback = Feedback(self.ingest.publish, config.gateway.topic_root)
        self.pipeline = Pipeline(
            self.rules,
            self.outbox,
            ack=self.ingest.ack,
            on_committed=self._committed,
            max_group=config.mqtt.receive_maximum,
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
        )
        self.central_health = CentralHealth()
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
            use_registry=self.rules.replace_registry,
            registry_store=self.registry_store,
        )

    def _waiting_alerts(self, limit: int) -> list[dict[str, Any]]:
        return [json.loads(item.body) for item in self.outbox.peek(EventClass.ALERT, limit)]

    # -- hand-offs between stages -----------------------------------------------------------

    def _received(self, received: Received) -> None:
        self.ops.received(received.messages)
        self.pipeline.submit(received)

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

    def _apply_registry(self, registry: Registry) -> None:
        def replace() -> None:
            self.registry_store.replace(registry)
            self.rules.replace_registry(registry)

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

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> int:
        started = time.monotonic()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.outbox.put([gateway_event("gateway.started", {"gateway_id": self.config.gateway.id},
                                       priority="low")])
        page_password = self.config.http.page_password
        runner = await start_site(
            make_status_app(self.ops, page_password.get_secret_value() if page_password else None),
            self.config.http.host, self.config.http.port,
        )
        connector = aiohttp.TCPConnector(ssl=ssl_context(self.config.central.ca_file))
        async with aiohttp.ClientSession(
            connector=connector, trace_configs=self.ops.trace_configs()
        ) as session:
            tasks = [
                asyncio.create_task(self.uplink.run(session)),
                asyncio.create_task(self.downlink.run(session)),
                asyncio.create_task(self.fallback.run(session)),
            ]
            self.pipeline.start()
            self.ingest.start()
            self.ops.started()
            log.info("gateway %s running (%.0f ms to start); health on http://%s/healthz",
                     self.config.gateway.id, (time.monotonic() - started) * 1000,
                     self.config.http.listen)
            await stop.wait()
            log.info("stopping: no new messages; committing what is in flight")
            self.ops.stopping()
            self.ingest.stop_taking()
            await asyncio.to_thread(self.pipeline.stop)
            self.ingest.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        self.ops.stopped()
        self.outbox.close()
        log.info("stopped; %d messages committed this run", self.pipeline.committed_messages)
        return 0


def run_gateway(config: GatewayConfig, config_path: Path | None = None,
                log_level: str | None = None) -> int:
    return asyncio.run(Gateway(config, config_path, log_level).run())
