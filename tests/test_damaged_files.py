"""Damaged files are survived, never trusted blindly.

Real files are damaged as a bad SD card or a power cut would leave them: `registry.json` cut
off mid-file, pages in the middle of `outbox.sqlite` overwritten with random bytes, and the
real gateway is started on them. It starts; the damaged file is kept aside for an operator;
the registry comes again from the central (every press meanwhile still an alert); a replaced
outbox is told to the central by a critical `gateway.outbox_replaced` alert; `mashang doctor`
reports each damaged file with its fix, and moves nothing. A healthy outbox passes the same
start-up check and is not moved.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

import edge.buffer.outbox as outbox_module
from edge.buffer.outbox import EventClass, Outbox, OutboxError, check_outbox_file
from edge.downlink.poll import Downlink
from edge.gateway import CURSOR_FILE, OUTBOX_FILE, REGISTRY_FILE
from edge.registry_store import RegistryStore
from edge.transform.rules import gateway_event
from mashang.registry import Registry
from tests.helpers.console import REGISTRY, start_central
from tests.helpers.e2e import synced_gateway, wait_gateway_registry
from tests.helpers.support import Central, device_topic, mosquitto_pub, outbox_depth, wait_for
from tests.test_doctor import configured, doctor, finding

REGISTERED = [button["device_id"] for button in REGISTRY["buttons"]]
RESIDENT = {button["device_id"]: button["resident"]["name"] for button in REGISTRY["buttons"]}
MAX_BYTES = 256 * 1024 * 1024
TTL = 7 * 86400.0


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    """The central with a registry imported (three buttons), as the gateway would meet it."""
    central = start_central(tmp_path / "central")
    yield central
    central.kill()


# -- damaging files ---------------------------------------------------------------------------


def overwrite_pages(path: Path, seed: int = 7) -> bytes:
    """Random bytes over every page of an SQLite file but the first (which keeps its header,
    so that SQLite still takes it for a database and only a check finds the damage). Returns
    the damaged file's bytes."""
    data = path.read_bytes()
    page_size = int.from_bytes(data[16:18], "big") or 65536
    pages = len(data) // page_size
    assert pages >= 3, f"{path} has only {pages} pages: nothing in the middle to damage"
    rng = random.Random(seed)
    with path.open("r+b") as handle:
        for number in range(2, pages + 1):  # SQLite numbers pages from 1
            handle.seek((number - 1) * page_size)
            handle.write(rng.randbytes(page_size))
    return path.read_bytes()


def truncate_mid_file(path: Path) -> bytes:
    """Cut the file in half, at a character's start: the JSON is cut short, not its UTF-8."""
    data = path.read_bytes()
    cut = len(data) // 2
    while cut and data[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte
        cut -= 1
    path.write_bytes(data[:cut])
    return path.read_bytes()


def filled_outbox(path: Path, alerts: int = 300, logs: int = 300) -> None:
    outbox = Outbox(path, max_bytes=MAX_BYTES, log_ttl=TTL)
    events = [gateway_event("test.alert", {"n": n, "pad": "x" * 200}, kind="alert")
              for n in range(alerts)]
    events += [gateway_event("test.log", {"n": n, "pad": "y" * 200}) for n in range(logs)]
    outbox.put(events)
    outbox.close()


def set_aside_folders(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("outbox.damaged-*"))


# -- the outbox, in-process ---------------------------------------------------------------------


@pytest.mark.unit
def test_a_healthy_outbox_passes_the_start_up_check_and_is_not_moved(tmp_path):
    path = tmp_path / OUTBOX_FILE
    filled_outbox(path, alerts=50, logs=70)
    assert check_outbox_file(path) is None
    assert [p.name for p in tmp_path.iterdir()] == [OUTBOX_FILE], "the check made files"
    before = path.read_bytes()

    outbox, replaced = Outbox.open_checked(path, max_bytes=MAX_BYTES, log_ttl=TTL)
    try:
        assert replaced is None
        assert (outbox.pending(EventClass.ALERT), outbox.pending(EventClass.LOG)) == (50, 70)
        assert not [e for e in outbox.peek(EventClass.ALERT, 100)
                    if b"gateway.outbox_replaced" in e.body]
    finally:
        outbox.close()
    assert set_aside_folders(tmp_path) == []
    assert path.read_bytes() == before


@pytest.mark.unit
def test_no_outbox_yet_is_no_damage(tmp_path):
    path = tmp_path / "data" / OUTBOX_FILE
    assert check_outbox_file(path) is None
    outbox, replaced = Outbox.open_checked(path, max_bytes=MAX_BYTES, log_ttl=TTL)
    outbox.close()
    assert replaced is None and set_aside_folders(path.parent) == []


@pytest.mark.unit
@pytest.mark.parametrize("damage", ["pages", "header", "truncated"])
def test_a_damaged_outbox_is_moved_aside_whole_and_a_fresh_one_raises_the_alert(
    tmp_path, damage
):
    path = tmp_path / OUTBOX_FILE
    filled_outbox(path)
    if damage == "pages":
        damaged = overwrite_pages(path)
    elif damage == "header":
        with path.open("r+b") as handle:
            handle.write(b"not an SQLite file at all, but the start of something else")
        damaged = path.read_bytes()
    else:
        damaged = truncate_mid_file(path)

    reason = check_outbox_file(path)
    assert reason, "the check passed a damaged file"
    assert path.read_bytes() == damaged, "the check changed the file"
    assert [p.name for p in tmp_path.iterdir()] == [OUTBOX_FILE], "the check made files"

    outbox, replaced = Outbox.open_checked(path, max_bytes=MAX_BYTES, log_ttl=TTL)
    try:
        assert replaced is not None
        [folder] = set_aside_folders(tmp_path)
        assert replaced.moved_to == folder
        assert folder.name.startswith("outbox.damaged-") and folder.name.endswith("Z")
        assert (folder / OUTBOX_FILE).read_bytes() == damaged  # kept as found
        assert replaced.size >= len(damaged) and replaced.reason
        # The fresh outbox holds exactly one event: the critical alert saying what happened.
        assert (outbox.pending(EventClass.ALERT), outbox.pending(EventClass.LOG)) == (1, 0)
        [item] = outbox.peek(EventClass.ALERT, 10)
        event = json.loads(item.body)
        assert (event["kind"], event["type"], event["priority"]) == (
            "alert", "gateway.outbox_replaced", "critical")
        assert event["data"]["moved_to"] == str(folder)
        assert event["data"]["size"] == replaced.size
        assert event["data"]["reason"] == replaced.reason
        assert "cannot be trusted" in event["data"]["events"]
    finally:
        outbox.close()
    assert check_outbox_file(path) is None  # the fresh one is sound


@pytest.mark.unit
def test_the_wal_and_shm_move_with_the_file(tmp_path):
    """A gateway killed (not stopped) leaves its -wal and -shm: they go with the database, so
    that no WAL of the damaged file is ever replayed into the fresh one."""
    live = tmp_path / "live" / OUTBOX_FILE
    outbox = Outbox(live, max_bytes=MAX_BYTES, log_ttl=TTL)
    for batch in range(20):
        outbox.put([gateway_event("test.alert", {"batch": batch, "n": n, "pad": "z" * 300},
                                  kind="alert") for n in range(100)])
        if batch == 10:  # pages in the file, and more commits in the WAL after them
            with closing(sqlite3.connect(live)) as other:
                other.execute("PRAGMA wal_checkpoint(PASSIVE)")
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal", "-shm"):  # as SIGKILL would leave them
        (crashed / f"{OUTBOX_FILE}{suffix}").write_bytes(Path(f"{live}{suffix}").read_bytes())
    outbox.close()
    path = crashed / OUTBOX_FILE
    overwrite_pages(path)

    fresh, replaced = Outbox.open_checked(path, max_bytes=MAX_BYTES, log_ttl=TTL)
    fresh.close()
    assert replaced is not None
    assert sorted(p.name for p in replaced.moved_to.iterdir()) == [
        OUTBOX_FILE, f"{OUTBOX_FILE}-shm", f"{OUTBOX_FILE}-wal"]
    reopened = Outbox(path, max_bytes=MAX_BYTES, log_ttl=TTL)
    try:
        assert (reopened.pending(EventClass.ALERT), reopened.pending(EventClass.LOG)) == (1, 0)
    finally:
        reopened.close()


@pytest.mark.unit
def test_a_file_that_cannot_be_checked_now_is_not_called_damaged(tmp_path, monkeypatch):
    """Locked by another connection: no verdict on the file, so nothing is moved."""
    monkeypatch.setattr(outbox_module, "CHECK_BUSY_TIMEOUT", 0.2)
    path = tmp_path / OUTBOX_FILE
    filled_outbox(path, alerts=3, logs=0)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(OutboxError, match="cannot be checked: database is locked"):
            Outbox.open_checked(path, max_bytes=MAX_BYTES, log_ttl=TTL)
    finally:
        holder.close()
    assert set_aside_folders(tmp_path) == []
    outbox, replaced = Outbox.open_checked(path, max_bytes=MAX_BYTES, log_ttl=TTL)
    outbox.close()
    assert replaced is None


# -- the registry, in-process -------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("damage", ["truncated", "empty", "not a registry", "not tables",
                                    "not utf-8", "nested"])
def test_a_damaged_registry_is_moved_aside_and_the_gateway_starts_with_none(tmp_path, damage):
    path = tmp_path / REGISTRY_FILE
    store = RegistryStore(path)
    store.replace(Registry.model_validate(REGISTRY))
    if damage == "truncated":
        truncate_mid_file(path)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not a registry":  # valid JSON, valid tables, but a button with no resident
        path.write_text(json.dumps({"meta": {"1": {"version": 2}},
                                    "buttons": {"1": {"device_id": "btn-0007"}}}))
    elif damage == "not tables":
        path.write_text(json.dumps(["a", "list"]))
    elif damage == "not utf-8":
        path.write_bytes(b'{"meta": {"1": {"version": "\xff\xfe"}}}')
    else:
        path.write_text("[" * 100_000 + "]" * 100_000)
    damaged = path.read_bytes()
    with pytest.raises(ValueError):
        store.load()  # what doctor runs: it moves nothing
    assert path.read_bytes() == damaged

    registry, set_aside = store.load_at_start()
    assert registry == Registry()  # no button known: every press an unregistered alert
    assert set_aside is not None and set_aside.problem
    assert set_aside.moved_to is not None
    assert set_aside.moved_to.name.startswith(f"{REGISTRY_FILE}.damaged-")
    assert set_aside.moved_to.read_bytes() == damaged
    assert not path.exists()
    assert store.load_at_start() == (Registry(), None)  # no file: nothing more to move


@pytest.mark.unit
def test_a_sound_registry_is_loaded_and_left_alone(tmp_path):
    path = tmp_path / REGISTRY_FILE
    store = RegistryStore(path)
    expected = Registry.model_validate(REGISTRY)
    store.replace(expected)
    before = path.read_bytes()
    assert store.load_at_start() == (expected, None)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [REGISTRY_FILE]


@pytest.mark.unit
def test_resetting_the_cursor_forgets_it(tmp_path):
    cursor = tmp_path / CURSOR_FILE
    cursor.write_text("42")
    Downlink.reset_cursor(cursor)
    assert not cursor.exists()
    Downlink.reset_cursor(cursor)  # none to forget: fine


# -- the real gateway ---------------------------------------------------------------------------


def restarted(central: Central) -> Central:
    """The same central (folder, port, data) started again."""
    again = Central(central.folder, port=central.port, extra="registry_poll = 0.1")
    again.start()
    return again


def press(broker, device_id: str, seq: int, folder: Path) -> None:
    mosquitto_pub(broker.port, device_topic(device_id),
                  [json.dumps({"seq": seq, "action": "single"})], folder)


def central_presses(central: Central, device_id: str) -> list[dict]:
    """The device's presses at the central: a press while its alert is open is a repeat."""
    return [e for e in central.events() if e["device_id"] == device_id
            and e["type"] in ("button.press", "button.repeat")]


@pytest.mark.system
def test_a_truncated_registry_is_set_aside_and_the_central_sends_a_fresh_one(
    broker, central, make_gateway, tmp_path
):
    gateway = synced_gateway(make_gateway, central.url, REGISTERED)
    data_dir = gateway.data_dir
    wait_for(lambda: (data_dir / CURSOR_FILE).exists(), what="the downlink's cursor")
    assert gateway.terminate() == 0
    central.kill()  # the central is away when the gateway starts on the damaged file
    damaged = truncate_mid_file(data_dir / REGISTRY_FILE)

    gateway.start()  # it starts: no traceback, /healthz answers
    [aside] = data_dir.glob(f"{REGISTRY_FILE}.damaged-*")
    assert aside.read_bytes() == damaged
    assert not (data_dir / CURSOR_FILE).exists(), "the cursor was kept: no fresh registry"
    log = gateway.output()
    assert "ERROR" in log and "damaged" in log and aside.name in log

    # With no registry, a press is still an alert (an unregistered one); the outbox keeps it.
    press(broker, "btn-0007", 1, tmp_path)
    wait_for(lambda: outbox_depth(gateway.config)["alerts"] >= 1, what="the press committed")

    central = restarted(central)
    try:
        [first] = wait_for(lambda: central_presses(central, "btn-0007"),
                           what="the press at the central")
        assert first["kind"] == "alert" and "resident" not in first["data"]
        # The first poll had no cursor: the central sent the whole registry.
        wait_gateway_registry(gateway, REGISTERED)
        press(broker, "btn-0007", 2, tmp_path)
        presses = wait_for(lambda: (found := central_presses(central, "btn-0007"))
                           and len(found) >= 2 and found, what="the second press")
        assert presses[1]["data"]["resident"]["name"] == RESIDENT["btn-0007"]
        assert gateway.running()
    finally:
        central.kill()


@pytest.mark.system
def test_an_outbox_with_overwritten_pages_is_replaced_and_the_central_is_told(
    broker, central, make_gateway, tmp_path
):
    gateway = make_gateway(central.url)
    gateway.start()
    wait_for(lambda: central.events("gateway.started"), what="the gateway at the central")
    central.kill()
    devices = [f"btn-{n:04d}" for n in range(100, 140)]
    for seq, device in enumerate(devices):  # events waiting in the outbox: the central is down
        press(broker, device, seq, tmp_path)
    wait_for(lambda: outbox_depth(gateway.config)["alerts"] >= len(devices),
             what="the presses in the outbox")
    assert gateway.terminate() == 0  # a clean stop checkpoints the WAL into the file
    path = gateway.data_dir / OUTBOX_FILE
    assert not Path(f"{path}-wal").exists()
    damaged = overwrite_pages(path)

    central = restarted(central)
    try:
        gateway.start()
        [folder] = set_aside_folders(gateway.data_dir)
        assert (folder / OUTBOX_FILE).read_bytes() == damaged
        log = gateway.output()
        assert "ERROR" in log and "damaged" in log and str(folder) in log

        [event] = wait_for(lambda: central.events("gateway.outbox_replaced"),
                           what="gateway.outbox_replaced at the central")
        assert (event["kind"], event["priority"], event["device_id"]) == (
            "alert", "critical", None)
        assert event["data"]["moved_to"] == str(folder)
        assert event["data"]["size"] >= len(damaged) and event["data"]["reason"]
        assert "cannot be trusted" in event["data"]["events"]

        press(broker, "btn-0200", 1, tmp_path)  # a new press still arrives
        wait_for(lambda: central_presses(central, "btn-0200"), what="a press after the repair")
        assert gateway.running()
    finally:
        central.kill()


@pytest.mark.system
def test_doctor_reports_each_damaged_file_and_moves_nothing(broker, central, tmp_path):
    gateway = configured(tmp_path / "gw", broker.port, central.url)
    path = gateway.data_dir / OUTBOX_FILE
    filled_outbox(path)
    result = doctor(gateway.config)
    assert result.returncode == 0, result.stdout + result.stderr
    status, text = finding(result.stdout, "outbox")
    assert status == "ok" and "quick_check" in text

    damaged = overwrite_pages(path)
    result = doctor(gateway.config)
    assert result.returncode != 0
    status, text = finding(result.stdout, "outbox")
    assert status == "FAIL" and "damaged:" in text and "quick_check" in text
    assert "fix:" in text and "moves the file" in text and "outbox.damaged-" in text
    assert finding(result.stdout, "registry")[0] == "ok"
    assert path.read_bytes() == damaged and set_aside_folders(gateway.data_dir) == []

    registry = gateway.data_dir / REGISTRY_FILE
    cut = truncate_mid_file(registry)
    result = doctor(gateway.config)
    assert result.returncode != 0
    status, text = finding(result.stdout, "registry")
    assert status == "FAIL" and "damaged:" in text and "JSON" in text
    assert "fix:" in text and "moves the file aside" in text and "fresh copy" in text
    assert registry.read_bytes() == cut
    assert not list(gateway.data_dir.glob(f"{REGISTRY_FILE}.damaged-*"))
    for check in ("broker", "central", "central key", "disk"):
        assert finding(result.stdout, check)[0] == "ok", check
