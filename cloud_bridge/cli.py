"""`mashang central --config FILE`: the reference central endpoint, in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    central = subparsers.add_parser(
        name, help="run the reference central endpoint",
        description="Needs: its TOML (the gateways' keys, the admin token), write access to "
                    "central.data_dir (its SQLite file and registry.json) and its listen "
                    "address. /metrics is open unless central.metrics_token is set.")
    central.add_argument(
        "action", nargs="?", choices=["serve", "command-key"], default="serve",
        help="serve (the default); command-key: print the public key of the central's command "
             "signing key (made if there is none yet), for the gateways' central.command_key")
    central.add_argument("--config", type=Path, required=True)
    central.set_defaults(func=cmd_central)


def cmd_central(args: argparse.Namespace) -> int:
    from cloud_bridge.config import CentralConfig
    from mashang.config import load_config

    config = load_config(args.config, CentralConfig)
    if args.action == "command-key":
        from cloud_bridge.commands.signing import command_signing_key
        from mashang.signing import public_key_text

        print(public_key_text(command_signing_key(config).public_key()))
        return 0
    from cloud_bridge.receiver.app import run_central

    return run_central(config)
