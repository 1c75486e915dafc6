"""`mashang report --month 2026-11 --config CENTRAL.toml [--out DIR]`: the readiness report of a
month, read from the central's database (it may run meanwhile). Prints a short table; with
--out, writes report.pdf, one PNG per chart and report.json (the figures) into DIR."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloud_bridge.config import CentralConfig
    from cloud_bridge.report.figures import Month, Report


def add_month_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """A command on a month of the central's database (this one, `mashang visits`)."""
    parser = subparsers.add_parser(
        name, help=summary,
        description="Months are in the community's time zone (central.time_zone).")
    parser.add_argument("--month", required=True, help="YYYY-MM, e.g. 2026-11")
    parser.add_argument("--config", type=Path, required=True, help="the central's TOML")
    return parser


def central_month(config: CentralConfig, text: str) -> Month:
    """The month asked for, once there is a database of the central's to read it from;
    ReportError otherwise."""
    from cloud_bridge.report.figures import Month, ReportError

    month = Month.parse(text, config.central.zone)
    # Only SQLite's is a file here; a PostgreSQL database shows it has run by its tables.
    if config.central.database is None and not config.database_path.exists():
        raise ReportError(f"no database at {config.database_path}: has the central run?")
    return month


def add_parser(subparsers: argparse._SubParsersAction, name: str = "report") -> None:
    report = add_month_parser(
        subparsers, name, "a month's readiness report: calls, drills, response times, faults")
    report.add_argument("--out", type=Path, help="write report.pdf, the charts and report.json")
    report.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # Imported when run: every `mashang` command registers this parser, and matplotlib is the
    # central's alone.
    from cloud_bridge.config import CentralConfig
    from cloud_bridge.receiver.engines import open_database
    from cloud_bridge.registry.table import RegistryTable
    from cloud_bridge.report.figures import ReportError, gather
    from mashang.config import load_config

    config = load_config(args.config, CentralConfig)
    try:
        month = central_month(config, args.month)
        db = open_database(config)
        try:
            if not db.version("alerts"):
                raise ReportError("the central has not made its alert tables yet")
            report = gather(db, RegistryTable(db, config.registry_path).load(), month,
                            now=time.time())
        finally:
            db.close()
        if args.out is not None:
            _write(report, args.out)
    except (ReportError, OSError) as error:
        print(f"mashang report: error: {error}", file=sys.stderr)
        return 1
    _print(report)
    if args.out is not None:
        print(f"written: {args.out / 'report.pdf'}, {args.out / 'report.json'} and the charts")
    return 0


def _write(report: Report, folder: Path) -> None:
    from cloud_bridge.report.charts import charts_for, png
    from cloud_bridge.report.pdf import render

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.pdf").write_bytes(render(report))
    for name in charts_for(report):
        (folder / f"{name}.png").write_bytes(png(report, name))
    (folder / "report.json").write_text(
        json.dumps(report.as_dict(), ensure_ascii=False, indent=2), encoding="utf-8")


def _print(report: Report) -> None:
    from cloud_bridge.report.table import HEADER, rows, stall_rows

    print(f"{report.month} ({report.time_zone}); times m:ss from the press")
    columns = HEADER[:9]  # the short table: calls, times, escalations, unacknowledged, drills
    for title, groups in (("building", report.buildings), ("butler", report.butlers)):
        print(f"\nper {title}")
        print("\t".join(columns))
        for line in rows(groups):
            print("\t".join(line[:len(columns)]))
    if report.stalls:
        print("\nstall violations by zone")
        for line in stall_rows(report):
            print("\t".join(line))
