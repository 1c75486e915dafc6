"""`mashang simulate buttons|scanners`: many devices, a steady rate, for a set time."""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

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
    simulate = subparsers.add_parser(name, help="simulated devices publishing over MQTT")
    simulate.add_argument("what", choices=["buttons", "scanners"])
    simulate.add_argument("--count", type=int, default=10)
    simulate.add_argument(
        "--rate", type=float, default=2.0, help="messages per second, all devices"
    )
    simulate.add_argument("--duration", type=float, default=10.0, help="seconds")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=1883)
    simulate.add_argument("--root", default="mashang/v1")
    simulate.add_argument("--code", action="append", default=[], help="scanned text (repeatable)")
    simulate.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    connection = {"host": args.host, "port": args.port, "root": args.root}
    if args.what == "buttons":
        sent = simulate_buttons(args.count, args.rate, args.duration, **connection)
    else:
        sent = simulate_scanners(args.count, args.rate, args.duration, args.code, **connection)
    print(f"published {sent} {args.what} messages")
    return 0
