"""`[indicators]`: what each kind of indicator does for each feedback state (the state maps).

The defaults below are the documented ones (docs/indicators.md); `[indicators.kinds.<kind>]`
changes any of them, key by key:

    [indicators.kinds.zigbee2mqtt-light.acknowledged]
    send = [{state = "ON", color = {hex = "#00C000"}, brightness = 254}]

Each state's `Show`: the commands in `send` go out in turn, `gap` seconds apart (two chimes are
two commands); with `blink`, the last of them and `blink` then alternate every `blink_every`
seconds for `blink_for` seconds, and the last of `send` stays. An empty `send` leaves the
indicator as it is (a blink stops on its steady step). A command is what the kind's
native command carries (see `edge/downlink/indicators.py`): a JSON object for Zigbee2MQTT's
`set` and Shelly's Gen1 `color/set`, the `params` of Shelly's Gen2 `Light.Set`/`Switch.Set`
(the gateway adds the output `id`), `on`/`off`/`toggle` for a Shelly Gen1 relay, a clip's
name for a speaker.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from mashang.config import Seconds, Section
from mashang.registry import INDICATOR_KINDS

__all__ = ["DEFAULT_KINDS", "IndicatorKindMap", "IndicatorShow", "IndicatorsSection", "Item"]

# One command of a state map: a JSON object, or a word for the kinds that take one.
Item = dict[str, Any] | str

# Kinds whose commands are words, and which words.
WORD_KINDS: dict[str, re.Pattern[str]] = {
    "shelly-gen1-relay": re.compile(r"^(on|off|toggle)$"),
    "speaker": re.compile(r"^[a-z0-9_-]{1,64}$"),
}
STATES = ("received", "acknowledged", "resolved")


class IndicatorShow(Section):
    """What an indicator does for one feedback state."""

    send: list[Item] = Field(default_factory=list)
    gap: Seconds = 1.5
    blink: Item | None = None
    blink_every: Seconds = 1.0
    blink_for: Seconds = 300.0


class IndicatorKindMap(Section):
    """One kind's state map. Unset keys keep the kind's defaults."""

    received: IndicatorShow | None = None
    acknowledged: IndicatorShow | None = None
    resolved: IndicatorShow | None = None
    # What puts the indicator back when its state from before the alert is unknown (a light
    # the gateway has not heard from): unset for a kind that needs nothing (a chime ends).
    off: Item | None = None
    # Seconds after `resolved` before the indicator is put back as it was.
    restore_after: Seconds | None = None

    def show(self, state: str) -> IndicatorShow:
        found: IndicatorShow | None = getattr(self, state)
        return found if found is not None else IndicatorShow()


# -- the defaults (docs/indicators.md says why) ----------------------------------------------

_Z2M_AMBER = {"state": "ON", "color": {"hex": "#FFA500"}, "brightness": 200}
_Z2M_GREEN = {"state": "ON", "color": {"hex": "#00FF00"}, "brightness": 200}
_SHELLY_AMBER = {"mode": "color", "red": 255, "green": 165, "blue": 0, "white": 0, "gain": 80,
                 "turn": "on"}
_SHELLY_GREEN = {"mode": "color", "red": 0, "green": 255, "blue": 0, "white": 0, "gain": 80,
                 "turn": "on"}
_IAS_CHIME = {"warning": {"mode": "emergency", "level": "low", "strobe": False, "duration": 1}}
_MELODY_CHIME = {"melody": 5, "volume": "low", "duration": 2, "alarm": True}


def _light(on: Item, coming: Item, off: Item) -> IndicatorKindMap:
    """A light: a slow blink (1 s on, 1 s off) for five minutes, then steady; steady when a
    butler is coming. Resolved: as it is (a blink stops, steady), put back a minute later."""
    return IndicatorKindMap(
        received=IndicatorShow(send=[on], blink=off, blink_every=1.0, blink_for=300.0),
        acknowledged=IndicatorShow(send=[coming]),
        resolved=IndicatorShow(),
        off=off,
        restore_after=60.0,
    )


def _relay(on: Item, off: Item) -> IndicatorKindMap:
    """A relay (a lamp on a plug): a slower, shorter blink, for the relay's sake (60 toggles
    at most), then on; on when a butler is coming; put back a minute after the resolve."""
    return IndicatorKindMap(
        received=IndicatorShow(send=[on], blink=off, blink_every=2.0, blink_for=120.0),
        acknowledged=IndicatorShow(send=[on]),
        resolved=IndicatorShow(),
        off=off,
        restore_after=60.0,
    )


def _chime(chime: Item, gap: float) -> IndicatorKindMap:
    """A siren used as a chime: one quiet chime for "received", two for "coming"."""
    return IndicatorKindMap(
        received=IndicatorShow(send=[chime]),
        acknowledged=IndicatorShow(send=[chime, chime], gap=gap),
        resolved=IndicatorShow(),
        restore_after=60.0,
    )


DEFAULT_KINDS: dict[str, IndicatorKindMap] = {
    "zigbee2mqtt-light": _light(_Z2M_AMBER, _Z2M_GREEN, {"state": "OFF"}),
    "zigbee2mqtt-plug": _relay({"state": "ON"}, {"state": "OFF"}),
    "zigbee2mqtt-siren": _chime(_IAS_CHIME, 2.0),
    "zigbee2mqtt-melody-siren": _chime(_MELODY_CHIME, 3.0),
    "shelly-gen1-rgbw": _light(_SHELLY_AMBER, _SHELLY_GREEN, {"turn": "off"}),
    "shelly-gen1-relay": _relay("on", "off"),
    "shelly-gen2-light": _light({"on": True, "brightness": 100}, {"on": True, "brightness": 100},
                                {"on": False}),
    "shelly-gen2-switch": _relay({"on": True}, {"on": False}),
    "speaker": IndicatorKindMap(
        received=IndicatorShow(send=["received"]),
        acknowledged=IndicatorShow(send=["coming"]),
        resolved=IndicatorShow(),
        restore_after=60.0,
    ),
}


def merged(default: IndicatorKindMap, override: IndicatorKindMap | None) -> IndicatorKindMap:
    """`default` with what `override` sets, key by key (a state's keys one by one)."""
    if override is None:
        return default
    update: dict[str, Any] = {}
    for key in override.model_fields_set:
        value = getattr(override, key)
        base = getattr(default, key)
        if isinstance(value, IndicatorShow) and isinstance(base, IndicatorShow):
            value = base.model_copy(update={k: getattr(value, k) for k in value.model_fields_set})
        update[key] = value
    return default.model_copy(update=update)


class IndicatorsSection(Section):
    """`[indicators]` in the gateway's configuration."""

    enabled: bool = True
    # An indicator still held by an alert this long after it took it (no resolve came) is put
    # back anyway; it said nothing but the truth meanwhile.
    release_after: Seconds = 6 * 3600.0
    # The `src` of Shelly Gen2 RPC requests (their replies go to `{src}/rpc`); unset:
    # `mashang-{gateway.id}`.
    rpc_src: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    kinds: dict[str, IndicatorKindMap] = Field(default_factory=dict)

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: dict[str, IndicatorKindMap]) -> dict[str, IndicatorKindMap]:
        unknown = sorted(set(kinds) - set(INDICATOR_KINDS))
        if unknown:
            raise ValueError(f"unknown kind {unknown[0]!r} (known: {', '.join(INDICATOR_KINDS)})")
        return kinds

    @model_validator(mode="after")
    def _commands_fit_their_kind(self) -> IndicatorsSection:
        for kind in DEFAULT_KINDS:
            state_map = self.kind_map(kind)
            items: list[tuple[str, Item]] = []
            for state in STATES:
                show = state_map.show(state)
                items += [(f"{state}.send", item) for item in show.send]
                if show.blink is not None:
                    items.append((f"{state}.blink", show.blink))
            if state_map.off is not None:
                items.append(("off", state_map.off))
            words = WORD_KINDS.get(kind)
            for where, item in items:
                if words is not None and not (isinstance(item, str) and words.match(item)):
                    raise ValueError(f"kinds.{kind}.{where}: {item!r} is not a command of this "
                                     f"kind (expected a word matching {words.pattern})")
                if words is None and not isinstance(item, dict):
                    raise ValueError(f"kinds.{kind}.{where}: {item!r} is not a command of this "
                                     "kind (expected a table, a JSON object)")
        return self

    def kind_map(self, kind: str) -> IndicatorKindMap:
        """The kind's state map: its defaults with this section's changes."""
        return merged(DEFAULT_KINDS[kind], self.kinds.get(kind))
