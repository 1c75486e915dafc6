"""Operations: what the running gateway shows and obeys besides its pipeline.

One object that ties together systemd (readiness, watchdog, status line), metrics, liveness
and readiness, the LAN page, and SIGHUP (reload the registry from disk and the log level from
the config file). It sees the gateway only through `GatewayFacts`; the gateway calls it at a
handful of points: a message arrived, events were committed, started, stopping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import aiohttp

from edge.buffer.outbox import OutboxFull
from edge.config import ConfigError, GatewayConfig, load_config
from edge.events import Event, isoformat, now
from edge.ops.facts import GatewayFacts
from edge.ops.health import broker_check, outbox_check, pipeline_check, stages_check, verdict
from edge.ops.http import NotRecorded
from edge.ops.lanpage import DeviceBoard, device_rows
from edge.ops.metrics import Metrics
from edge.ops.systemd import Liveness, Notifier, Watchdog
from edge.source.messages import DeviceMessage
from mashang import logs
from mashang.registry import Registry

log = logging.getLogger(__name__)

STATUS_INTERVAL = 5.0
ALERTS_SHOWN = 50
HANDLED_LOCALLY = "alert.handled_locally"
MARKS_KEPT = 1000
RECORD_TIMEOUT = 10.0


class Operations:
    def __init__(self, facts: GatewayFacts, config: GatewayConfig,
                 config_path: Path | None = None, cli_log_level: str | None = None) -> None:
        self._facts = facts
        self._config = config
        self.config_path = config_path
        self.cli_log_level = cli_log_level
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.board = DeviceBoard()
        self.liveness: Liveness | None = None
        self._watchdog: Watchdog | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._registry: tuple[tuple[int, int] | None, Registry] = (None, Registry())
        self.reloads = 0
        # "Handled here" marks of the LAN page, by alert id (oldest first).
        self._handled: dict[str, dict[str, Any]] = {}
        self._handled_lock = threading.Lock()
        self._keep_secrets_out_of_logs()

    def _keep_secrets_out_of_logs(self) -> None:
        config = self._config
        secrets: list[str | bytes | None] = [config.central_key()]
        for secret in (config.mqtt.password, config.http.page_password):
            if secret is not None:
                secrets.append(secret.get_secret_value())
        logs.redactor.add(*secrets)

    # -- hooks the gateway calls ------------------------------------------------------------

    def received(self, messages: tuple[DeviceMessage, ...]) -> None:
        """MQTT thread."""
        for message in messages:
            self.metrics.received(message)

    def committed(self, events: list[Event]) -> None:
        """Commit thread, right after a commit."""
        self.metrics.committed(events)
        self.board.committed(events)

    def trace_configs(self) -> list[aiohttp.TraceConfig]:
        return [self.metrics.trace_config(self._config.central.base_url,
                                          self._facts.central.answered)]

    def started(self) -> None:
        """On the loop, once the pipeline, ingest and HTTP listener are running."""
        facts = self._facts
        loop = asyncio.get_running_loop()
        self.metrics.watch(facts)
        self.liveness = Liveness(loop, facts.on_commit_thread, facts.pipeline_full)
        self._watchdog = Watchdog(self.notifier, self.liveness,
                                  Watchdog.interval_for(self.notifier))
        self._watchdog.start()
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        if self.notifier.enabled:
            self._tasks.append(asyncio.create_task(self._status_line()))
        self.notifier.ready(f"gateway {self._config.gateway.id} started")
        if self.notifier.watchdog_usec:
            log.info("systemd watchdog: %.1f s, fed every %.1f s while the pipeline answers",
                     self.notifier.watchdog_usec / 1e6, Watchdog.interval_for(self.notifier))

    def stopping(self) -> None:
        self.notifier.stopping("stopping: committing what is in flight")
        # Not the default action (which would kill us mid-commit): a reload now is moot.
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, lambda: log.info("SIGHUP ignored: stopping")
        )
        for task in self._tasks:
            task.cancel()

    def stopped(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        self.notifier.close()

    # -- what the HTTP listener shows ---------------------------------------------------------

    def live(self) -> tuple[bool, dict[str, Any]]:
        facts = self._facts
        checks = {
            "broker": broker_check(facts.broker, facts.broker_address),
            "pipeline": pipeline_check(self.liveness),
            "stages": stages_check(facts.failure()),
        }
        # Live once subscribed (supervisors and external tests rely on it), unless stalled.
        ok, detail = verdict(checks)
        subscribed = facts.broker.subscribed.is_set()
        return ok, {"broker": "subscribed" if subscribed else "not subscribed", **detail}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Blocking (reads the outbox): call from a worker thread."""
        facts = self._facts
        checks = {
            "broker": broker_check(facts.broker, facts.broker_address),
            "central": facts.central.check(self._config.http.ready_central_within),
            "outbox": outbox_check(facts.outbox_stats(), facts.pipeline_full()),
        }
        return verdict(checks)

    def metrics_text(self, accept: str | None) -> tuple[bytes, str]:
        """Blocking (reads the outbox): call from a worker thread."""
        return self.metrics.exposition(accept)

    def page(self) -> dict[str, Any]:
        """Everything the LAN page shows. Blocking (reads the outbox): from a worker thread."""
        facts = self._facts
        stats = facts.outbox_stats()
        central = facts.central

        def depth(d: Any) -> dict[str, Any]:
            return {"events": d.events, "bytes": d.bytes, "oldest_age": d.oldest_age}

        with self._handled_lock:
            handled = dict(self._handled)
        return {
            "gateway_id": facts.gateway_id,
            "fallback": facts.fallback_active(),
            "alerts": self._alerts_waiting(),
            "central": {
                "failing_since": central.failing_since,
                "last_ok": central.last_ok,
                "last_error": central.last_error,
            },
            "handled": handled,
            "facts": {
                "消息服务器（MQTT）": "已连接" if facts.broker.connected else "未连接",
                "待发警报": stats.alerts.events,
                "待发日志": stats.logs.events,
                "死信": stats.dead_letters,
            },
            "devices": device_rows(facts.devices(), self.board.snapshot(), self.registry()),
            "outbox": {
                "alerts": depth(stats.alerts),
                "logs": depth(stats.logs),
                "dead_letters": stats.dead_letters,
                "used_bytes": stats.used_bytes,
                "max_bytes": stats.max_bytes,
                "full": facts.pipeline_full(),
            },
        }

    def _alerts_waiting(self) -> list[Any]:
        facts = self._facts
        try:
            return facts.fallback_waiting() or facts.waiting_alerts(ALERTS_SHOWN)
        except Exception:  # an outbox row that is not JSON: the rest of the page still shows
            log.exception("LAN page: the alerts waiting could not be read")
            return []

    def handle_locally(self, alert_id: str, by: str, note: str) -> dict[str, Any]:
        """The duty room handled a waiting alert here: commit an `alert.handled_locally` log
        event (it reaches the central, and the alert's history there, once it is reachable)
        and remember the mark for the page. Blocking: from a worker thread. An alert already
        marked keeps its first mark."""
        record = self._facts.record
        with self._handled_lock:
            if alert_id in self._handled:
                return dict(self._handled[alert_id])
        alert = next((a for a in self._alerts_waiting()
                      if isinstance(a, dict) and a.get("id") == alert_id), {})
        data = alert.get("data")
        gateway_alert_id = data.get("alert_id") if isinstance(data, dict) else None
        device_id = alert.get("device_id")
        mark = {
            "alert_id": alert_id,
            "gateway_alert_id": gateway_alert_id if isinstance(gateway_alert_id, str) else None,
            "device_id": device_id if isinstance(device_id, str) else None,
            "by": by,
            "at": isoformat(now()),
            "note": note,
        }
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def commit() -> None:
            try:
                record(HANDLED_LOCALLY, dict(mark))
            except Exception as exc:
                done.set_exception(exc)
                raise
            with self._handled_lock:
                self._handled.setdefault(alert_id, mark)
                while len(self._handled) > MARKS_KEPT:
                    self._handled.pop(next(iter(self._handled)))
            done.set_result(None)

        self._facts.on_commit_thread(commit)
        try:
            done.result(RECORD_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise NotRecorded("网关繁忙，稍后会记下；请过一会儿刷新查看") from None
        except OutboxFull:
            raise NotRecorded("发件箱已满") from None
        except Exception as exc:
            raise NotRecorded(f"内部错误（{type(exc).__name__}）") from exc
        log.info("alert %s marked handled locally on the LAN page", alert_id)
        return mark

    def registry(self) -> Registry:
        """The registry on disk, reread only when the file changed (for names on the page)."""
        store = self._facts.registry_store
        try:
            info = store.path.stat()
        except FileNotFoundError:
            return Registry()
        stamp = (info.st_mtime_ns, info.st_ino)
        if self._registry[0] != stamp:
            try:
                self._registry = (stamp, store.load())
            except ValueError as exc:
                log.debug("registry unreadable for the page: %s", exc)
        return self._registry[1]

    # -- SIGHUP ---------------------------------------------------------------------------------

    def _on_sighup(self) -> None:
        self._tasks.append(asyncio.create_task(self.reload()))

    async def reload(self) -> None:
        """Reread the log level (config file) and the registry (data dir). Nothing stops: the
        registry is swapped on the commit thread between two commits, as a downlink
        `registry.replace` is, so every message is judged by one registry or the other."""
        log.info("SIGHUP: reloading the log level and the registry")
        level = await asyncio.to_thread(self._reload_level)
        store = self._facts.registry_store
        try:
            registry = await asyncio.to_thread(store.load)
        except (ValueError, OSError) as exc:
            log.error("registry %s not reloaded, keeping the one in use: %s", store.path, exc)
            return
        swapped: concurrent.futures.Future[None] = concurrent.futures.Future()

        def swap() -> None:
            try:
                self._facts.use_registry(registry)
            except Exception as exc:
                swapped.set_exception(exc)
                raise
            swapped.set_result(None)

        self._facts.on_commit_thread(swap)
        await asyncio.wrap_future(swapped)
        self.reloads += 1
        log.info("reloaded: registry version %s (%d buttons, %d scanners), log level %s",
                 registry.version, len(registry.buttons), len(registry.scanners), level)
        log.debug("registered buttons now: %s", ", ".join(
            button.device_id for button in registry.buttons[:50]) or "none")

    def _reload_level(self) -> str:
        level = self.cli_log_level or "info"
        if self.config_path is not None:
            try:
                fresh = load_config(self.config_path)
            except ConfigError as exc:
                log.error("config not reread, log level kept: %s", exc)
                return logs.current_level()
            level = fresh.logging.level or level
        return logs.set_level(level)

    # -- the status line systemd shows --------------------------------------------------------

    async def _status_line(self) -> None:
        while True:
            try:
                text = await asyncio.to_thread(self.status_text)
                self.notifier.status(text)
            except Exception:
                log.debug("status line failed", exc_info=True)
            await asyncio.sleep(STATUS_INTERVAL)

    def status_text(self) -> str:
        facts = self._facts
        stats = facts.outbox_stats()
        broker = "broker ok" if facts.broker.subscribed.is_set() else "broker DOWN"
        central = facts.central.check(self._config.http.ready_central_within)
        buttons = facts.devices()
        offline = sum(1 for b in buttons.values() if b.get("offline"))
        parts = [
            broker,
            "central ok" if central.ok else "central DOWN",
            f"outbox {stats.alerts.events} alerts, {stats.logs.events} logs",
            f"{len(buttons)} buttons ({offline} offline)",
        ]
        if facts.pipeline_full():
            parts.append("OUTBOX FULL")
        if stats.dead_letters:
            parts.append(f"{stats.dead_letters} dead letters")
        return "; ".join(parts)
