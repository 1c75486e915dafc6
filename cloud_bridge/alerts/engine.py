"""The alert engine: runs the alert book off the event loop and acts on what it reports.

It feeds newly stored events to the book, pays the pages of the escalation ladder its steps
owe (a raise, a raised priority, an escalation: `AlertBook.pay_pages`, queued for the robots in
the same transaction), keeps one asyncio timer per alert with a deadline (unacknowledged, or
acknowledged with nobody at the door yet; restored from the database after a restart),
publishes every change to the consoles' live streams and wakes the long-polls of gateways that
have a feedback command waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any

from cloud_bridge.alerts.book import (
    FEED_CHUNK,
    PAGING_STEPS,
    Alert,
    AlertBook,
    Change,
    OwedPage,
    Reason,
)
from cloud_bridge.alerts.clock import Clock
from cloud_bridge.alerts.live import AlertBus
from cloud_bridge.alerts.routing import ladder, targets_for
from cloud_bridge.alerts.states import Step
from cloud_bridge.commands.queue import CommandQueue
from cloud_bridge.notify.webhooks import Endpoint, Notifier, render
from cloud_bridge.receiver.store import Connection
from cloud_bridge.registry.source import RegistrySource

log = logging.getLogger(__name__)

PAGES_CHUNK = 100  # pages paid in one transaction
PAGES_LOOK = 2.0  # seconds between looks for pages a dead process left owed (shared database)


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
        self._owed = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        await self._restore_timers()
        self._spawn(self._feed_forever())
        self._spawn(self._pay_forever())
        self.poke()  # events stored before a crash that no alert has seen yet
        self._owed.set()  # and pages owed by steps a crash kept from being paid

    async def _restore_timers(self) -> None:
        for alert in await asyncio.to_thread(self.book.escalating):
            self._schedule(alert)

    # -- what other central processes on the same database did --------------------------

    def heard(self, topic: str, payload: str) -> None:
        """Another process stored events, changed an alert, queued a command or changed a
        webhook message's row (`Notifier.wake`). Every process keeps a timer for every
        escalating alert: whichever fires first escalates it in the book's transaction, the
        others find it no longer due."""
        if topic == "events":
            self.poke()
        elif topic == "alert":
            self._spawn(self._changed_elsewhere(payload))
        elif topic == "command":
            self._commands.wake(payload)
        elif topic == "robot":  # a webhook message queued or finished: the endpoint's key
            self._notifier.wake(payload)
        elif topic == "reconnected":  # what was announced while the line was down is unheard
            self.poke()
            self._spawn(self._restore_timers())
            self._commands.wake_all()
            self._notifier.wake_all()

    async def _changed_elsewhere(self, alert_id: str) -> None:
        alert = await asyncio.to_thread(self.book.get, alert_id)
        if alert is not None:
            self._bus.publish(alert)
            self._schedule(alert)

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
        if change.step in PAGING_STEPS:
            self._owed.set()  # the step owes a page of the ladder: pay it now
        if change.step in (Step.RAISED, Step.ACKNOWLEDGED, Step.ARRIVED, Step.RESOLVED):
            self._schedule(alert)  # its deadline, the arrival's, or none any more

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
        self._owed.set()
        self._schedule(alert)

    # -- paging --------------------------------------------------------------------------

    async def _pay_forever(self) -> None:
        """Pay the pages the book's steps owe, here or left by a process that died before it
        paid them (looked for every PAGES_LOOK seconds where processes share the database)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._owed.wait(), PAGES_LOOK if self.book.shared else None)
            self._owed.clear()
            try:
                while await self._pay_some() == PAGES_CHUNK:
                    pass
            except Exception:  # the database failing: the pages stay owed, try again
                log.exception("could not page the escalation ladder; retrying")
                await asyncio.sleep(1.0)
                self._owed.set()

    async def _pay_some(self) -> int:
        woken: list[str] = []

        def pay(db: Connection, owed: OwedPage) -> tuple[list[str], int]:
            # In its rung's words, however far the alert has climbed since (a page a dead
            # process left owed is paid late).
            alert = dataclasses.replace(owed.alert, escalations=owed.escalation)
            # A gateway's alert is the central's own: its data names the buildings behind it.
            gateway = alert.policy.route == "gateway"
            served = [building["id"] for building in alert.data["buildings"]] if gateway else []
            rungs = ladder(self._registry.current, alert.policy.route, alert.building, served)
            targets = targets_for(rungs, owed.escalation)
            url = self._notifier.console_url
            pages = [
                (alert.id, endpoint, render(alert, owed.page, target, url))
                for target in targets
                for endpoint in self._notifier.endpoints(target)
            ]
            woken.extend(self._notifier.queue_in(db, pages))
            return targets, len(pages)

        paid = await asyncio.to_thread(self.book.pay_pages, pay, PAGES_CHUNK)
        for key in dict.fromkeys(woken):
            self._notifier.wake(key)
        return paid

    async def delivered(self, alert_id: str, target: str, endpoint: Endpoint) -> None:
        """A webhook took a page: the notifier's callback, in the process that posted it
        (whichever one queued it)."""
        detail = {"channel": "webhook", "format": endpoint.format, "url": endpoint.shown}
        change = await asyncio.to_thread(self._notified, alert_id, target, detail)
        if change is not None:
            self._bus.publish(change.alert)

    def _notified(self, alert_id: str, target: str, detail: dict[str, Any]) -> Change | None:
        if self.book.get(alert_id) is None:  # a street-office report's message: no alert
            return None
        return self.book.notified(alert_id, target, detail)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("alert engine task failed", exc_info=task.exception())
