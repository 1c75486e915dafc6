"""`mashang visits --month 2026-11 --config CENTRAL.toml [--butler ID] [--json]`: the month's
visit list per butler (visits/month.py), read from the central's database (it may run
meanwhile), as the console's 探访 tab shows it."""

from __future__ import annotations

import argparse
import json
import sys
import time

from cloud_bridge.report.cli import add_month_parser, central_month


def add_parser(subparsers: argparse._SubParsersAction, name: str = "visits") -> None:
    visits = add_month_parser(
        subparsers, name,
        "a month's visits per butler: residents living alone, last visit, visits")
    visits.add_argument("--butler", help="one butler's list (a butler id); default every one")
    visits.add_argument("--json", action="store_true", help="the console API's JSON instead")
    visits.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from cloud_bridge.config import CentralConfig
    from cloud_bridge.receiver.engines import open_database
    from cloud_bridge.registry.table import central_registry
    from cloud_bridge.report.figures import ReportError
    from cloud_bridge.visits.month import as_dict, lines, month_lists
    from mashang.config import load_config

    config = load_config(args.config, CentralConfig)
    try:
        month = central_month(config, args.month)
    except ReportError as error:
        print(f"mashang visits: error: {error}", file=sys.stderr)
        return 1
    registry = central_registry(config)
    if args.butler is not None and registry.butler(args.butler) is None:
        print(f"mashang visits: error: no butler {args.butler!r} in the registry",
              file=sys.stderr)
        return 1
    db = open_database(config)
    try:
        lists = month_lists(db, registry, month, time.time(), args.butler)
    finally:
        db.close()
    if args.json:
        print(json.dumps(as_dict(month, lists), ensure_ascii=False, indent=2))
    else:
        print("\n".join(lines(month, lists)))
    return 0
