"""Live alert changes for the consoles' server-sent event streams: an in-process fan-out.

A subscriber that falls too far behind is dropped rather than allowed to grow without bound;
its stream ends, the browser's EventSource reconnects and starts again from a fresh snapshot.
"""

from __future__ import annotations

import asyncio

from cloud_bridge.alerts.book import Alert

QUEUE_LIMIT = 1000


class Subscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Alert | None] = asyncio.Queue(QUEUE_LIMIT)

    async def next(self, timeout: float) -> Alert | None:
        """The next changed alert; None at the end of the stream. TimeoutError when quiet."""
        return await asyncio.wait_for(self.queue.get(), timeout)


class AlertBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        subscription = Subscription()
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, alert: Alert) -> None:
        for subscription in list(self._subscribers):
            try:
                subscription.queue.put_nowait(alert)
            except asyncio.QueueFull:
                self._end(subscription)

    def close(self) -> None:
        for subscription in list(self._subscribers):
            self._end(subscription)

    def _end(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        while not subscription.queue.empty():
            subscription.queue.get_nowait()
        subscription.queue.put_nowait(None)
