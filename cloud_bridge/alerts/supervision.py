"""Gateway supervision: a gateway the central has not heard for `central.silent_after` seconds
raises a critical `gateway.silent` alert, and it closes (by "system", with a note) when the
gateway is heard again.

Every button behind a dead gateway is mute, and that is the one failure a butler can never see
for themselves, so the central watches the requests: a running gateway renews its command
long-poll every `central.poll_wait` seconds (25) and sends at once when anything happens.

When a gateway counts as silent:
- it has not been heard since the silence its latest `gateway.silent` alert was raised for
  began (a restart of the central neither forgives nor forgets it; a person who resolved that
  alert while the gateway was still silent is not paged again for the same silence);
- or more than `silent_after` seconds have passed since the later of its last request and the
  central's start. A gateway never heard at all is silent `silent_after` after the start;
  and after the central itself was down, every gateway gets `silent_after` to find it again
  (they try every second) instead of all raising at once.

The buttons behind a gateway are the registered buttons whose latest event came through it
(`receiver/gateways.py`); when the central knows one gateway only, every registered button is
behind it, heard or not (the registry goes whole to every gateway and says nothing of which
serves which). The alert names their buildings and counts them, and is paged like a press:
the duty contact, then the buildings' butlers (`routing.gateway_ladder`).

The watcher reads time from the clock it is given; `check` does one round, so the unit tests
move a fake clock instead of sleeping. The same states feed the console's fleet view and
/metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cloud_bridge.alerts.book import SILENT, Alert, AlertBook, Change
from cloud_bridge.alerts.clock import SYSTEM_CLOCK, Clock
from cloud_bridge.receiver.gateways import Gateways, Heard
from cloud_bridge.registry.source import RegistrySource
from mashang.registry import Registry

log = logging.getLogger(__name__)

SILENT_TYPE = "gateway.silent"
# The longest the watcher sleeps between rounds, whatever the deadlines say: another process
# may have written the table, and a wall clock may jump.
MAX_WAIT = 5.0


@dataclass(frozen=True)
class Behind:
    """The buildings (`{"id", "name"}`, in registry order) and buttons behind a gateway."""

    buildings: list[dict[str, str]]
    buttons: int


def behind(registry: Registry, gateway_id: str, buttons: Mapping[str, str],
           configured: Sequence[str]) -> Behind:
    """`buttons`: device id → the gateway its latest event came through."""
    sole = list(configured) == [gateway_id]
    mine = [b for b in registry.buttons if sole or buttons.get(b.device_id) == gateway_id]
    ids = {button.resident.building for button in mine}
    return Behind([{"id": b.id, "name": b.name} for b in registry.buildings if b.id in ids],
                  len(mine))


def heard_since(alert: Alert, last_heard: float | None) -> bool:
    """Heard after the silence that raised the alert began."""
    before = alert.data.get("last_heard")
    return last_heard is not None and (before is None or last_heard > before)


@dataclass(frozen=True)
class GatewayState:
    id: str
    heard: Heard | None
    silent: bool
    deadline: float  # when it falls silent, unless heard before
    behind: Behind
    alert: Alert | None  # its open gateway.silent alert
    raised: bool  # this silence has had its alert already (open, or resolved by a person)

    @property
    def last_heard(self) -> float | None:
        return self.heard.last_heard if self.heard else None

    def fleet_entry(self) -> dict[str, Any]:
        """One gateway of the console's fleet view (docs/protocol.md, the gateway facts)."""
        facts = self.heard.facts if self.heard else None
        return {
            "id": self.id,
            "last_heard": self.last_heard,
            "silent": self.silent,
            "version": self.heard.version if self.heard else None,
            "outbox": facts.outbox.model_dump() if facts and facts.outbox else None,
            "oldest_alert_waiting_s": facts.oldest_alert_waiting_s if facts else None,
            "uptime_s": facts.uptime_s if facts else None,
            "buildings": self.behind.buildings,
            "buttons": self.behind.buttons,
        }


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} 分 {rest} 秒" if minutes else f"{rest} 秒"


class Supervision:
    def __init__(
        self,
        gateways: Gateways,
        book: AlertBook,
        registry: RegistrySource,
        configured: Sequence[str],
        silent_after: float,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._gateways = gateways
        self._book = book
        self._registry = registry
        self.configured = list(configured)
        self.silent_after = silent_after
        self._clock = clock
        self.started = clock()
        self._wake = asyncio.Event()
        # A gateway heard again after a silence is looked at at once, not at the next round.
        gateways.quiet_after = silent_after
        gateways.returned = self.poke

    def poke(self, gateway_id: str = "") -> None:
        self._wake.set()

    # -- one round (blocking: SQLite) ---------------------------------------------------------

    def states(self) -> list[GatewayState]:
        """Every configured gateway as of now, in configuration order."""
        now = self._clock()
        heard = self._gateways.all()
        buttons = self._gateways.buttons()
        latest = self._book.latest_for_gateways(SILENT, self.configured)
        registry = self._registry.current
        states = []
        for gateway_id in self.configured:
            record = heard.get(gateway_id)
            last = record.last_heard if record else None
            deadline = max(self.started, last if last is not None else self.started)
            deadline += self.silent_after
            alert = latest.get(gateway_id)
            raised = alert is not None and not heard_since(alert, last)
            states.append(GatewayState(
                gateway_id, record, raised or now > deadline, deadline,
                behind(registry, gateway_id, buttons, self.configured),
                alert if alert is not None and alert.is_open else None, raised,
            ))
        return states

    def check(self) -> tuple[list[Change], float | None]:
        """Raise and close what is due: (the changes, when the next gateway falls silent)."""
        changes = []
        upcoming = []
        for state in self.states():
            alert = state.alert
            if alert is not None and not state.raised:  # heard since its silence began
                change = self._close(state, alert)
                changes.extend([change] if change else [])
            if state.raised:
                continue
            if self._clock() > state.deadline:
                change = self._raise(state)
                changes.extend([change] if change else [])
            else:
                upcoming.append(state.deadline)
        return changes, min(upcoming, default=None)

    def _raise(self, state: GatewayState) -> Change | None:
        facts = state.heard.facts if state.heard else None
        data = {
            "gateway": state.id,
            "buildings": state.behind.buildings,
            "buttons": state.behind.buttons,
            "last_heard": state.last_heard,
            "silent_after": self.silent_after,
            "facts": facts.model_dump(exclude_none=True) if facts else None,
        }
        change = self._book.raise_for_gateway(SILENT, SILENT_TYPE, "critical", state.id, data)
        if change is not None:
            log.warning("gateway %s silent (last heard %s); %d buttons behind it are mute",
                        state.id, state.last_heard, state.behind.buttons)
        return change

    def _close(self, state: GatewayState, alert: Alert) -> Change | None:
        assert state.last_heard is not None  # heard_since says so
        silent_for = state.last_heard - (alert.data.get("last_heard") or self.started)
        note = f"网关 {state.id} 已恢复联系（失联约 {duration(silent_for)}）"
        change = self._book.close_for_gateway(
            alert.id, note, {"heard_at": state.last_heard, "silent_s": round(silent_for, 1)}
        )
        if change is not None:
            log.info("gateway %s heard again after %.0f s", state.id, silent_for)
        return change

    def fleet(self, buildings: frozenset[str] | None) -> list[dict[str, Any]]:
        """The gateways serving any of `buildings` (None: every gateway), silent ones first,
        then by id."""
        shown = [
            state for state in self.states()
            if buildings is None or any(b["id"] in buildings for b in state.behind.buildings)
        ]
        shown.sort(key=lambda state: (not state.silent, state.id))
        return [state.fleet_entry() for state in shown]

    # -- running ------------------------------------------------------------------------------

    async def run(self, react: Callable[[Change], None]) -> None:
        """Round after round until cancelled; `react` acts on each change (the engine's)."""
        while True:
            self._wake.clear()
            try:
                changes, upcoming = await asyncio.to_thread(self.check)
            except Exception:  # the database failing: the next round tries again
                log.exception("gateway supervision round failed")
                changes, upcoming = [], None
            for change in changes:
                react(change)
            delay = MAX_WAIT if upcoming is None else upcoming - self._clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(MAX_WAIT, max(0.01, delay)))


SUPERVISION_KEY = web.AppKey("supervision", Supervision)
