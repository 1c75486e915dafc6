"""MQTT topics of the contract (PROTOCOL §1): where devices publish and where they listen.

The device id is taken from the topic, never from the payload.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "CLIPS",
    "SHELLY_GEN1_BASE",
    "SUBSCRIBED",
    "Channel",
    "Clip",
    "DeviceKind",
    "feedback_topic",
    "speaker_topic",
    "split_topic",
    "subscriptions",
]

DEFAULT_ROOT = "mashang/v1"
# Shelly Gen1's fixed topic base (`shellies/{id}/…`): its buttons' events and its lights'
# and relays' commands (https://shelly-api-docs.shelly.cloud/gen1/#mqtt-support).
SHELLY_GEN1_BASE = "shellies"

# The clips a LAN speaker plays (`{root}/speakers/{id}/play`), by name, and what they say;
# `scripts/make-clips` makes `devices/clips/{name}.wav` from these words.
Clip = Literal["received", "coming"]
CLIPS: dict[str, str] = {"received": "已收到呼叫", "coming": "管家马上就到"}

DeviceKind = Literal["button", "scanner"]
Channel = Literal["events", "status", "scans"]

# (kind as it appears in the topic, channel) pairs the gateway subscribes to.
SUBSCRIBED: dict[tuple[str, str], tuple[DeviceKind, Channel]] = {
    ("buttons", "events"): ("button", "events"),
    ("buttons", "status"): ("button", "status"),
    ("scanners", "scans"): ("scanner", "scans"),
    ("scanners", "status"): ("scanner", "status"),
}


def split_topic(root: str, topic: str) -> tuple[DeviceKind, str, Channel] | None:
    prefix = root.rstrip("/") + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 3 or not parts[1]:
        return None
    known = SUBSCRIBED.get((parts[0], parts[2]))
    if known is None:
        return None
    return known[0], parts[1], known[1]


def subscriptions(root: str) -> list[str]:
    """The topic filters a gateway subscribes to under `root`."""
    root = root.rstrip("/")
    return [f"{root}/{kind}/+/{channel}" for kind, channel in SUBSCRIBED]


def feedback_topic(root: str, device_kind: DeviceKind, device_id: str) -> str:
    """Where the gateway tells a device what became of its message."""
    return f"{root.rstrip('/')}/{device_kind}s/{device_id}/feedback"


def speaker_topic(root: str, speaker_id: str) -> str:
    """Where the gateway tells a LAN speaker which clip to play (PROTOCOL §1)."""
    return f"{root.rstrip('/')}/speakers/{speaker_id}/play"
