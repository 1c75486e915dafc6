"""Indicators: the lights, plugs, sirens and speakers in a resident's flat that show or say
what became of a press, for buttons that have no LED of their own (docs/indicators.md).

A button names its indicators in the registry (`mashang.registry.Indicator`). Every feedback
state the button gets goes through here too (`Feedback.button`): "received" from the commit
thread right after the press is committed, "acknowledged" and "resolved" from the central's
commands on the downlink. Nothing else makes an indicator change, so it never says more than
the central really reached: while the central is out of reach (the duty room hears of the
press through the local fallback), it says "received" and nothing more.

What each state looks like is the kind's state map (`edge.downlink.indicator_config`); the
command is the device's own, as its project documents it:

- Zigbee2MQTT (`zigbee2mqtt-light`, `-plug`, `-siren`, `-melody-siren`): the map's JSON object
  on `{base}/{name}/set`; a light's or plug's state read back from `{base}/{name}`.
- Shelly Gen1 RGBW (`shelly-gen1-rgbw`): the map's JSON object on
  `shellies/{id}/color/{n}/set`; state from `shellies/{id}/color/{n}/status`.
- Shelly Gen1 relay (`shelly-gen1-relay`): `on` / `off` on `shellies/{id}/relay/{n}/command`;
  state from `shellies/{id}/relay/{n}`.
- Shelly Gen2+ (`shelly-gen2-light`, `-switch`): an RPC request `{"id", "src", "method":
  "Light.Set" | "Switch.Set", "params": {"id": n, …}}` on `{prefix}/rpc`; state from
  `{prefix}/status/light:{n}` or `…/switch:{n}` (the device's "generic status update").
- A LAN speaker (`speaker`): `{"command": "play", "clip": …}` on `{root}/speakers/{id}/play`.

An indicator is taken when the first alert reaches it; its state from before (the last one
its device reported, when the gateway heard one: a newly linked device is asked for it with
its project's own "publish your state" command) is kept, and put back `restore_after`
seconds (a minute) after the last of its alerts was resolved; unknown, the kind's `off` is
sent. With several alerts on one indicator it shows the least advanced of them: never
"coming" for a press nobody acknowledged.

Timers (a blink's steps, the minute after the resolve) run on a scheduler the gateway gives
(`TimerThread`, one thread of its own), and read a clock it gives, so that the tests move time
instead of sleeping. State is kept under one lock: feedback comes from the commit thread and
the loop, device states from paho's network thread, timers from the timer thread.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.downlink.indicator_config import IndicatorsSection, Item
from mashang.registry import INDICATOR_KINDS, Indicator, Registry
from mashang.topics import SHELLY_GEN1_BASE, speaker_topic

__all__ = ["Indicators", "Scheduler", "TimerThread"]

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
Observe = Callable[[str, bytes], None]
# Subscribe to exactly these device state topics, handing each message to observe.
Watch = Callable[[list[str], Observe], None]
Key = tuple[str, str, int]  # kind, device, channel

RANK = {"received": 0, "acknowledged": 1, "resolved": 2}
ENDED_KEPT = 1000
GEN2_METHODS = {"shelly-gen2-light": "Light.Set", "shelly-gen2-switch": "Switch.Set"}


class Timer(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, action: Callable[[], None]) -> Timer: ...


# -- the scheduler ---------------------------------------------------------------------------


@dataclass(order=True)
class Due:
    """One action waiting for its time (the timer thread's, or a test's own scheduler)."""

    when: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class TimerThread:
    """Runs actions at their time on one daemon thread, started with the first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: list[Due] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def call_later(self, delay: float, action: Callable[[], None]) -> Timer:
        due = Due(self._clock() + max(0.0, delay), next(self._seq), action)
        with self._wake:
            heapq.heappush(self._due, due)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="indicators",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()
        return due

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed:
                    if self._due and self._due[0].cancelled:
                        heapq.heappop(self._due)
                        continue
                    wait = self._due[0].when - self._clock() if self._due else None
                    if wait is not None and wait <= 0:
                        break
                    self._wake.wait(wait)
                if self._closed:
                    return
                due = heapq.heappop(self._due)
            try:
                due.action()
            except Exception:
                log.exception("an indicator timer failed")


# -- the devices' own commands and states ----------------------------------------------------


class Devices:
    """How a state map's command becomes a device's native message, and how a device's state
    report becomes the command that puts it back."""

    def __init__(self, *, topic_root: str, zigbee2mqtt_base: str, rpc_src: str) -> None:
        self._root = topic_root
        self._z2m = zigbee2mqtt_base
        self._src = rpc_src
        self._rpc_ids = itertools.count(1)

    def command(self, link: Indicator, item: Item) -> tuple[str, bytes]:
        kind, device, channel = link.kind, link.device, link.channel
        if kind.startswith("zigbee2mqtt-"):
            return f"{self._z2m}/{device}/set", _json(item)
        if kind == "shelly-gen1-rgbw":
            return f"{SHELLY_GEN1_BASE}/{device}/color/{channel}/set", _json(item)
        if kind == "shelly-gen1-relay":
            return f"{SHELLY_GEN1_BASE}/{device}/relay/{channel}/command", str(item).encode()
        if kind in GEN2_METHODS:
            params = {"id": channel, **(item if isinstance(item, dict) else {})}
            request = {"id": next(self._rpc_ids), "src": self._src,
                       "method": GEN2_METHODS[kind], "params": params}
            return f"{device}/rpc", _json(request)
        # a speaker
        return speaker_topic(self._root, device), _json({"command": "play", "clip": item})

    def state_topic(self, link: Indicator) -> str | None:
        kind, device, channel = link.kind, link.device, link.channel
        if kind in ("zigbee2mqtt-light", "zigbee2mqtt-plug"):
            return f"{self._z2m}/{device}"
        if kind == "shelly-gen1-rgbw":
            return f"{SHELLY_GEN1_BASE}/{device}/color/{channel}/status"
        if kind == "shelly-gen1-relay":
            return f"{SHELLY_GEN1_BASE}/{device}/relay/{channel}"
        if kind == "shelly-gen2-light":
            return f"{device}/status/light:{channel}"
        if kind == "shelly-gen2-switch":
            return f"{device}/status/switch:{channel}"
        return None  # sirens and speakers: a chime ends by itself

    def ask_state(self, link: Indicator) -> tuple[str, bytes] | None:
        """The message that makes a device publish its state now (on the topic
        `state_topic` watches), for one newly linked: Zigbee2MQTT's `get`, Shelly's
        `update` (Gen1) or `status_update` (Gen2)."""
        kind, device = link.kind, link.device
        if kind in ("zigbee2mqtt-light", "zigbee2mqtt-plug"):
            return f"{self._z2m}/{device}/get", _json({"state": ""})
        if kind.startswith("shelly-gen1-"):
            return f"{SHELLY_GEN1_BASE}/{device}/command", b"update"
        if kind in GEN2_METHODS:
            return f"{device}/command", b"status_update"
        return None

    @staticmethod
    def remembered(kind: str, payload: bytes) -> Any | None:
        """What a state report says, kept to put the device back; None: not a state."""
        if kind == "shelly-gen1-relay":
            text = payload.decode("utf-8", errors="replace").strip()
            return text if text in ("on", "off") else None
        try:
            state = json.loads(payload)
        except (ValueError, RecursionError):
            return None
        if not isinstance(state, dict):
            return None
        if kind.startswith("zigbee2mqtt-"):
            ok = state.get("state") in ("ON", "OFF")
        elif kind == "shelly-gen1-rgbw":
            ok = isinstance(state.get("ison"), bool)
        else:
            ok = isinstance(state.get("output"), bool)
        return state if ok else None

    @staticmethod
    def restoring(kind: str, before: Any) -> Item | None:
        """The command that puts a device back into the state it reported."""
        if kind == "shelly-gen1-relay":
            return str(before)
        if kind == "zigbee2mqtt-plug":
            return {"state": before["state"]}
        if kind == "zigbee2mqtt-light":
            return _zigbee2mqtt_light(before)
        if kind == "shelly-gen1-rgbw":
            if not before["ison"]:
                return {"turn": "off"}
            keys = ("mode", "red", "green", "blue", "white", "gain")
            return {**{k: before[k] for k in keys if k in before}, "turn": "on"}
        if kind == "shelly-gen2-light":
            restored: dict[str, Any] = {"on": before["output"]}
            if before["output"] and isinstance(before.get("brightness"), int | float):
                restored["brightness"] = before["brightness"]
            return restored
        if kind == "shelly-gen2-switch":
            return {"on": before["output"]}
        return None


def _zigbee2mqtt_light(before: dict[str, Any]) -> dict[str, Any]:
    """A Zigbee2MQTT light's `set` for the state it published: on or off, its brightness and
    its colour in the colour mode it was in (`color_mode`: xy, hs or color_temp)."""
    if before["state"] != "ON":
        return {"state": "OFF"}
    restored: dict[str, Any] = {"state": "ON"}
    if isinstance(before.get("brightness"), int | float):
        restored["brightness"] = before["brightness"]
    mode, color = before.get("color_mode"), before.get("color")
    if mode == "color_temp" or (mode is None and "color_temp" in before and not color):
        if isinstance(before.get("color_temp"), int | float):
            restored["color_temp"] = before["color_temp"]
    elif isinstance(color, dict):
        if mode in (None, "xy") and {"x", "y"} <= color.keys():
            restored["color"] = {"x": color["x"], "y": color["y"]}
        elif {"hue", "saturation"} <= color.keys():
            restored["color"] = {"hue": color["hue"], "saturation": color["saturation"]}
    return restored


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def key_of(link: Indicator) -> Key:
    return link.kind, link.device, link.channel


# -- what each indicator shows ---------------------------------------------------------------


@dataclass
class _Held:
    """An indicator some alert has taken."""

    link: Indicator
    before: Any | None  # its state before the alert (None: unknown)
    alerts: dict[str, str] = field(default_factory=dict)  # alert id -> the state it reached
    shown: str | None = None
    steady: Item | None = None  # what a blink under way comes to rest on
    generation: int = 0  # a timer of an older show (or of a put-back indicator) does nothing
    timers: list[Timer] = field(default_factory=list)
    restore: Timer | None = None
    release: Timer | None = None

    def cancel(self, *, all_timers: bool = False) -> None:
        self.generation += 1
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        if all_timers:
            for lasting in (self.restore, self.release):
                if lasting is not None:
                    lasting.cancel()


class Indicators:
    def __init__(
        self,
        config: IndicatorsSection,
        registry: Registry,
        *,
        publish: Publish,
        watch: Watch,
        topic_root: str,
        zigbee2mqtt_base: str,
        gateway_id: str,
        clock: Callable[[], float] = time.monotonic,
        scheduler: Scheduler | None = None,
    ) -> None:
        self._config = config
        self._publish = publish
        self._watch = watch
        self._clock = clock
        self._scheduler: Scheduler = scheduler or TimerThread(clock)
        self._devices = Devices(topic_root=topic_root, zigbee2mqtt_base=zigbee2mqtt_base,
                                rpc_src=config.rpc_src or f"mashang-{gateway_id}")
        self._maps = {kind: config.kind_map(kind) for kind in INDICATOR_KINDS}
        self._lock = threading.RLock()
        self._links: dict[str, list[Indicator]] = {}
        self._state_topics: dict[str, Key] = {}
        self._last: dict[Key, Any] = {}  # the latest state each device reported
        self._held: dict[Key, _Held] = {}
        # Alerts resolved lately, so that a late or repeated command never shows them again.
        self._ended: dict[str, None] = {}
        self.commands_sent = 0
        self.use_registry(registry)

    # -- inputs ----------------------------------------------------------------------------

    def use_registry(self, registry: Registry) -> None:
        """The registry's links between buttons and indicators (again at every replace).
        Indicators held by an alert stay held until it ends, even if no longer linked."""
        links: dict[str, list[Indicator]] = {}
        if self._config.enabled:
            links = {b.device_id: list(b.indicators) for b in registry.buttons if b.indicators}
        topics: dict[str, Key] = {}
        for device_links in links.values():
            for link in device_links:
                topic = self._devices.state_topic(link)
                if topic is not None:
                    topics[topic] = key_of(link)
        with self._lock:
            known = set(self._state_topics.values())
            self._links = links
            self._state_topics = topics
            watched = set(topics.values())
            self._last = {key: state for key, state in self._last.items() if key in watched}
        self._watch(sorted(topics), self.observe)
        # Devices newly linked are asked for their state (a light's state is not retained
        # unless Zigbee2MQTT is told to), so that it can be put back after an alert.
        asked = {key: link for device_links in links.values() for link in device_links
                 if (key := key_of(link)) in watched - known}
        asks = dict.fromkeys(filter(None, map(self._devices.ask_state, asked.values())))
        for topic, payload in asks:
            try:
                self._publish(topic, payload)
            except Exception:
                log.exception("could not ask for a state on %s", topic)
        if links:
            log.info("indicators: %d linked to %d buttons; watching %d state topics",
                     sum(map(len, links.values())), len(links), len(topics))

    def observe(self, topic: str, payload: bytes) -> None:
        """A state report on a watched topic (paho's network thread): kept to put back."""
        key = self._state_topics.get(topic)
        if key is None:
            return
        try:
            state = self._devices.remembered(key[0], payload)
        except Exception:  # never let a device's report reach paho's thread as an error
            log.exception("unreadable state of indicator %s", key[1])
            return
        if state is not None:
            with self._lock:
                self._last[key] = state

    def show(self, device_id: str, alert_id: str, state: str) -> None:
        """A button's feedback state, as it was published to the button. Never raises: an
        indicator's trouble must not touch the press it shows."""
        if state not in RANK:
            return
        try:
            with self._lock:
                if state == "resolved":
                    self._ended[alert_id] = None
                    while len(self._ended) > ENDED_KEPT:
                        del self._ended[next(iter(self._ended))]
                elif alert_id in self._ended:
                    if state != "received":
                        return  # the central's word on an alert it resolved already
                    del self._ended[alert_id]  # pressed again: open again
                targets = {key_of(link): link for link in self._links.get(device_id, [])}
                for key, held in self._held.items():
                    if alert_id in held.alerts:
                        targets.setdefault(key, held.link)
                for key, link in targets.items():
                    self._update(key, link, alert_id, state)
        except Exception:
            log.exception("indicators of %s could not show %s", device_id, state)

    # -- what is shown ---------------------------------------------------------------------

    def _update(self, key: Key, link: Indicator, alert_id: str, state: str) -> None:
        held = self._held.get(key)
        if held is None:
            if state == "resolved":
                return  # an alert this indicator never showed
            held = self._held[key] = _Held(link, self._last.get(key))
            held.release = self._later(self._config.release_after, held, self._put_back,
                                       key, held, lasting=True)
            log.debug("indicator %s %s taken by alert %s", link.kind, link.device, alert_id)
        reached = held.alerts.get(alert_id)
        if reached is None:
            now = state
        elif state == "received":  # a press: a resolved alert is open again, else unchanged
            now = "received" if reached == "resolved" else reached
        else:
            now = max(reached, state, key=RANK.__getitem__)
        held.alerts[alert_id] = now
        still_open = [s for s in held.alerts.values() if s != "resolved"]
        shown = min(still_open, key=RANK.__getitem__) if still_open else "resolved"
        if shown != held.shown or state == "received":  # a press hears its state again
            held.shown = shown
            self._play(key, held, shown)
        if shown == "resolved":
            if held.restore is None:
                restore_after = self._maps[link.kind].restore_after or 60.0
                held.restore = self._later(restore_after, held, self._put_back, key, held,
                                           lasting=True)
        elif held.restore is not None:
            held.restore.cancel()
            held.restore = None

    def _play(self, key: Key, held: _Held, state: str) -> None:
        held.cancel()
        show = self._maps[held.link.kind].show(state)
        items = show.send
        if not items and held.steady is not None:  # a blink stops on its steady step
            self._send(held.link, held.steady)
        held.steady = None
        for step, item in enumerate(items):
            if step == 0:
                self._send(held.link, item)
            else:
                held.timers.append(self._later(step * show.gap, held, self._send,
                                               held.link, item))
        if show.blink is not None and items:
            settle = (len(items) - 1) * show.gap
            until = self._clock() + settle + show.blink_for
            held.steady = items[-1]
            held.timers.append(self._later(settle + show.blink_every, held, self._blink,
                                           held, items[-1], show.blink, show.blink_every,
                                           until, True))

    def _blink(self, held: _Held, on: Item, off: Item, every: float, until: float,
               dark: bool) -> None:
        """One step of a blink: `off` when `dark`, else `on`; the last leaves it `on`."""
        if self._clock() >= until:
            held.steady = None
            if not dark:  # the last step was `off`: leave it on
                self._send(held.link, on)
            return
        self._send(held.link, off if dark else on)
        held.timers.append(self._later(every, held, self._blink, held, on, off, every,
                                       until, not dark))

    def _put_back(self, key: Key, held: _Held) -> None:
        """Resolved a minute ago, or held too long: the indicator as it was before."""
        if self._held.get(key) is not held:
            return
        held.cancel(all_timers=True)
        del self._held[key]
        kind = held.link.kind
        item = (self._devices.restoring(kind, held.before) if held.before is not None
                else self._maps[kind].off)
        if held.before is not None:
            self._last[key] = held.before
        else:
            self._last.pop(key, None)
        if item is not None:
            self._send(held.link, item)
        log.debug("indicator %s %s put back", kind, held.link.device)

    def _later(self, delay: float, held: _Held, action: Callable[..., None], *args: Any,
               lasting: bool = False) -> Timer:
        """`action(*args)` after `delay` under the lock, unless the indicator moved on to
        another show since (`lasting`: the restore and the release outlive a show)."""
        generation = held.generation

        def run() -> None:
            with self._lock:
                if not lasting and held.generation != generation:
                    return
                action(*args)

        return self._scheduler.call_later(delay, run)

    def _send(self, link: Indicator, item: Item) -> None:
        topic, payload = self._devices.command(link, item)
        try:
            self._publish(topic, payload)
        except Exception:
            log.exception("could not send %s to indicator %s", payload[:200], link.device)
            return
        self.commands_sent += 1

