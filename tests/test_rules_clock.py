"""The button rules against a clock the test moves: guard window, supervision by silence (and
its bounds for unregistered devices), press-counter gaps and battery crossings, judged
in-process with no broker and no sleeps (PROTOCOL §3 event types)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from edge.config import RulesSection
from edge.source.messages import parse_message
from edge.transform.rules import Rules
from mashang.registry import Building, Butler, Button, Registry, Resident
from tests.helpers.clock import FakeClock

pytestmark = pytest.mark.unit

ROOT = "mashang/v1"
REGISTRY = Registry(
    butlers=[Butler(id="b-wang", name="王管家")],
    buildings=[Building(id="B3", name="3号楼", primary_butler="b-wang")],
    buttons=[Button(device_id="btn-0007", supervision_hours=1.0,
                    resident=Resident(name="张秀英", building="B3", room="1201"))],
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def rules(clock: FakeClock) -> Rules:
    settings = RulesSection(guard_window=30.0, battery_low_percent=20, battery_hysteresis=5)
    return Rules(settings, REGISTRY, state_path=None, clock=clock)


def press(rules: Rules, seq: int | None, device: str = "btn-0007",
          **fields: object) -> list[dict]:
    payload = {**({"seq": seq} if seq is not None else {}), **fields}
    raw = json.dumps(payload).encode()
    topic = f"{ROOT}/buttons/{device}/events"
    message = parse_message(ROOT, topic, raw, datetime.now().astimezone())
    return [event.to_wire() for event in rules.evaluate(message)]


def test_presses_within_the_guard_window_fold_into_one_alert(
    rules: Rules, clock: FakeClock
) -> None:
    [first] = press(rules, 1)
    clock.now += 29.0
    [second] = press(rules, 2)
    assert (first["type"], second["type"]) == ("button.press", "button.repeat")
    assert second["data"]["alert_id"] == first["data"]["alert_id"]
    assert second["data"]["presses"] == 2


def test_a_press_after_the_guard_window_is_a_new_alert(rules: Rules, clock: FakeClock) -> None:
    [first] = press(rules, 1)
    clock.now += 30.5
    [second] = press(rules, 2)
    assert second["type"] == "button.press"
    assert second["data"]["alert_id"] != first["data"]["alert_id"]
    assert second["data"]["presses"] == 1


def test_the_guard_window_runs_from_the_latest_press(rules: Rules, clock: FakeClock) -> None:
    [first] = press(rules, 1)
    for seq in range(2, 6):
        clock.now += 20.0  # each press within 30 s of the one before: 80 s in all
        [repeat] = press(rules, seq)
        assert repeat["data"]["alert_id"] == first["data"]["alert_id"]


def test_silence_past_the_supervision_interval_raises_one_offline(rules: Rules,
                                                                  clock: FakeClock) -> None:
    press(rules, 1)
    clock.now += 3599.0
    assert rules.tick() == []
    clock.now += 2.0
    [offline] = [event.to_wire() for event in rules.tick()]
    assert (offline["type"], offline["device_id"]) == ("button.offline", "btn-0007")
    assert offline["data"]["reason"] == "silent"
    clock.now += 7200.0
    assert rules.tick() == [], "silent for longer still: no second reminder"
    [back, online] = press(rules, 2)
    assert (back["type"], online["type"]) == ("button.press", "button.online")


def test_a_low_battery_warns_once_until_clearly_recharged(rules: Rules, clock: FakeClock) -> None:
    types = []
    for seq, battery in enumerate([50, 19, 18, 22, 19, 30, 10], start=1):
        clock.now += 60.0  # past the guard window each time
        types.append([event["type"] for event in press(rules, seq, battery=battery)])
    warned = [index for index, kinds in enumerate(types) if "button.battery_low" in kinds]
    # 19 warns; 18, 22 and 19 do not (not back above 20 + 5); 30 re-arms; 10 warns again.
    assert warned == [1, 6]


def status(rules: Rules, device: str, state: str = "online") -> list[dict]:
    topic = f"{ROOT}/buttons/{device}/status"
    message = parse_message(ROOT, topic, json.dumps({"state": state}).encode(),
                            datetime.now().astimezone())
    return [event.to_wire() for event in rules.evaluate(message)]


def test_unregistered_devices_gone_silent_make_one_summary_then_are_forgotten(
        clock: FakeClock) -> None:
    settings = RulesSection(supervision_hours=1.0, forget_after=7 * 24 * 3600.0)
    rules = Rules(settings, REGISTRY, state_path=None, clock=clock)
    for number in range(50):
        status(rules, f"fake-{number}")
    clock.now += 3601.0
    ticked = [event.to_wire() for event in rules.tick()]
    assert [e["type"] for e in ticked] == ["button.offline", "gateway.unregistered_silent"]
    assert ticked[0]["device_id"] == "btn-0007", "only a registered button's silence alerts"
    summary = ticked[1]
    assert (summary["kind"], summary["data"]["count"]) == ("log", 50)
    clock.now += 60.0
    assert rules.tick() == [], "one summary, not one per tick"
    clock.now += 7 * 24 * 3600.0
    rules.tick()
    assert set(rules.device_snapshot()) == {"btn-0007"}, "forgotten; the registered one stays"


def test_unregistered_devices_are_remembered_up_to_a_bound(clock: FakeClock) -> None:
    rules = Rules(RulesSection(max_unregistered=100), REGISTRY, state_path=None, clock=clock)
    for number in range(10_000):
        clock.now += 0.01
        status(rules, f"fake-{number}")
    remembered = set(rules.device_snapshot())
    assert len(remembered) == 101
    assert {"btn-0007", "fake-9999", "fake-9900"} <= remembered
    assert "fake-9899" not in remembered, "the least recently heard are forgotten first"


def test_an_unregistered_device_fault_is_a_log_not_an_alert(rules: Rules) -> None:
    [offline] = status(rules, "btn-stranger", "offline")
    assert (offline["type"], offline["kind"]) == ("button.offline", "log")
    [registered] = status(rules, "btn-0007", "offline")
    assert (registered["type"], registered["kind"]) == ("button.offline", "alert")


def test_a_press_counter_that_jumps_raises_one_gap_alert(rules: Rules, clock: FakeClock) -> None:
    types = []
    for seq in [1, 2, 5, 5, 6, 1, 2]:  # 3 and 4 lost; 5 redelivered; the button restarted at 1
        clock.now += 60.0
        types.append([event["type"] for event in press(rules, seq)])
    gaps = [index for index, kinds in enumerate(types) if "button.gap" in kinds]
    assert gaps == [2]
    [gap] = [e for e in press(rules, 9) if e["type"] == "button.gap"]
    assert (gap["kind"], gap["priority"]) == ("alert", "high")
    assert (gap["data"]["expected"], gap["data"]["counted"], gap["data"]["missed"]) == (3, 9, 6)
    assert gap["data"]["resident"]["name"] == "张秀英"


def test_a_shelly_event_counter_counts_as_the_press_counter(rules: Rules, clock: FakeClock) -> None:
    kinds = []
    for count in [10, 11, 14]:
        clock.now += 60.0
        kinds.append([e["type"] for e in press(rules, None, event_cnt=count)])
    assert ["button.gap" in found for found in kinds] == [False, False, True]


def test_an_unregistered_button_gets_no_gap_alert(rules: Rules, clock: FakeClock) -> None:
    for seq in [1, 7]:
        clock.now += 60.0
        assert "button.gap" not in [e["type"] for e in press(rules, seq, device="btn-x")]
