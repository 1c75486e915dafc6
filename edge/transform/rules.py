"""What each device message means: the events the gateway commits for it.

Every message yields exactly one primary event whose id depends on the message alone (PROTOCOL
§2), whatever the rules decided about it: after a crash the rules' memory is gone and a
redelivered press may be judged differently, yet it must still be the same event at the
central. Secondary events (a battery crossing, a button coming back online) take ids of their
own, derived from the same message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.config import RulesSection
from edge.events import Event, event_id, now
from edge.source.messages import ButtonPress, DeviceMessage, DeviceStatus, Scan
from edge.transform.scans import ScanJudge
from mashang.files import atomic_write
from mashang.registry import Registry
from mashang.wire import Kind, Priority

log = logging.getLogger(__name__)

PRIMARY = "message"


def make_event(
    message: DeviceMessage,
    kind: Kind,
    event_type: str,
    priority: Priority,
    extra: dict[str, Any] | None = None,
    *,
    primary: bool = True,
) -> Event:
    """An event traced to its message: the message's fields plus what the gateway adds."""
    # Only a declared `ts` (a datetime, validated): an unknown "ts" field (a heartbeat's, say)
    # is kept in data but never taken for the time. vars() also skips pydantic's slow
    # __getattr__ for the payloads that have no such field.
    payload = message.payload
    occurred = (vars(payload).get("ts") if payload is not None else None) or message.received_at
    return Event(
        id=event_id(message.identity_key(), PRIMARY if primary else event_type),
        kind=kind,
        type=event_type,
        priority=priority,
        device_id=message.device_id,
        occurred_at=occurred,
        received_at=message.received_at,
        data={**message.fields, **(extra or {})},
    )


def gateway_event(event_type: str, data: dict[str, Any], *, device_id: str | None = None,
                  kind: Kind = "log", priority: Priority = "normal") -> Event:
    """An event the gateway raises on its own (supervision, start-up, eviction)."""
    moment = now()
    identity = f"{event_type}\n{device_id}\n{moment.timestamp()}"
    return Event(event_id(identity, event_type), kind, event_type, priority, device_id,
                 moment, moment, data)


@dataclass
class ButtonState:
    """What the rules remember of a button; saved to disk so supervision survives restarts."""

    last_seen: float
    offline: bool = False
    battery_low: bool = False
    alert_id: str | None = None
    last_press: float = 0.0
    presses: int = 0


class Rules:
    """Turns one message into its events. Runs on the commit thread only."""

    def __init__(self, settings: RulesSection, registry: Registry, state_path: Path | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        # Seconds since the epoch; tests pass a clock of their own, so rules need no sleeps.
        self._clock = clock
        self._registry = registry
        self._registered = {button.device_id: button for button in registry.buttons}
        self._judge = ScanJudge(registry)
        self._state_path = state_path
        self._buttons: dict[str, ButtonState] = self._load_state()
        self._watch_registered_buttons()

    # -- registry --------------------------------------------------------------------------

    def replace_registry(self, registry: Registry) -> None:
        self._registry = registry
        self._registered = {button.device_id: button for button in registry.buttons}
        self._judge = ScanJudge(registry)
        self._watch_registered_buttons()

    def _watch_registered_buttons(self) -> None:
        # A registered button we have never heard from is supervised from now on.
        for button in self._registry.buttons:
            self._buttons.setdefault(button.device_id, ButtonState(last_seen=self._clock()))

    # -- messages --------------------------------------------------------------------------

    def evaluate(self, message: DeviceMessage) -> list[Event]:
        if message.rejection is not None:
            return [self._rejected(message)]
        payload = message.payload
        if message.device_kind == "button":
            state = self._seen(message.device_id or "")
            if isinstance(payload, ButtonPress):
                return self._press(message, payload, state)
            if isinstance(payload, DeviceStatus):
                return self._button_status(message, payload, state)
        if isinstance(payload, Scan):
            return [self._scan(message, payload)]
        return [make_event(message, "log", f"{message.device_kind}.status", "low")]

    def _seen(self, device_id: str) -> ButtonState:
        state = self._buttons.setdefault(device_id, ButtonState(last_seen=self._clock()))
        state.last_seen = self._clock()
        return state

    def _press(self, message: DeviceMessage, press: ButtonPress, state: ButtonState) -> list[Event]:
        priority: Priority = "critical" if press.action == "long" else "high"
        moment = self._clock()
        context = self._button_context(message.device_id or "")
        within_guard = (
            state.alert_id is not None and moment - state.last_press <= self._settings.guard_window
        )
        state.last_press = moment
        if within_guard:
            state.presses += 1
        else:
            state.alert_id, state.presses = event_id(message.identity_key(), PRIMARY), 1
        event_type = "button.repeat" if within_guard else "button.press"
        extra = {**context, "alert_id": state.alert_id, "presses": state.presses,
                 "action": press.action}
        events = [make_event(message, "alert", event_type, priority, extra)]
        return events + self._battery_and_return(message, state, press.battery)

    def close_alert(self, device_id: str, alert_id: str) -> None:
        state = self._buttons.get(device_id)
        if state is not None and state.alert_id == alert_id:
            state.alert_id = None

    def _button_status(self, message: DeviceMessage, status: DeviceStatus,
                       state: ButtonState) -> list[Event]:
        # The registry context is built only for the events that carry it (not for heartbeats).
        if status.state == "offline":
            if state.offline:
                return [make_event(message, "log", "button.status", "low")]
            state.offline = True
            context = self._button_context(message.device_id or "")
            return [make_event(message, "alert", "button.offline", "normal",
                               {**context, "reason": "last_will"})]
        if state.offline:
            state.offline = False
            context = self._button_context(message.device_id or "")
            events = [make_event(message, "alert", "button.online", "normal", context)]
        else:
            events = [make_event(message, "log", "button.status", "low")]
        return events + self._battery_and_return(message, state, status.battery)

    def _battery_and_return(self, message: DeviceMessage, state: ButtonState,
                            battery: int | None) -> list[Event]:
        """Secondary events: a button heard from again, a battery crossing its threshold."""
        events = []
        if state.offline:
            state.offline = False
            context = self._button_context(message.device_id or "")
            events.append(make_event(message, "alert", "button.online", "normal", context,
                                     primary=False))
        if battery is None:
            return events
        threshold = self._settings.battery_low_percent
        if battery < threshold and not state.battery_low:
            state.battery_low = True
            context = self._button_context(message.device_id or "")
            events.append(make_event(message, "alert", "button.battery_low", "normal",
                                     {**context, "battery": battery, "threshold": threshold},
                                     primary=False))
        elif battery >= threshold + self._settings.battery_hysteresis:
            # Re-armed only once clearly recharged, so a hovering reading warns once.
            state.battery_low = False
        return events

    def _button_context(self, device_id: str) -> dict[str, Any]:
        """Who is behind a button and who looks after them, from the registry."""
        button = self._registered.get(device_id)
        if button is None:
            duty = self._registry.community.duty_contact
            return {"unregistered": True, "duty_contact": duty.model_dump() if duty else None}
        resident = button.resident
        building = self._registry.building(resident.building)
        primary = self._registry.butler(building.primary_butler) if building else None
        backup = self._registry.butler(building.backup_butler) if building else None
        return {
            "resident": resident.model_dump(),
            "building": {"id": resident.building, "name": building.name if building else None},
            "butlers": {
                "primary": primary.model_dump(include={"id", "name", "phone"}) if primary else None,
                "backup": backup.model_dump(include={"id", "name", "phone"}) if backup else None,
            },
        }

    def _scan(self, message: DeviceMessage, scan: Scan) -> Event:
        scanner = self._registry.scanner(message.device_id or "")
        # A scanner that says what it scans for is believed; otherwise its registered role.
        if "purpose" in message.fields or scanner is None:
            purpose = scan.purpose
        else:
            purpose = scanner.purpose
        verdict = self._judge.judge(message.device_id or "", scan.code, purpose,
                                    message.received_at)
        return make_event(message, verdict.kind, verdict.event_type, verdict.priority,
                          {"purpose": purpose, **verdict.data()})

    def _rejected(self, message: DeviceMessage) -> Event:
        event = make_event(message, "log", "gateway.rejected", "normal")
        data = {"reason": message.rejection, "topic": message.topic, "payload": message.excerpt()}
        return replace(event, occurred_at=message.received_at, data=data)

    # -- time ------------------------------------------------------------------------------

    def tick(self) -> list[Event]:
        """Supervision: a button silent past its interval is offline. Called periodically."""
        events = []
        moment = self._clock()
        for device_id, state in self._buttons.items():
            if state.offline:
                continue
            if moment - state.last_seen > self._supervision_seconds(device_id):
                state.offline = True
                context = self._button_context(device_id)
                silent_since = datetime.fromtimestamp(state.last_seen).astimezone().isoformat()
                events.append(gateway_event(
                    "button.offline", {**context, "reason": "silent", "last_seen": silent_since},
                    device_id=device_id, kind="alert", priority="normal",
                ))
        return events

    def _supervision_seconds(self, device_id: str) -> float:
        button = self._registered.get(device_id)
        hours = button.supervision_hours if button else self._settings.supervision_hours
        return hours * 3600

    def device_snapshot(self) -> dict[str, dict[str, Any]]:
        """A copy of what the rules remember of each button, for the LAN page and metrics.
        Safe from any thread: the dict is copied in one step (under the GIL), then read."""
        return {device: asdict(state) for device, state in self._buttons.copy().items()}

    # -- persistence -----------------------------------------------------------------------

    def save_state(self) -> None:
        if self._state_path is None:
            return
        document = {device: asdict(state) for device, state in self._buttons.items()}
        atomic_write(self._state_path, json.dumps(document))

    def _load_state(self) -> dict[str, ButtonState]:
        if self._state_path is None or not self._state_path.exists():
            return {}
        try:
            document = json.loads(self._state_path.read_text())
            return {device: ButtonState(**fields) for device, fields in document.items()}
        except (ValueError, TypeError) as exc:
            log.warning("device state %s unreadable (%s); starting afresh", self._state_path, exc)
            return {}
