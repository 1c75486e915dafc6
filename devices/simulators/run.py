"""`mashang simulate buttons|scanners`: many devices over MQTT, a steady rate, for a set time;
`mashang simulate fleet`: many gateways against a central over HTTP (devices.simulators.fleet,
loaded only for that command: it needs aiohttp)."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devices.simulators.buttons import SimulatedButton
from devices.simulators.device import SimulatedDevice
from devices.simulators.scanners import SimulatedScanner

SAMPLE_CODES = [
    "HTTPS://M.DDP.CN/S/NOTAVALIDTOKEN",
    "https://example.com/not-one-of-ours",
    "hello",
]


def run_devices(
    devices: list[SimulatedDevice],
    act: Callable[[SimulatedDevice], None],
    *,
    rate: float,
    duration: float,
) -> int:
    """Each tick one random device acts; returns how many messages were published."""
    for device in devices:
        device.start()
    published = 0
    interval = 1.0 / rate
    deadline = time.monotonic() + duration
    next_at = time.monotonic()
    try:
        while time.monotonic() < deadline:
            act(random.choice(devices))
            published += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        for device in devices:
            device.stop()
    return published


def simulate_buttons(count: int, rate: float, duration: float, **connection) -> int:
    buttons = [SimulatedButton(f"btn-{n:04d}", **connection) for n in range(1, count + 1)]

    def press(button: SimulatedDevice) -> None:
        assert isinstance(button, SimulatedButton)
        button.press("long" if random.random() < 0.1 else "single")

    return run_devices(buttons, press, rate=rate, duration=duration)


def simulate_scanners(
    count: int, rate: float, duration: float, codes: list[str], **connection
) -> int:
    scanners = [SimulatedScanner(f"scan-{n:03d}", **connection) for n in range(1, count + 1)]

    def scan(scanner: SimulatedDevice) -> None:
        assert isinstance(scanner, SimulatedScanner)
        scanner.scan(random.choice(codes or SAMPLE_CODES), random.choice(["checkin", "inspect"]))

    return run_devices(scanners, scan, rate=rate, duration=duration)


def add_parser(subparsers: argparse._SubParsersAction, name: str = "simulate") -> None:
    simulate = subparsers.add_parser(
        name, help="simulated devices over MQTT, or a fleet of gateways against a central")
    kinds = simulate.add_subparsers(dest="what", required=True, metavar="WHAT")
    for what in ("buttons", "scanners"):
        devices = kinds.add_parser(what, help=f"simulated {what} publishing over MQTT")
        devices.add_argument("--count", type=int, default=10)
        devices.add_argument(
            "--rate", type=float, default=2.0, help="messages per second, all devices"
        )
        devices.add_argument("--duration", type=float, default=10.0, help="seconds")
        devices.add_argument("--host", default="127.0.0.1")
        devices.add_argument("--port", type=int, default=1883)
        devices.add_argument("--root", default="mashang/v1")
        devices.add_argument("--code", action="append", default=[],
                             help="scanned text (repeatable)")
        devices.set_defaults(func=cmd_simulate)
    add_fleet_parser(kinds)


def add_fleet_parser(kinds: argparse._SubParsersAction) -> None:
    fleet = kinds.add_parser(
        "fleet", help="many gateways posting signed batches and long-polling a central",
        description="Drives a central as that many gateways would, from one process, for a set "
        "time, and reports events/s accepted, duplicates, errors and press latencies. Gateway N "
        "(from 1) is PREFIX-NNNN, its key hex HMAC-SHA256(SECRET, its id): --write-gateways "
        "writes the central's [gateways] table for them.")
    fleet.add_argument("--central", help="the central's URL (http://host:port)")
    fleet.add_argument("--gateways", type=int, default=10)
    fleet.add_argument("--devices", type=int, default=50, help="buttons per gateway")
    fleet.add_argument("--seconds", type=float, default=10.0, help="how long the fleet runs")
    fleet.add_argument("--heartbeat-every", type=float, default=300.0,
                       help="seconds between one button's heartbeats (default 300)")
    fleet.add_argument("--presses", type=float, default=1.0,
                       help="presses per second, the whole fleet (each a new alert)")
    fleet.add_argument("--scans", type=float, default=2.0, help="scans per second, the whole fleet")
    fleet.add_argument("--linger", type=float, default=0.5,
                       help="seconds a gateway gathers logs into a batch (outbox.log_linger)")
    fleet.add_argument("--batch", type=int, default=500,
                       help="events per log batch at most (outbox.log_batch_size)")
    fleet.add_argument("--poll-wait", type=int, default=25, help="long-poll wait, seconds")
    fleet.add_argument("--drain", type=float, default=20.0,
                       help="seconds after the run to deliver what is still waiting")
    # The defaults are devices.simulators.fleet's PREFIX and SECRET, not imported: that module
    # loads aiohttp, which `simulate buttons` does without.
    fleet.add_argument("--prefix", default="fleet", help="gateway ids: PREFIX-0001, ...")
    fleet.add_argument("--secret", default="mashang-fleet", help="what the keys derive from")
    fleet.add_argument("--write-gateways", metavar="FILE",
                       help="write the central's [gateways] table for this fleet and stop")
    fleet.add_argument("--console", metavar="ACCOUNT",
                       help="follow this console account's live stream for press -> console "
                       "(its password: the first line of standard input)")
    fleet.add_argument("--json", action="store_true", help="print the result as one JSON object")
    fleet.set_defaults(func=cmd_fleet)


def cmd_simulate(args: argparse.Namespace) -> int:
    connection = {"host": args.host, "port": args.port, "root": args.root}
    if args.what == "buttons":
        sent = simulate_buttons(args.count, args.rate, args.duration, **connection)
    else:
        sent = simulate_scanners(args.count, args.rate, args.duration, args.code, **connection)
    print(f"published {sent} {args.what} messages")
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    from devices.simulators import fleet  # aiohttp: only for this command

    if args.write_gateways:
        table = fleet.gateways_table(args.prefix, args.gateways, args.secret)
        Path(args.write_gateways).write_text(table, encoding="utf-8")
        print(f"wrote [gateways] for {args.gateways} gateways to {args.write_gateways}")
        return 0
    if not args.central:
        print("mashang simulate fleet: --central URL is needed (or --write-gateways FILE)",
              file=sys.stderr)
        return 2
    console = (args.console, sys.stdin.readline().rstrip("\n")) if args.console else None
    plan = fleet.FleetPlan(
        central=args.central, gateways=args.gateways, devices=args.devices,
        seconds=args.seconds, heartbeat_every=args.heartbeat_every, presses=args.presses,
        scans=args.scans, linger=args.linger, batch=args.batch, poll_wait=args.poll_wait,
        drain=args.drain, prefix=args.prefix, secret=args.secret, console=console,
    )
    result = fleet.run_fleet(plan)
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(fleet.report_lines(result)))
    return 0
