"""The clock the tests hand to logic that waits (the gateway's rules, the central's alert book,
its login throttle, its gateway supervision), so that their unit tests need no sleeps."""

from __future__ import annotations


class FakeClock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
