"""Device adapters: off-the-shelf buttons' native MQTT topics mapped onto PROTOCOL §1.

Zigbee2MQTT buttons and Shelly inputs do not speak the Mashang topics. `translate()` turns
each native message into the canonical messages a Mashang button would have sent for the same
thing (a press on `{root}/buttons/{device_id}/events`, a heartbeat on `.../status`), so the
rules see no difference; the native fields travel upstream as well.

- `config`: `[adapters]`, and how native names become device ids.
- `zigbee2mqtt`, `shelly` (Gen1 and Gen2+): each family's native topics and payloads.
- `common`: what they share (the message context, canonical-message building, identity).
- `dispatch`: `translate()`, the dispatcher, and the topic filters to subscribe to.
"""

from __future__ import annotations

from edge.source.adapters.config import AdaptersSection, DeviceMapping, default_device_id
from edge.source.adapters.dispatch import adapter_subscriptions, translate
from edge.source.adapters.shelly import RepeatFilter

__all__ = [
    "AdaptersSection",
    "DeviceMapping",
    "RepeatFilter",
    "adapter_subscriptions",
    "default_device_id",
    "translate",
]
