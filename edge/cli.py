"""The gateway's commands: `mashang gateway`, `mashang outbox` and `mashang doctor`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.config import load_config
from mashang.cli import COMMANDS


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str
) -> None:
    """`name` is one of the gateway's commands; its one-line help is mashang.cli's."""
    parser = subparsers.add_parser(name, help=COMMANDS[name][1])
    parser.add_argument("--config", type=Path, required=True, help="the gateway's TOML file")
    if name == "doctor":
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
    elif name == "outbox":
        parser.add_argument("--show", type=int, default=20, help="dead letters to list")
    parser.set_defaults(func={"gateway": cmd_gateway, "doctor": cmd_doctor,
                              "outbox": cmd_outbox}[name])


def cmd_gateway(args: argparse.Namespace) -> int:
    from edge.gateway import run_gateway
    from edge.instance import CannotStart
    from mashang.logs import set_level

    config = load_config(args.config)
    if config.logging.level:  # the config file's level wins: it is the one SIGHUP rereads
        set_level(config.logging.level)
    try:
        return run_gateway(config, args.config, args.log_level)
    except CannotStart as exc:
        # Exit 2, like a configuration error: systemd's RestartPreventExitStatus=2 does not
        # start a gateway again and again into the same refusal.
        print(f"mashang gateway: cannot start: {exc}", file=sys.stderr)
        return 2


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge.tools.doctor import run_doctor

    return run_doctor(args.config, timeout=args.timeout)


def cmd_outbox(args: argparse.Namespace) -> int:
    from edge.tools.outbox_report import print_outbox

    return print_outbox(load_config(args.config), show=args.show)
