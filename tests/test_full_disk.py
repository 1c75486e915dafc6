"""A full disk: logs make room for alerts; when nothing more fits, MQTT is not acked.

The gateway's data folder lives on a small tmpfs mounted for the test (run as root), with a
ballast file eating most of it, the way a chatty process fills an SD card. Where mounting is not
permitted (or with MASHANG_FULL_DISK=cap), the test falls back to the configured cap
(`outbox.max_bytes`) on the ordinary disk; it prints which one ran.

With the central unreachable, so that everything stays in the outbox:

1. a flood of scans (logs, 4 KB each) overfills the place: the oldest logs are evicted, each
   eviction recorded in a gateway.evicted log that says how many; every press (alert) stays;
2. a flood of presses overfills what is left: the gateway says in its log that the outbox is
   full and that it stops acking MQTT, and it does stop: the broker keeps the presses;
3. the central comes back, then the space (the ballast is deleted, or in the fallback the
   delivered alerts leave the outbox): the gateway resumes by itself, without a restart.

In the end the receiver holds every press exactly once (none acked unsaved, none lost), the
scans that survived are the newest ones, and the outbox file passes `PRAGMA integrity_check`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.gateway import OUTBOX_FILE
from tests.helpers.crash_checker import Published, expected_id, integrity
from tests.helpers.receiver import Receiver
from tests.helpers.support import device_topic, mosquitto_pub, set_option, wait_for

pytestmark = pytest.mark.system

MiB = 1024 * 1024
PAD = "x" * 4000
PRESSES_EARLY = 50


@dataclass
class Place:
    """Where the outbox lives, and how to take its space away and give it back."""

    kind: str  # "tmpfs" or "cap"
    data_dir: Path
    max_bytes: int
    scans: int  # how many 4 KB scans overfill it
    presses: int  # how many 4 KB presses overfill what is left
    ballast: Path | None = None

    def give_space_back(self) -> None:
        if self.ballast is not None:
            self.ballast.unlink()


def try_mount(mountpoint: Path, size: str) -> bool:
    mountpoint.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
            capture_output=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@pytest.fixture
def place(tmp_path: Path, capsys) -> Iterator[Place]:
    mountpoint = tmp_path / "disk"
    forced_cap = os.environ.get("MASHANG_FULL_DISK") == "cap"
    if not forced_cap and try_mount(mountpoint, "64m"):
        try:
            ballast = mountpoint / "ballast"
            # Leave 24 MiB: after the outbox's 8 MiB reserve and its WAL, about 12 MiB of logs.
            with ballast.open("wb") as handle:
                for _ in range(40):
                    handle.write(b"\0" * MiB)
            with capsys.disabled():
                print("\nfull disk: a 64 MiB tmpfs filled by a ballast file")
            yield Place("tmpfs", mountpoint / "gateway", 1024 * MiB, scans=6000, presses=6000,
                        ballast=ballast)
        finally:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False, timeout=30)
    else:
        with capsys.disabled():
            print("\nfull disk: mount not permitted here; using the configured cap instead")
        yield Place("cap", tmp_path / "gateway", 4 * MiB, scans=2000, presses=2000)


def lines(kind: str, device: str, count: int, first_seq: int = 1) -> list[Published]:
    topic = (device_topic(device) if kind == "press"
             else device_topic(device, "scans", "scanners"))
    messages = []
    for seq in range(first_seq, first_seq + count):
        fields = ({"action": "long"} if kind == "press"
                  else {"code": f"HTTPS://M.DDP.CN/S/NOTATOKEN{seq}", "purpose": "checkin"})
        payload = json.dumps({"seq": seq, **fields, "pad": PAD}).encode()
        messages.append(Published(topic, payload))
    return messages


def publish_all(port: int, messages: list[Published], folder: Path) -> None:
    topic = messages[0].topic
    assert all(m.topic == topic for m in messages)
    mosquitto_pub(port, topic, [m.payload.decode() for m in messages], folder)


def stored_ids(outbox: Path) -> set[str]:
    import sqlite3

    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT id FROM outbox")}
    finally:
        db.close()


def test_logs_make_room_then_mqtt_waits_until_space_returns(place: Place, broker, make_gateway,
                                                             tmp_path):
    with Receiver() as receiver:
        receiver.refuse()
        # Its log and config stay off the full place: only the data folder lives there.
        gateway = make_gateway(receiver.url)
        set_option(gateway.config, "outbox", "max_bytes", str(place.max_bytes))
        gateway.data_dir = place.data_dir
        config = gateway.config.read_text().replace(
            f'data_dir = "{gateway.folder / "data"}"', f'data_dir = "{place.data_dir}"'
        )
        gateway.config.write_text(config)
        gateway.start()
        outbox = place.data_dir / OUTBOX_FILE
        feed = tmp_path / "feed"

        # 1. Presses first, then a flood of scans: logs are evicted, oldest first, alerts stay.
        early = lines("press", "btn-0001", PRESSES_EARLY)
        publish_all(broker.port, early, feed)
        scans = lines("scan", "gate-north", place.scans)
        publish_all(broker.port, scans, feed)
        last_scan = expected_id(scans[-1])
        wait_for(lambda: last_scan in stored_ids(outbox), 120, interval=0.5,
                 what="the last scan committed")
        held = stored_ids(outbox)
        assert {expected_id(m) for m in early} <= held, "an alert was evicted"
        kept = sorted(m.seq for m in scans if expected_id(m) in held)
        assert kept, "every scan was evicted, even the newest"
        assert kept == list(range(kept[0], place.scans + 1)), "eviction was not oldest-first"
        assert kept[0] > 1, "no scan was evicted"
        assert "outbox full" not in gateway.output(), "stopped acking while logs could go"

        # 2. A flood of presses overfills what is left: acking stops, and the log says why.
        flood = lines("press", "btn-0002", place.presses)
        publish_all(broker.port, flood, feed)  # the broker has them all: PUBACKed
        wait_for(lambda: "outbox full, not acking MQTT until space returns" in gateway.output(),
                 120, interval=0.5, what="the gateway saying it stops acking")
        saved = stored_ids(outbox)
        assert len({expected_id(m) for m in flood} & saved) < len(flood), "nothing was held back"
        assert gateway.running()
        assert integrity(outbox) == "ok"

        # 3. The central comes back while the disk is still full (deleting what it confirmed
        #    needs a little space too), then the space comes back: it resumes by itself.
        receiver.recover()
        wait_for(lambda: receiver.events(), 60, interval=0.2, what="a first delivery")
        place.give_space_back()
        every_press = {expected_id(m) for m in early + flood}

        def delivered() -> bool:
            assert gateway.running(), gateway.output()[-3000:]
            return every_press <= set(receiver.by_id())

        wait_for(delivered, 300, interval=0.5, what="every press at the receiver")
        assert "outbox has room again; acking resumes" in gateway.output()
        events = receiver.events()
        presses = [e for e in events if e["type"] in ("button.press", "button.repeat")]
        assert len(presses) == len(every_press), "a press arrived twice or a stray one came"

        # Scans that reached the receiver are the newest ones (the presses' flood evicted more
        # of them), and evictions were recorded with their counts.
        survived = sorted(e["data"]["seq"] for e in events if e["type"] == "scan.rejected")
        assert survived == list(range(place.scans - len(survived) + 1, place.scans + 1))
        evicted = [e for e in events if e["type"] == "gateway.evicted"]
        assert evicted and all(e["data"]["count"] > 0 for e in evicted)
        gateway.terminate()
        assert integrity(outbox) == "ok"
        assert "Traceback" not in gateway.output(), gateway.output()[-3000:]
        print(f"{place.kind}: {len(every_press)} presses kept and delivered; "
              f"{kept[0] - 1} oldest scans evicted while logs filled the place")
