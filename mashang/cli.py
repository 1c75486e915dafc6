"""The `mashang` command: one entry point, a subcommand per role, each loaded only when run.

`mashang gateway` imports the gateway and nothing of the central (tests/test_layout.py checks
it): on a Raspberry Pi every module loaded is memory kept, and the central's issuing module is
the one that holds private keys.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

# command → (module that adds its parser with `add_parser(subparsers, name)`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "gateway": ("edge.cli", "run the edge gateway in the foreground"),
    "outbox": ("edge.cli", "show the outbox: depth per class, oldest, dead letters"),
    "doctor": ("edge.cli",
               "check broker, central, key, clock, disk and registry; say how to fix"),
    "install": ("edge.tools.install",
                "set this machine up as a gateway (root): user, folders, key, broker, systemd"),
    "device": ("edge.tools.devices",
               "a device's broker account and ACL block, and its place in the registry"),
    "central": ("cloud_bridge.cli", "run the reference central endpoint"),
    "codes": ("cloud_bridge.issuing.cli", "signing keys and placard/household codes"),
    "registry": ("cloud_bridge.registry.admin", "the central's registry: import, export, keys"),
    "butler": ("cloud_bridge.console.butler_admin", "butlers' console accounts"),
    "report": ("cloud_bridge.report.cli",
               "a month's readiness report: calls, drills, response times, faults (PDF, charts)"),
    "drill": ("cloud_bridge.drills.cli",
              "schedule a drill press for a button (演练), list or cancel drills"),
    "office": ("cloud_bridge.console.butler_admin", "street office accounts (its view: /office/)"),
    "visits": ("cloud_bridge.visits.cli",
               "a month's visits per butler: residents living alone, last visit, visits"),
    "simulate": ("devices.simulators.run",
                 "simulated devices over MQTT, or a fleet of gateways against a central"),
    "demo": ("lab.demo", "the whole loop on this machine, with a report (from a clone)"),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser with every command listed, and only `command`'s own arguments loaded."""
    parser = argparse.ArgumentParser(prog="mashang", description="Mashang Edge (码上)")
    parser.add_argument(
        "--log-level", default=None, choices=["debug", "info", "warning", "error"],
        help="default info; a gateway config's [logging] level wins (SIGHUP rereads it)",
    )
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"],
        help="text for people (default), json for one JSON object per line",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        if name == command:
            importlib.import_module(module).add_parser(sub, name)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The first word that names a command (options and their values come before it)."""
    return next((word for word in argv if word in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = chosen_command(words)
    try:
        parser = build_parser(command)
    except ModuleNotFoundError as exc:
        hint = "; the demo runs from a clone of the project: ./scripts/demo" * (command == "demo")
        print(f"mashang {command}: not available in this installation ({exc.name} is missing"
              f"{hint})", file=sys.stderr)
        return 2
    args = parser.parse_args(words)
    from mashang.logs import configure

    configure(args.log_level, args.log_format)
    from mashang.config import ConfigError, Unavailable

    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"mashang: configuration error: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"mashang {command}: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
