"""The gateway's commands: `mashang gateway`, `mashang outbox` and `mashang doctor`.

Each command asks only for what it uses: the central's key is needed by the commands that
sign requests (`gateway`, and the doctor's central check, which reports a missing key as a
finding); `outbox` and the doctor's local checks run without it. Each `--help` says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.config import CENTRAL_KEY_ENV, load_config
from mashang.cli import COMMANDS

# What each command needs, for its --help.
NEEDS = {
    "gateway": (
        "Needs: the config file; the central's key (central.key, or the environment variable "
        f"{CENTRAL_KEY_ENV}, as systemd sets it from /etc/mashang/gateway.env); the broker "
        "account in [mqtt]; write access to gateway.data_dir. Without the key it exits 2 "
        "before touching anything."
    ),
    "outbox": (
        "Needs: the config file and read access to gateway.data_dir (run it as the gateway's "
        "user: sudo -u mashang). Not the central's key, not the broker, not the network."
    ),
    "doctor": (
        "Needs: the config file. The local checks (config, data dir, disk, outbox, registry, "
        "public keys) need nothing else; the broker check uses the [mqtt] account; the "
        f"central check signs a request and so needs the central's key ({CENTRAL_KEY_ENV} or "
        "central.key): without it, that check reports the missing key as a finding and the "
        "others still run."
    ),
}


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str
) -> None:
    """`name` is one of the gateway's commands; its one-line help is mashang.cli's."""
    parser = subparsers.add_parser(name, help=COMMANDS[name][1], description=NEEDS[name])
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
    # The one command that signs every request: a gateway that cannot must not start, and
    # must say so before it creates anything (ConfigError: exit 2, naming both ways).
    config.central_key()
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
