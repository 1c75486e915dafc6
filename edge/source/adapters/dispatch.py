"""The dispatcher: which adapter a native topic belongs to, and what to subscribe to.

Never raises on device input: invalid payloads become rejected `DeviceMessage`s that name the
native topic and carry the native bytes.
"""

from __future__ import annotations

from datetime import datetime

from edge.source.adapters import shelly, zigbee2mqtt
from edge.source.adapters.common import AdapterName, Context
from edge.source.adapters.config import AdaptersSection
from edge.source.adapters.memory import AdapterMemory
from edge.source.messages import DeviceMessage

__all__ = ["DEFAULT_TOPIC_ROOT", "adapter_subscriptions", "translate"]

DEFAULT_TOPIC_ROOT = "mashang/v1"


def adapter_subscriptions(config: AdaptersSection) -> list[str]:
    """The native topic filters to subscribe to (QoS 1), none covering another."""
    if not config.enabled:
        return []
    filters = (
        zigbee2mqtt.subscriptions(config)
        + shelly.gen1_subscriptions(config)
        + shelly.gen2_subscriptions(config)
    )
    unique = list(dict.fromkeys(filters))
    # Overlapping filters can make a broker deliver one message twice: keep the widest.
    return [f for f in unique if not any(g != f and _covers(g, f) for g in unique)]


def _covers(wide: str, narrow: str) -> bool:
    wide_levels, narrow_levels = wide.split("/"), narrow.split("/")
    return len(wide_levels) == len(narrow_levels) and all(
        w == "+" or w == n for w, n in zip(wide_levels, narrow_levels, strict=True)
    )


def translate(
    topic: str,
    raw: bytes,
    received_at: datetime,
    config: AdaptersSection,
    *,
    topic_root: str = DEFAULT_TOPIC_ROOT,
    retained: bool = False,
    repeats: AdapterMemory | None = None,
) -> list[DeviceMessage] | None:
    """The canonical messages for one native MQTT message.

    None: not an adapter topic (parse it as a Mashang topic). An empty list: an adapter topic
    with nothing to record (a button released, a relay's status, a repeated Gen1 event, the
    bridge's device list), to be acked at once. `retained` is the MQTT retain flag: a
    retained press without a native identity is old state, not a press. `repeats` is the
    adapters' memory, one per MQTT client (`AdapterMemory`, also known as `RepeatFilter`):
    Shelly Gen1's re-published events, and Zigbee2MQTT's device list (button models) and
    problems already reported. Without it each message is judged on its own.

    Besides device messages, a Zigbee2MQTT bridge topic may yield a `gateway.misconfigured`
    notice: a `DeviceMessage` with no device kind, id or channel whose payload is a
    `GatewayNotice` (see there).
    """
    if not config.enabled:
        return None

    def context(adapter: AdapterName) -> Context:
        return Context(adapter, topic, raw, received_at, config, topic_root, retained)

    base = config.zigbee2mqtt_base
    if config.zigbee2mqtt and topic.startswith(base + "/"):
        bridge = repeats.zigbee2mqtt if repeats is not None else None
        return zigbee2mqtt.translate_zigbee2mqtt(
            context("zigbee2mqtt"), topic[len(base) + 1 :], bridge
        )
    if config.shelly_gen1 and topic.startswith(shelly.GEN1_BASE + "/"):
        found = shelly.translate_gen1(context("shelly-gen1"), topic.split("/")[1:], repeats)
        if found is not None:
            return found
    # Gen2 prefixes are free-form: only the topic's end says it is one.
    if config.shelly_gen2:
        if topic.endswith("/events/rpc") and len(topic) > len("/events/rpc"):
            return shelly.translate_gen2_rpc(context("shelly-gen2"), topic[: -len("/events/rpc")])
        if topic.endswith("/online") and len(topic) > len("/online"):
            return shelly.translate_online(context("shelly-gen2"), topic[: -len("/online")])
    return None
