"""The `mashang` command: one entry point, a subcommand per role."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cloud_bridge.butler_admin import add_butler_parser
from cloud_bridge.codes_cli import add_codes_parser
from cloud_bridge.registry_admin import add_registry_parser
from edge.config import ConfigError, GatewayConfig, load_config


def setup_logging(level: str | None, fmt: str = "text") -> None:
    from edge.logs import configure

    configure(level, fmt)


def cmd_gateway(args: argparse.Namespace) -> int:
    from edge.gateway import run_gateway
    from edge.logs import set_level

    config = load_config(args.config, GatewayConfig)
    if config.logging.level:  # the config file's level wins: it is the one SIGHUP rereads
        set_level(config.logging.level)
    return run_gateway(config, args.config, args.log_level)


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge.doctor import run_doctor

    return run_doctor(args.config, timeout=args.timeout)


def cmd_central(args: argparse.Namespace) -> int:
    from cloud_bridge.central import run_central
    from cloud_bridge.config import CentralConfig

    return run_central(load_config(args.config, CentralConfig))


def cmd_outbox(args: argparse.Namespace) -> int:
    from edge.gateway import OUTBOX_FILE
    from edge.outbox import Outbox

    config = load_config(args.config, GatewayConfig)
    path = config.gateway.data_dir / OUTBOX_FILE
    if not path.exists():
        print(f"no outbox at {path} yet")
        return 0
    outbox = Outbox(path, max_bytes=config.outbox.max_bytes, log_ttl=config.outbox.log_ttl)
    try:
        stats = outbox.stats()
        print(f"outbox {path}: {stats.used_bytes:,} bytes used of a {stats.max_bytes:,} byte cap")
        for name, depth in (("alerts", stats.alerts), ("logs", stats.logs)):
            age = "-" if depth.oldest_age is None else f"{depth.oldest_age:.1f} s"
            print(f"  {name:<7} {depth.events:>9,} events  oldest {age}")
        print(f"  dead letters: {stats.dead_letters}")
        for letter in outbox.dead_letters(limit=args.show):
            print(f"    {letter.id}  HTTP {letter.status}  {letter.reason[:120]}")
    finally:
        outbox.close()
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from devices.simulators import run

    connection = {"host": args.host, "port": args.port, "root": args.root}
    if args.what == "buttons":
        sent = run.simulate_buttons(args.count, args.rate, args.duration, **connection)
    else:
        sent = run.simulate_scanners(args.count, args.rate, args.duration, args.code, **connection)
    print(f"published {sent} {args.what} messages")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from devices.demo import run_demo

    return run_demo(args.data_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mashang", description="Mashang Edge (码上) gateway")
    parser.add_argument(
        "--log-level", default=None, choices=["debug", "info", "warning", "error"],
        help="default info; a gateway config's [logging] level wins (SIGHUP rereads it)",
    )
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"],
        help="text for people (default), json for one JSON object per line",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gateway = sub.add_parser("gateway", help="run the edge gateway in the foreground")
    gateway.add_argument("--config", type=Path, required=True)
    gateway.set_defaults(func=cmd_gateway)

    central = sub.add_parser("central", help="run the reference central endpoint")
    central.add_argument("--config", type=Path, required=True)
    central.set_defaults(func=cmd_central)

    doctor = sub.add_parser(
        "doctor", help="check broker, central, key, clock, disk and registry; say how to fix"
    )
    doctor.add_argument("--config", type=Path, required=True)
    doctor.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
    doctor.set_defaults(func=cmd_doctor)

    outbox = sub.add_parser("outbox", help="show the outbox: depth per class, oldest, dead letters")
    outbox.add_argument("--config", type=Path, required=True)
    outbox.add_argument("--show", type=int, default=20, help="dead letters to list")
    outbox.set_defaults(func=cmd_outbox)

    simulate = sub.add_parser("simulate", help="simulated devices publishing over MQTT")
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

    add_codes_parser(sub)
    add_registry_parser(sub)
    add_butler_parser(sub)

    demo = sub.add_parser("demo", help="the whole loop on this machine, with a report")
    demo.add_argument("--data-dir", type=Path, default=None)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"mashang: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
