"""`mashang drill`: schedule a drill press for a button, list the drills, cancel one.

Writes to the central's database (the running central fires the drill when due; it looks
for new ones every few seconds). Times are the community's (central.time_zone)."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction, name: str = "drill") -> None:
    drill = subparsers.add_parser(
        name, help="schedule a drill press for a button (演练), list or cancel drills")
    what = drill.add_mutually_exclusive_group(required=True)
    what.add_argument("--button", help="the button's device id, e.g. btn-0007")
    what.add_argument("--list", action="store_true", help="the drills to come, then the latest")
    what.add_argument("--cancel", metavar="ID", help="cancel a drill still to come")
    drill.add_argument("--at", help="'YYYY-MM-DD HH:MM' in community time (default: now)")
    drill.add_argument("--note", help="why, for the history (at most 200 characters)")
    drill.add_argument("--config", type=Path, required=True, help="the central's TOML")
    drill.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from cloud_bridge.config import CentralConfig
    from cloud_bridge.drills.schedule import DrillError, DrillSchedule, iso, parse_time
    from cloud_bridge.receiver.engines import open_database
    from cloud_bridge.registry.source import RegistrySource
    from mashang.config import load_config

    config = load_config(args.config, CentralConfig)
    zone = config.central.zone
    db = open_database(config)
    try:
        drills = DrillSchedule(db, RegistrySource(db, config.registry_path), zone)
        if args.list:
            for drill in drills.listing():
                print(f"{drill.id}\t{drill.device_id}\t{iso(drill.due_at, zone)}\t{drill.state}")
            return 0
        if args.cancel:
            if not drills.cancel(args.cancel):
                print(f"mashang drill: no drill {args.cancel!r} still to come", file=sys.stderr)
                return 1
            print(f"cancelled {args.cancel}")
            return 0
        due_at = time.time() if args.at is None else parse_time(args.at, zone)
        drill = drills.schedule(args.button, due_at, f"cli:{getpass.getuser()}", args.note)
    except DrillError as error:
        print(f"mashang drill: error: {error}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(f"drill {drill.id}: {drill.device_id} pressed at {iso(drill.due_at, zone)} "
          "(演练; the running central fires it)")
    return 0
