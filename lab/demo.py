"""`mashang demo`: the whole loop on this machine, told in plain words.

A private Mosquitto, the central and the gateway start as real processes on free loopback
ports; simulated buttons, a scanner and a butler play their parts over MQTT and HTTP. The
scenario: a press and its LED feedback, the butler seeing it live, acknowledging and resolving
it; a repeated press and a long press; scans of a valid placard, a forged one and one out of
hours; the central down for several seconds while presses go on, and its recovery. The demo
exits 0 only when every message published reached the central as its event.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cloud_bridge.issuing.keys import issue, keygen, load_signing_key, make_request, read_keyring
from devices.simulators.butler import ConsoleClient, LiveStream
from devices.simulators.buttons import SimulatedButton
from devices.simulators.device import SimulatedDevice
from devices.simulators.scanners import SimulatedScanner
from edge.buffer.outbox import Outbox
from edge.events import event_id, now
from edge.gateway import OUTBOX_FILE, REGISTRY_FILE
from edge.registry_store import RegistryStore
from edge.source.messages import parse_message
from edge.transform.rules import PRIMARY
from lab.processes import Broker, Central, Gateway, mashang, wait_for

ROOT = "mashang/v1"
OUTAGE_SECONDS = 6.0
BUTLER, PASSWORD = "b-wang", "demo-password-康城"
BASE = "HTTPS://M.DDP.CN"


def closed_now() -> str:
    """Opening hours that exclude this hour, whenever the demo runs."""
    moment = datetime.datetime.now()
    start, end = moment + datetime.timedelta(hours=2), moment + datetime.timedelta(hours=3)
    return f"{start:%H}:00-{end:%H}:00"


def demo_registry(keyring: dict[int, bytes]) -> dict:
    return {
        "version": 1,
        "community": {
            "name": "康城社区",
            "duty_contact": {"name": "社区值班室", "phone": "0477-8590000"},
            "inspection_contact": {"name": "街道巡查", "phone": "0477-8591111"},
        },
        "butlers": [{"id": BUTLER, "name": "王管家", "phone": "13800000001"}],
        "buildings": [{"id": "B3", "name": "3号楼", "primary_butler": BUTLER}],
        "buttons": [
            {"device_id": "btn-0001", "resident": {"name": "李秀英", "phone": "13900000001",
                                                   "building": "B3", "room": "1201"}},
            {"device_id": "btn-0002", "resident": {"name": "张建国", "phone": "13900000002",
                                                   "building": "B3", "room": "302"}},
        ],
        "zones": [{"id": "night-market", "name": "夜市"}],
        "scanners": [{"device_id": "gate-north", "zone": "night-market", "purpose": "checkin"}],
        "stalls": [
            {"id": "ST-001", "name": "老王烤串", "number": "017", "zone": "night-market",
             "hours": "00:00-23:59"},
            {"id": "ST-002", "name": "夜宵粥铺", "number": "018", "zone": "night-market",
             "hours": closed_now()},
        ],
        "code_keys": {str(k): base64.b64encode(v).decode() for k, v in keyring.items()},
    }


def expected_event_id(device: SimulatedDevice, channel: str, payload: dict) -> str:
    """The id the gateway gives this message's event (PROTOCOL §2), computed independently."""
    topic = f"{device.base}/{channel}"
    message = parse_message(ROOT, topic, json.dumps(payload).encode(), now())
    return event_id(message.identity_key(), PRIMARY)


@dataclass
class Tally:
    published: int = 0
    expected: dict[str, float] = field(default_factory=dict)  # event id → first publish time
    arrived: dict[str, dict] = field(default_factory=dict)  # event id → event at the central

    def sent(self, device: SimulatedDevice, channel: str, payload: dict) -> str:
        self.published += 1
        identity = expected_event_id(device, channel, payload)
        self.expected.setdefault(identity, time.time())
        return identity


class Demo:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tally = Tally()
        self.broker = Broker(folder / "broker")
        # The central makes its command signing key as an installed one does; the gateway is
        # given its public key the way docs/install.md says, from `mashang central command-key`.
        self.central = Central(folder / "central", command_signing_key=None)
        command_key = self.run_cli("central", "command-key", "--config",
                                   str(self.central.config)).strip()
        self.gateway = Gateway(folder / "gateway", self.broker.port, self.central.url,
                               command_key=command_key)
        self.heard: list[tuple[float, str, dict]] = []
        self.devices: list[SimulatedDevice] = []
        self.butler = ConsoleClient(self.central.url)

    @staticmethod
    def say(text: str) -> None:
        print(text, flush=True)

    # -- setting up ----------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        keys = self.folder / "keys"
        keygen(keys)
        self.signing_key = load_signing_key(keys)
        registry = self.folder / "registry.json"
        registry.write_text(json.dumps(demo_registry(read_keyring(keys)), ensure_ascii=False))
        self.run_cli("registry", "import", str(registry), "--config", str(self.central.config))
        self.run_cli("butler", "passwd", BUTLER, "--config", str(self.central.config),
                     "--password-stdin", stdin=PASSWORD + "\n")
        self.broker.start()
        self.say(f"  Mosquitto on 127.0.0.1:{self.broker.port} (persistence on)")
        self.central.start()
        self.say(f"  central on {self.central.url} (butler console at {self.central.url}/console/)")
        self.gateway.start()
        wait_for(self.gateway_has_registry, 20, what="the registry to reach the gateway")
        self.say("  gateway ready; the registry reached it from the central (registry.replace,"
                 " signed by the central's command key)")
        self.say(f"  all up in {time.monotonic() - started:.1f} s")

    def run_cli(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(mashang(*args), input=stdin, capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"mashang {' '.join(args[:2])} failed: {result.stderr.strip()}")
        return result.stdout

    def gateway_has_registry(self) -> bool:
        path = self.gateway.data_dir / REGISTRY_FILE
        return path.exists() and RegistryStore(path).load().button("btn-0001") is not None

    def stop(self) -> None:
        for device in self.devices:
            device.stop()
        for process in (self.gateway, self.central, self.broker):
            process.kill()

    def on_feedback(self, device_id: str, feedback: dict) -> None:
        self.heard.append((time.time(), device_id, feedback))

    def device(self, kind: type[SimulatedDevice], device_id: str) -> SimulatedDevice:
        device = kind(device_id, port=self.broker.port, on_feedback=self.on_feedback)
        device.start()
        self.devices.append(device)
        return device

    # -- what the users see --------------------------------------------------------------------

    def arrival(self, identity: str, timeout: float = 20.0) -> dict:
        def arrived() -> dict | None:
            if identity not in self.tally.arrived:
                for event in self.central.events():
                    self.tally.arrived.setdefault(event["id"], event)
            return self.tally.arrived.get(identity)

        return wait_for(arrived, timeout, what=f"event {identity} at the central")

    def since_publish_ms(self, identity: str, moment: float) -> float:
        return (moment - self.tally.expected[identity]) * 1000

    def feedback(self, match: dict, timeout: float = 10.0) -> tuple[float, dict]:
        def heard() -> tuple[float, dict] | None:
            return next(((at, fb) for at, _, fb in self.heard
                         if all(fb.get(k) == v for k, v in match.items())), None)

        return wait_for(heard, timeout, what=f"feedback {match}")

    # -- the scenario ---------------------------------------------------------------------------

    def help_call(self) -> None:
        self.say("\n2. A help call (一键呼叫), from the button to the butler and back")
        login = self.butler.login(BUTLER, PASSWORD)
        if login.status != 200:
            raise RuntimeError(f"the butler could not log in: {login.status} {login.body}")
        live = LiveStream(self.central.url, self.butler.headers(csrf=False))
        try:
            grandma = self.device(SimulatedButton, "btn-0001")
            assert isinstance(grandma, SimulatedButton)
            pressed = self.tally.sent(grandma, "events", grandma.press("single"))
            event = self.arrival(pressed)
            alert_id = event["data"]["alert_id"]
            self.say("  李秀英 (3号楼 1201) pressed her button")
            arrived = self.since_publish_ms(pressed, event["arrived_at"])
            self.say(f"    at the central after   {arrived:6.0f} ms"
                     f"  ({event['type']}, priority {event['priority']})")
            led_at, _ = self.feedback({"alert_id": alert_id, "state": "received"})
            self.say(f"    LED 'call recorded'    {self.since_publish_ms(pressed, led_at):6.0f} ms")
            card, seen_at = self.on_console(live, "btn-0001")
            shown = self.since_publish_ms(pressed, seen_at)
            self.say(f"    on 王管家's console    {shown:6.0f} ms  (pushed live, no reload)")
            for action, state in (("acknowledge", "acknowledged"), ("resolve", "resolved")):
                clicked = time.time()
                answer = self.butler.act(card["id"], action)
                if answer.status != 200:
                    raise RuntimeError(f"{action} refused: {answer.status} {answer.body}")
                led_at, feedback = self.feedback({"alert_id": alert_id, "state": state})
                words = "help is coming" if state == "acknowledged" else "resolved"
                self.say(f"    butler clicks {action:<11} → LED '{words}' "
                         f"{(led_at - clicked) * 1000:6.0f} ms later (by {feedback.get('by')})")
        finally:
            live.close()

    def on_console(self, live: LiveStream, device_id: str) -> tuple[dict, float]:
        def shown() -> tuple[dict, float] | None:
            for name, data, at in list(live.events):
                for card in (data if name == "snapshot" else [data]):
                    if card.get("device_id") == device_id and card.get("state") != "resolved":
                        return card, at
            return None

        return wait_for(shown, 15, what="the alert on the butler's console")

    def more_presses(self) -> None:
        self.say("\n3. One emergency, not one per press; a long press is critical")
        grandma = self.devices[0]
        assert isinstance(grandma, SimulatedButton)
        first = self.arrival(self.tally.sent(grandma, "events", grandma.press("single")))
        repeat = self.arrival(self.tally.sent(grandma, "events", grandma.press("single")))
        self.say(f"  李秀英 presses twice: a new {first['type']} (the last one was resolved), then "
                 f"{repeat['type']} (presses: {repeat['data']['presses']}) folded into it")
        grandpa = self.device(SimulatedButton, "btn-0002")
        assert isinstance(grandpa, SimulatedButton)
        payload = grandpa.press("long")
        long_press = self.tally.sent(grandpa, "events", payload)
        event = self.arrival(long_press)
        self.say(f"  张建国 long press: {event['type']}, priority {event['priority']}, "
                 f"{self.since_publish_ms(long_press, event['arrived_at']):.0f} ms to the central")
        # The broker redelivering a message (as after a gateway crash) is not a second event.
        grandpa.publish("events", payload)
        self.tally.sent(grandpa, "events", payload)
        self.say("  the same message delivered twice (as after a crash): still one event")

    def scans(self) -> None:
        self.say("\n4. Stall placards, checked offline at the night-market gate")
        scanner = self.device(SimulatedScanner, "gate-north")
        assert isinstance(scanner, SimulatedScanner)
        today = datetime.date.today()
        valid = issue(self.signing_key, make_request("stall", "ST-001", name="老王烤串",
                      zone="night-market", hours="00:00-23:59"), base=BASE, today=today).url
        closed = issue(self.signing_key, make_request("stall", "ST-002", name="夜宵粥铺",
                       zone="night-market", hours=closed_now()), base=BASE, today=today).url
        forged = valid[:-12] + ("A" * 12 if not valid.endswith("A" * 12) else "B" * 12)
        for label, text in (("valid placard of 老王烤串", valid), ("forged placard", forged),
                            ("夜宵粥铺 out of its hours", closed)):
            payload = scanner.scan(text, "checkin")
            identity = self.tally.sent(scanner, "scans", payload)
            beep_at, beep = self.feedback({"seq": payload["seq"]})
            event = self.arrival(identity)
            colour = "green" if beep["result"] == "accepted" else "red"
            self.say(f"  {label:<26} → {colour} beep ({beep['reason']}) in "
                     f"{self.since_publish_ms(identity, beep_at):.0f} ms; {event['type']}")

    def outage(self) -> None:
        self.say(f"\n5. The central goes down for {OUTAGE_SECONDS:.0f} s; the buttons go on")
        self.central.kill()
        down_at = time.monotonic()
        buttons = [d for d in self.devices if isinstance(d, SimulatedButton)]
        during: list[str] = []
        while time.monotonic() - down_at < OUTAGE_SECONDS:
            for button in buttons:
                during.append(self.tally.sent(button, "status", button.status("online",
                                                                              battery=80)))
            time.sleep(1.0)
            self.say(f"  {time.monotonic() - down_at:4.1f} s: {self.backlog()} on the gateway's "
                     "disk")
        grandpa = buttons[-1]
        assert isinstance(grandpa, SimulatedButton)
        alert = self.tally.sent(grandpa, "events", grandpa.press("long"))
        during.append(alert)
        wait_for(lambda: self.backlog_depth()[0] > 0, 10, what="the alert on the gateway's disk")
        self.say(f"  a long press during the outage: kept on disk, first in line "
                 f"({self.backlog()})")
        back_at = self.restart_central()
        event = self.arrival(alert)
        self.say(f"  central back: the waiting alert arrived "
                 f"{(event['arrived_at'] - back_at) * 1000:.0f} ms after the central returned")
        for identity in during:
            self.arrival(identity)
        self.say(f"  the backlog of {len(during)} events drained; the outbox holds "
                 f"{self.backlog()}")

    def restart_central(self) -> float:
        """Start the central again; when it returned, on the wall clock its `arrived_at`
        stamps use (time.time(): one clock for both). The moment is the last time its port
        refused a connection before it took one (watched every millisecond), so the figure
        can only err long, by about that millisecond. Stamped after `Central.start()`
        instead, the moment came late, by the start's /healthz poll (every 50 ms) and its
        round trip: the gateway's retry was often in first, and the alert "arrived -38 ms
        after the central returned"."""
        returned: list[float] = []
        stop = threading.Event()

        def watch_port() -> None:
            refused_at = time.time()
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", self.central.port), 0.5):
                        returned.append(refused_at)
                        return
                except OSError:
                    refused_at = time.time()
                    time.sleep(0.001)

        watcher = threading.Thread(target=watch_port, name="central-port", daemon=True)
        watcher.start()
        try:
            self.central.start()
            watcher.join(5)
        finally:
            stop.set()
        if not returned:
            raise RuntimeError("the central answered /healthz, yet its port took no connection")
        return returned[0]

    def backlog_depth(self) -> tuple[int, int]:
        """(alerts, logs) waiting in the gateway's outbox, as `mashang outbox` reads them."""
        outbox = Outbox(self.gateway.data_dir / OUTBOX_FILE, max_bytes=1 << 40, log_ttl=1e9)
        try:
            stats = outbox.stats()
        finally:
            outbox.close()
        return stats.alerts.events, stats.logs.events

    def backlog(self) -> str:
        alerts, logs = self.backlog_depth()
        return f"{alerts} alerts and {logs} logs"

    def summary(self) -> bool:
        tally = self.tally
        for event in self.central.events():
            tally.arrived.setdefault(event["id"], event)
        delivered = sum(1 for identity in tally.expected if identity in tally.arrived)
        lost = len(tally.expected) - delivered
        self.say("\n6. Tally")
        self.say(f"  messages published:        {tally.published}")
        self.say(f"  events expected:           {len(tally.expected)}")
        self.say(f"  delivered to the central:  {delivered}")
        self.say(f"  duplicates suppressed:     {tally.published - len(tally.expected)}")
        self.say(f"  lost:                      {lost}")
        return lost == 0


def run_demo(data_dir: Path | None) -> int:
    folder = data_dir or Path(tempfile.mkdtemp(prefix="mashang-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    demo = Demo(folder)
    print("码上 Mashang Edge demo: every part is a real process on this machine\n")
    print(f"1. Starting (files in {folder})")
    try:
        demo.start()
        demo.help_call()
        demo.more_presses()
        demo.scans()
        demo.outage()
        ok = demo.summary()
    finally:
        demo.stop()
        if data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    print("\nNothing lost." if ok else "\nEVENTS WERE LOST.")
    return 0 if ok else 1


def add_parser(subparsers: argparse._SubParsersAction, name: str = "demo") -> None:
    demo = subparsers.add_parser(name, help="the whole loop on this machine, with a report")
    demo.add_argument("--data-dir", type=Path, default=None)
    demo.set_defaults(func=lambda args: run_demo(args.data_dir))
