"""Device adapters: off-the-shelf buttons' native MQTT topics mapped onto PROTOCOL §1.

Zigbee2MQTT buttons and Shelly inputs do not speak the Mashang topics. `translate()` turns
each native message into the canonical messages a Mashang button would have sent for the same
thing (a press on `{root}/buttons/{device_id}/events`, a heartbeat on `.../status`), so the
rules see no difference; the native fields travel upstream as well.

- `config`: `[adapters]`, and how native names become device ids.
- `zigbee2mqtt`, `shelly` (Gen1 and Gen2+): each family's native topics and payloads.
- `models`: Zigbee buttons' own action words by model; `bridge`: what Zigbee2MQTT's bridge
  says of its devices and configuration; `memory`: what the adapters remember meanwhile.
- `common`: what they share (the message context, canonical-message building, identity, the
  `GatewayNotice` of a misconfiguration that would hide presses).
- `dispatch`: `translate()`, the dispatcher, and the topic filters to subscribe to.
"""

from __future__ import annotations

from edge.source.adapters.bridge import output_problem
from edge.source.adapters.common import GatewayNotice
from edge.source.adapters.config import AdaptersSection, DeviceMapping, default_device_id
from edge.source.adapters.dispatch import adapter_subscriptions, translate
from edge.source.adapters.memory import AdapterMemory, RepeatFilter
from edge.source.adapters.models import MODEL_ACTIONS

__all__ = [
    "MODEL_ACTIONS",
    "AdapterMemory",
    "AdaptersSection",
    "DeviceMapping",
    "GatewayNotice",
    "RepeatFilter",
    "adapter_subscriptions",
    "default_device_id",
    "output_problem",
    "translate",
]
