"""`mashang central --config FILE`: the reference central endpoint, in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    central = subparsers.add_parser(
        name, help="run the reference central endpoint",
        description="Needs: its TOML (the gateways' keys, the admin token), its database "
                    "(central.database on PostgreSQL, else an SQLite file in the writable "
                    "central.data_dir) and its listen address. /metrics is open unless "
                    "central.metrics_token is set.")
    central.add_argument(
        "action", nargs="?", choices=["serve", "command-key", "migrate"], default="serve",
        help="serve (the default; it migrates the database first too); command-key: print the "
             "public key of the central's command signing key (made if there is none yet), for "
             "the gateways' central.command_key; migrate: bring the database's schema to this "
             "release and print each part's version, without serving")
    central.add_argument("--config", type=Path, required=True)
    central.set_defaults(func=cmd_central)


def cmd_central(args: argparse.Namespace) -> int:
    from cloud_bridge.config import CentralConfig
    from mashang.config import load_config

    config = load_config(args.config, CentralConfig)
    action = args.action
    if action == "command-key":
        from cloud_bridge.commands.signing import command_signing_key
        from cloud_bridge.receiver.engines import open_database
        from mashang.signing import public_key_text

        db = open_database(config)
        try:
            print(public_key_text(command_signing_key(config, db).public_key()))
        finally:
            db.close()
        return 0
    if action == "migrate":
        from cloud_bridge.receiver.app import migrate_central

        for component, version in sorted(migrate_central(config).items()):
            print(f"{component} {version}")
        return 0
    from cloud_bridge.receiver.app import run_central

    return run_central(config)
