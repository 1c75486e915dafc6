"""The gateway's commands: `mashang gateway`, `mashang outbox` and `mashang doctor`."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.config import load_config


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    if name == "gateway":
        gateway = subparsers.add_parser(name, help="run the edge gateway in the foreground")
        gateway.add_argument("--config", type=Path, required=True)
        gateway.set_defaults(func=cmd_gateway)
    elif name == "doctor":
        doctor = subparsers.add_parser(
            name, help="check broker, central, key, clock, disk and registry; say how to fix"
        )
        doctor.add_argument("--config", type=Path, required=True)
        doctor.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
        doctor.set_defaults(func=cmd_doctor)
    elif name == "outbox":
        outbox = subparsers.add_parser(
            name, help="show the outbox: depth per class, oldest, dead letters"
        )
        outbox.add_argument("--config", type=Path, required=True)
        outbox.add_argument("--show", type=int, default=20, help="dead letters to list")
        outbox.set_defaults(func=cmd_outbox)


def cmd_gateway(args: argparse.Namespace) -> int:
    from edge.gateway import run_gateway
    from mashang.logs import set_level

    config = load_config(args.config)
    if config.logging.level:  # the config file's level wins: it is the one SIGHUP rereads
        set_level(config.logging.level)
    return run_gateway(config, args.config, args.log_level)


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge.tools.doctor import run_doctor

    return run_doctor(args.config, timeout=args.timeout)


def cmd_outbox(args: argparse.Namespace) -> int:
    from edge.tools.outbox_report import print_outbox

    return print_outbox(load_config(args.config), show=args.show)
