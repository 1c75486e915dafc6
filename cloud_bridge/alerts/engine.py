"""The alert engine: runs the alert book off the event loop and acts on what it reports.

It feeds newly stored events to the book, pages the rung of the escalation ladder each change
calls for, keeps one asyncio timer per alert with a deadline (unacknowledged, or acknowledged
with nobody at the door yet; restored from the database after a restart), publishes every
change to the consoles' live streams and wakes the long-polls of gateways that have a feedback
command waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from cloud_bridge.alerts.book import FEED_CHUNK, Alert, AlertBook, Change, Reason
from cloud_bridge.alerts.clock import Clock
from cloud_bridge.alerts.live import AlertBus
from cloud_bridge.alerts.routing import ladder, targets_for
from cloud_bridge.alerts.states import UNACKNOWLEDGED, Page, Step
from cloud_bridge.commands.queue import CommandQueue
from cloud_bridge.notify.webhooks import Endpoint, Message, Notifier, render
from cloud_bridge.registry.source import RegistrySource

log = logging.getLogger(__name__)


class AlertEngine:
    def __init__(
        self,
        book: AlertBook,
        registry: RegistrySource,
        notifier: Notifier,
        bus: AlertBus,
        commands: CommandQueue,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.book = book
        # Deadlines are wall-clock times in the book: read them by the book's clock.
        self._clock = book.clock if clock is None else clock
        self._registry = registry
        self._notifier = notifier
        self._bus = bus
        self._commands = commands
        self._pending = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        for alert in await asyncio.to_thread(self.book.escalating):
            self._schedule(alert)
        self._spawn(self._feed_forever())
        self.poke()  # events stored before a crash that no alert has seen yet

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def poke(self) -> None:
        """New events are in the log."""
        self._pending.set()

    # -- people act ----------------------------------------------------------------------

    async def acknowledge(self, alert_id: str, who: str, name: str) -> Change | None:
        change = await asyncio.to_thread(self.book.acknowledge, alert_id, who, name)
        if change is not None:
            self.react(change)
        return change

    async def arrive(self, alert_id: str, who: str, name: str, household: str) -> Change | None:
        change = await asyncio.to_thread(self.book.arrive, alert_id, who, name, household)
        if change is not None:
            self.react(change)
        return change

    async def resolve(
        self, alert_id: str, who: str, name: str, reason: Reason, note: str | None = None
    ) -> Change | None:
        change = await asyncio.to_thread(self.book.resolve, alert_id, who, name, reason, note)
        if change is not None:
            self.react(change)
        return change

    async def pushed(self, alert_id: str, account: str) -> None:
        change = await asyncio.to_thread(self.book.pushed, alert_id, account)
        if change is not None:
            self._bus.publish(change.alert)

    # -- events in -----------------------------------------------------------------------

    async def _feed_forever(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            while True:
                try:
                    seen, changes = await asyncio.to_thread(self.book.feed)
                except Exception:  # the database itself failing: try again, alerts wait
                    log.exception("could not read new events into alerts; retrying")
                    await asyncio.sleep(1.0)
                    continue
                for change in changes:
                    self.react(change)
                if seen < FEED_CHUNK:
                    break

    def react(self, change: Change) -> None:
        """Act on a change the book made, from an event, a person or the supervision."""
        alert = change.alert
        self._bus.publish(alert)
        if change.feedback_to:
            self._commands.wake(change.feedback_to)
        if change.step == Step.RAISED:
            self._page(alert, 0, Page.RAISED)
            self._schedule(alert)
        elif change.step == Step.PRIORITY and alert.state in UNACKNOWLEDGED:
            self._page(alert, alert.escalations, Page.PRIORITY)
        elif change.step in (Step.ACKNOWLEDGED, Step.ARRIVED, Step.RESOLVED):
            self._schedule(alert)  # the arrival's deadline, or none any more

    # -- escalation ----------------------------------------------------------------------

    def escalation_delay(self, alert: Alert) -> float | None:
        """Seconds from now (by the engine's clock) until the alert's next escalation is due;
        None when it is not to escalate again."""
        if alert.next_escalation_at is None:
            return None
        return max(0.0, alert.next_escalation_at - self._clock())

    def _schedule(self, alert: Alert) -> None:
        # The asyncio timer only does the waiting; the deadline is the book's, by the clock.
        earlier = self._timers.pop(alert.id, None)
        if earlier is not None:
            earlier.cancel()
        delay = self.escalation_delay(alert)
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        self._timers[alert.id] = loop.call_later(
            delay, lambda: self._spawn(self._escalate(alert.id))
        )

    async def _escalate(self, alert_id: str) -> None:
        self._timers.pop(alert_id, None)
        alert = await asyncio.to_thread(self.book.escalate, alert_id)
        if alert is None:  # acknowledged, arrived or resolved meanwhile, enough, or not due
            current = await asyncio.to_thread(self.book.get, alert_id)
            if current is not None and current.escalating:
                self._schedule(current)  # the timer ran ahead of the clock: wait the rest
            return
        self._bus.publish(alert)
        self._page(alert, alert.escalations, await self._why_escalated(alert.id))
        self._schedule(alert)

    async def _why_escalated(self, alert_id: str) -> Page:
        """The page's words differ when the alert had been acknowledged and nobody arrived."""
        steps = await asyncio.to_thread(self.book.steps, alert_id)
        last = next(s for s in reversed(steps) if s["step"] == Step.ESCALATED)
        return Page.NO_ARRIVAL if last["detail"].get("why") == "no_arrival" else Page.ESCALATED

    # -- paging --------------------------------------------------------------------------

    def _page(self, alert: Alert, escalation: int, event: Page) -> None:
        # A gateway's alert is the central's own: its data names the buildings behind it.
        gateway = alert.policy.route == "gateway"
        served = [building["id"] for building in alert.data["buildings"]] if gateway else []
        rungs = ladder(self._registry.current, alert.policy.route, alert.building, served)
        self._spawn(self._page_targets(alert, targets_for(rungs, escalation), escalation, event))

    async def _page_targets(
        self, alert: Alert, targets: list[str], escalation: int, event: Page
    ) -> None:
        url = self._notifier.console_url
        deliveries = [
            self._deliver(alert.id, endpoint, render(alert, event, target, url))
            for target in targets
            for endpoint in self._notifier.endpoints(target)
        ]
        # The count tells an operator when a target has no webhook (only the console).
        await asyncio.to_thread(self.book.paged, alert.id, targets, escalation, len(deliveries))
        await asyncio.gather(*deliveries)

    async def _deliver(self, alert_id: str, endpoint: Endpoint, message: Message) -> None:
        if not await self._notifier.deliver(alert_id, endpoint, message):
            return
        detail = {"channel": "webhook", "format": endpoint.format, "url": endpoint.shown}
        change = await asyncio.to_thread(self.book.notified, alert_id, message.target, detail)
        if change is not None:
            self._bus.publish(change.alert)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("alert engine task failed", exc_info=task.exception())
