"""The time the alert book and engine go by, passed in so that waiting logic can be tested.

A clock is anything called with no arguments that returns wall-clock seconds since the epoch,
like `time.time`: alert times are stored, compared with the events' arrival times and outlive
a restart, so a monotonic clock would not do. Tests pass a fake whose time they move by hand.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock"]


class Clock(Protocol):
    def __call__(self) -> float: ...


SYSTEM_CLOCK: Clock = time.time
