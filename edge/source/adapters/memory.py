"""What the adapters remember between messages, in memory only: one `AdapterMemory` lives as
long as the MQTT client (`edge.source.mqtt.Ingest` makes it under its older name,
`RepeatFilter`, and passes it to every `translate()` as `repeats`).

- Shelly Gen1's last input event per device input (`repeated`).
- What Zigbee2MQTT's bridge said: its buttons' models and the problems already reported
  (`zigbee2mqtt`, a `bridge.Zigbee2MqttBridge`).

Used on paho's network thread; every part is locked all the same, and bounded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from edge.source.adapters.bridge import Zigbee2MqttBridge

__all__ = ["AdapterMemory", "RepeatFilter"]


class AdapterMemory:
    """The adapters' memory: see the module doc."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._last: OrderedDict[tuple[str, int], tuple[str, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.zigbee2mqtt = Zigbee2MqttBridge()

    def repeated(self, native: str, channel: int, event: str, count: int) -> bool:
        """True when this Shelly Gen1 input's last event had the same name and counter;
        remembers it.

        Gen1 firmware re-publishes the last `input_event` with every status update (every
        30 s by default) with the same `event_cnt`. Its identity already makes it the same
        event, but the rules would still take it for a press again (refreshing the guard
        window, folding a later real press into an old alert).
        """
        key, value = (native, channel), (event, count)
        with self._lock:
            previous = self._last.get(key)
            self._last[key] = value
            self._last.move_to_end(key)
            while len(self._last) > self._capacity:
                self._last.popitem(last=False)
        return previous == value


# The name edge.source.mqtt knows it by (from when it remembered Shelly's repeats only).
RepeatFilter = AdapterMemory
