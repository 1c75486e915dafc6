"""Feedback to devices (PROTOCOL §1): the button's LED and the scanner's beep, and the
indicators a button names in the registry (`indicators`: lights, sirens, speakers).

Both paths of a button's feedback come through here: "received" from the commit thread right
after the press is committed, "acknowledged" and "resolved" from the central's commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from edge.downlink.indicators import Indicators
from mashang.topics import feedback_topic

Publish = Callable[[str, bytes], None]


class Feedback:
    def __init__(self, publish: Publish, topic_root: str,
                 indicators: Indicators | None = None) -> None:
        self._publish = publish
        self._root = topic_root.rstrip("/")
        self._indicators = indicators

    def button(self, device_id: str, alert_id: str, state: str, by: str | None = None) -> None:
        payload: dict[str, Any] = {"alert_id": alert_id, "state": state}
        if by:
            payload["by"] = by
        self._send(feedback_topic(self._root, "button", device_id), payload)
        if self._indicators is not None:
            self._indicators.show(device_id, alert_id, state)

    def scanner(self, device_id: str, seq: int | None, result: str, reason: str,
                subject: dict[str, Any] | None = None) -> None:
        payload = {"seq": seq, "result": result, "reason": reason, "subject": subject or {}}
        self._send(feedback_topic(self._root, "scanner", device_id), payload)

    def _send(self, topic: str, payload: dict[str, Any]) -> None:
        self._publish(topic, json.dumps(payload, ensure_ascii=False).encode())
