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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.config import RulesSection
from edge.events import Event, event_id, now
from edge.source.adapters import GatewayNotice
from edge.source.messages import (
    REJECTED_EXCERPT_BYTES,
    ButtonPress,
    DeviceMessage,
    DeviceStatus,
    Scan,
)
from mashang.files import atomic_write
from mashang.registry import Registry
from mashang.wire import Kind, Priority

if TYPE_CHECKING:
    from edge.transform.scans import ScanJudge

log = logging.getLogger(__name__)

PRIMARY = "message"
# Device ids a summary of silent unregistered devices names at most.
SILENT_LISTED = 20


def make_event(
    message: DeviceMessage,
    kind: Kind,
    event_type: str,
    priority: Priority,
    extra: dict[str, Any] | None = None,
    *,
    primary: bool = True,
) -> Event:
    """An event traced to its message: the message's fields plus what the gateway adds.

    Only a declared, usable `ts` is taken for the time (`DeviceMessage.occurred_at`): an
    unknown "ts" field (a heartbeat's, say) is kept in data but never believed."""
    return Event(
        id=event_id(message.identity_key(), PRIMARY if primary else event_type),
        kind=kind,
        type=event_type,
        priority=priority,
        device_id=message.device_id,
        occurred_at=message.occurred_at or message.received_at,
        received_at=message.received_at,
        data=event_data(message, extra or {}),
    )


# The keys of `data` that the gateway derives itself (PROTOCOL §6): a device's own key of the
# same name is kept under data.device, never where the gateway's would stand, even when the
# gateway has nothing to put there this time (an unregistered button has no resident).
DERIVED = frozenset({
    "resident", "building", "butlers", "stall", "zone", "subject", "registered", "unregistered",
    "alert_id", "presses", "reason", "result", "duty_contact", "threshold", "last_seen",
    "invalid", "device", "error",
})


def event_data(message: DeviceMessage, extra: dict[str, Any]) -> dict[str, Any]:
    """The device's fields as received, what the gateway adds, and what could not be used.

    A device field that the gateway also sets (its `action` when that was unusable, say) is
    kept unchanged under `device`, so nothing the device said is lost or taken as the
    gateway's word."""
    data: dict[str, Any] = {}
    device: dict[str, Any] = {}
    for key, value in message.fields.items():
        if key in DERIVED or (key in extra and extra[key] != value):
            device[key] = value
        else:
            data[key] = value
    data.update(extra)
    if message.invalid:
        data["invalid"] = dict(message.invalid)
    if device:
        data["device"] = device
    return data


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
    # An unregistered device's silence was told in a summary (never one alert each).
    reported_silent: bool = False
    # The last press counter a registered button sent (its `seq`, or a Shelly's `event_cnt`).
    last_count: int | None = None


class Rules:
    """Turns one message into its events. Runs on the commit thread only."""

    def __init__(self, settings: RulesSection, registry: Registry, state_path: Path | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        # Seconds since the epoch; tests pass a clock of their own, so rules need no sleeps.
        self._clock = clock
        self._registry = registry
        self._registered = {button.device_id: button for button in registry.buttons}
        self._judge: ScanJudge | None = None  # see _scan_judge
        self._state_path = state_path
        self._buttons: dict[str, ButtonState] = self._load_state()
        # Unregistered devices, least recently heard first: at most max_unregistered are kept,
        # so that made-up ids cannot grow the state without bound.
        self._unregistered: OrderedDict[str, None] = OrderedDict(
            (device, None) for device, state in sorted(self._buttons.items(),
                                                       key=lambda item: item[1].last_seen)
            if device not in self._registered
        )
        # A press counter moved since devices.json was written: write it before the commit,
        # so that a restart cannot take a counter it already saw for a gap.
        self.counters_moved = False
        self._watch_registered_buttons()

    # -- registry --------------------------------------------------------------------------

    def replace_registry(self, registry: Registry) -> None:
        self._registry = registry
        self._registered = {button.device_id: button for button in registry.buttons}
        self._judge = None
        self._watch_registered_buttons()

    def _watch_registered_buttons(self) -> None:
        # A registered button we have never heard from is supervised from now on.
        for button in self._registry.buttons:
            self._buttons.setdefault(button.device_id, ButtonState(last_seen=self._clock()))
            self._unregistered.pop(button.device_id, None)

    # -- messages --------------------------------------------------------------------------

    def evaluate(self, message: DeviceMessage) -> list[Event]:
        if message.rejection is not None:
            return [self._rejected(message)]
        payload = message.payload
        if isinstance(payload, GatewayNotice):
            # An adapter found presses that would be lost: its fields are the gateway's own
            # words (no device sent them), so they stand as the event's data.
            notice = make_event(message, "alert", payload.event, "high")
            return [replace(notice, data=dict(message.fields))]
        if message.device_kind == "button":
            state = self._seen(message.device_id or "")
            if isinstance(payload, ButtonPress):
                return self._press(message, payload, state)
            if isinstance(payload, DeviceStatus):
                return self._button_status(message, payload, state)
        if isinstance(payload, Scan):
            return self._scan(message, payload)
        return [make_event(message, "log", f"{message.device_kind}.status", "low")]

    def _seen(self, device_id: str) -> ButtonState:
        state = self._buttons.setdefault(device_id, ButtonState(last_seen=self._clock()))
        state.last_seen = self._clock()
        state.reported_silent = False
        if device_id not in self._registered:
            self._unregistered[device_id] = None
            self._unregistered.move_to_end(device_id)
            while len(self._unregistered) > self._settings.max_unregistered:
                forgotten, _ = self._unregistered.popitem(last=False)
                del self._buttons[forgotten]
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
        events += self._gap(message, press, state, context)
        return events + self._battery_and_return(message, state, press.battery)

    def _gap(self, message: DeviceMessage, press: ButtonPress, state: ButtonState,
             context: dict[str, Any]) -> list[Event]:
        """A registered button's press counter that jumped: presses between may be lost."""
        count = press.seq
        if count is None:
            native = message.fields.get("event_cnt")  # Shelly Gen1's counter
            count = native if type(native) is int and native >= 0 else None
        if count is None or message.device_id not in self._registered:
            return []
        previous, state.last_count = state.last_count, count
        self.counters_moved = self.counters_moved or previous != count
        # A counter that went back (the device restarted) or stands still (a redelivery) is
        # no gap.
        if previous is None or count <= previous + 1:
            return []
        missed = count - previous - 1
        extra = {**context, "reason": "counter_gap", "expected": previous + 1, "counted": count,
                 "missed": missed}
        return [make_event(message, "alert", "button.gap", "high", extra, primary=False)]

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
            return [self._fault(message, "button.offline", {**context, "reason": "last_will"})]
        if state.offline:
            state.offline = False
            context = self._button_context(message.device_id or "")
            events = [self._fault(message, "button.online", context)]
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
            events.append(self._fault(message, "button.online", context, primary=False))
        if battery is None:
            return events
        threshold = self._settings.battery_low_percent
        if battery < threshold and not state.battery_low:
            state.battery_low = True
            context = self._button_context(message.device_id or "")
            events.append(self._fault(message, "button.battery_low",
                                      {**context, "battery": battery, "threshold": threshold},
                                      primary=False))
        elif battery >= threshold + self._settings.battery_hysteresis:
            # Re-armed only once clearly recharged, so a hovering reading warns once.
            state.battery_low = False
        return events

    def _fault(self, message: DeviceMessage, event_type: str, extra: dict[str, Any], *,
               primary: bool = True) -> Event:
        """A device fault (offline, online again, battery low): an alert for a registered
        button's resident, a log for a device nobody registered."""
        if message.device_id in self._registered:
            return make_event(message, "alert", event_type, "normal", extra, primary=primary)
        return make_event(message, "log", event_type, "low", extra, primary=primary)

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

    def _scan_judge(self) -> ScanJudge:
        """Made at the first scan after each registry: the code verifier, and the cryptography
        it loads (6 MB resident), are for gateways that have scanners."""
        if self._judge is None:
            from edge.transform.scans import ScanJudge

            self._judge = ScanJudge(self._registry)
        return self._judge

    def _scan(self, message: DeviceMessage, scan: Scan) -> list[Event]:
        """The scan's own event (what the scanner hears), and a violation's alert beside it."""
        scanner = self._registry.scanner(message.device_id or "")
        # A scanner that says what it scans for is believed; otherwise its registered role.
        if "purpose" in message.fields or scanner is None:
            purpose = scan.purpose
        else:
            purpose = scanner.purpose
        verdict = self._scan_judge().judge(message.device_id or "", scan.code, purpose,
                                           message.received_at)
        events = [make_event(message, verdict.kind, verdict.event_type, verdict.priority,
                             {"purpose": purpose, **verdict.data()})]
        if verdict.violation is not None:
            data = {"purpose": purpose, "result": verdict.result, **verdict.violation}
            events.append(make_event(message, "alert", "stall.violation", "high", data,
                                     primary=False))
        return events

    def _rejected(self, message: DeviceMessage) -> Event:
        event = make_event(message, "log", "gateway.rejected", "normal")
        data = {"reason": message.rejection, "topic": message.topic[:REJECTED_EXCERPT_BYTES],
                "payload": message.excerpt()}
        return replace(event, occurred_at=message.received_at, data=data)

    # -- time ------------------------------------------------------------------------------

    def tick(self) -> list[Event]:
        """Supervision, called periodically: a registered button silent past its interval is
        offline (one alert); unregistered devices gone silent make one summary between them,
        and are forgotten once silent for `forget_after`."""
        events = []
        moment = self._clock()
        for device_id, state in self._buttons.items():
            if state.offline or moment - state.last_seen <= self._supervision_seconds(device_id):
                continue
            state.offline = True
            if device_id in self._registered:
                context = self._button_context(device_id)
                silent_since = datetime.fromtimestamp(state.last_seen).astimezone().isoformat()
                events.append(gateway_event(
                    "button.offline", {**context, "reason": "silent", "last_seen": silent_since},
                    device_id=device_id, kind="alert", priority="normal",
                ))
        silent = [device for device in self._unregistered if self._buttons[device].offline
                  and not self._buttons[device].reported_silent]
        if silent:
            for device in silent:
                self._buttons[device].reported_silent = True
            events.append(gateway_event(
                "gateway.unregistered_silent",
                {"count": len(silent), "devices": silent[:SILENT_LISTED],
                 "silent_for_hours": self._settings.supervision_hours},
                priority="low",
            ))
        self._forget(moment)
        return events

    def _forget(self, moment: float) -> None:
        while self._unregistered:
            oldest = next(iter(self._unregistered))
            if moment - self._buttons[oldest].last_seen <= self._settings.forget_after:
                break
            del self._unregistered[oldest], self._buttons[oldest]

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
        self.counters_moved = False
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
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("device state %s unreadable (%s); starting afresh", self._state_path, exc)
            return {}
