"""Wires the stages together and runs them until SIGTERM or SIGINT.

    MQTT ──▶ ingest ──▶ pipeline (rules, outbox commit, ack) ──▶ uplink ──HTTP──▶ central

Ingest runs on paho's network thread, the pipeline on its own commit thread, and the uplink
and the HTTP listener on the asyncio loop of the main thread.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import aiohttp

from edge.config import GatewayConfig
from edge.events import Event, event_id, now
from edge.ingest import Ingest
from edge.outbox import Outbox
from edge.pipeline import Pipeline
from edge.rules import Rules
from edge.status import make_status_app, start_site
from edge.uplink import Uplink, ssl_context

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite"


def started_event(gateway_id: str) -> Event:
    moment = now()
    return Event(
        id=event_id(f"gateway.started\n{gateway_id}\n{moment.timestamp()}", "gateway.started"),
        kind="log",
        type="gateway.started",
        priority="low",
        device_id=None,
        occurred_at=moment,
        received_at=moment,
        data={"gateway_id": gateway_id},
    )


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        data_dir = config.gateway.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            data_dir / OUTBOX_FILE, max_bytes=config.outbox.max_bytes, log_ttl=config.outbox.log_ttl
        )
        self.uplink = Uplink(
            config.central,
            config.outbox,
            self.outbox,
            gateway_id=config.gateway.id,
            key=config.central_key(),
        )
        self.ingest = Ingest(
            config.mqtt,
            client_id=config.mqtt.client_id or f"mashang-gateway-{config.gateway.id}",
            topic_root=config.gateway.topic_root,
            deliver=self._received,
        )
        self.pipeline = Pipeline(
            Rules(),
            self.outbox,
            ack=self.ingest.ack,
            on_committed=self._committed,
            max_group=config.mqtt.receive_maximum,
        )

    def _received(self, received) -> None:
        self.pipeline.submit(received)

    def _committed(self, events: list[Event]) -> None:
        self.uplink.notify(any(event.is_alert for event in events))

    def live(self) -> tuple[bool, dict]:
        subscribed = self.ingest.subscribed.is_set()
        return subscribed, {"broker": "subscribed" if subscribed else "not subscribed"}

    async def run(self) -> int:
        started = time.monotonic()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.outbox.put([started_event(self.config.gateway.id)])
        runner = await start_site(
            make_status_app(self.live), self.config.http.host, self.config.http.port
        )
        connector = aiohttp.TCPConnector(ssl=ssl_context(self.config.central.ca_file))
        async with aiohttp.ClientSession(connector=connector) as session:
            uplink = asyncio.create_task(self.uplink.run(session))
            self.pipeline.start()
            self.ingest.start()
            log.info(
                "gateway %s running (%.0f ms to start); health on http://%s/healthz",
                self.config.gateway.id,
                (time.monotonic() - started) * 1000,
                self.config.http.listen,
            )
            await stop.wait()
            log.info("stopping: no new messages; committing what is in flight")
            self.ingest.stop_taking()
            await asyncio.to_thread(self.pipeline.stop)
            self.ingest.close()
            uplink.cancel()
            await asyncio.gather(uplink, return_exceptions=True)
        await runner.cleanup()
        self.outbox.close()
        log.info("stopped; %d messages committed this run", self.pipeline.committed_messages)
        return 0


def run_gateway(config: GatewayConfig) -> int:
    return asyncio.run(Gateway(config).run())
