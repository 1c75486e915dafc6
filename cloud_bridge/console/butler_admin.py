"""``mashang butler passwd``: set a console password for a butler or the duty contact.

The account is a butler's registry id, or `duty` for the community duty contact (who sees every
alert). Works while the central runs (same SQLite file); the account's earlier sessions end.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from cloud_bridge.config import CentralConfig
from cloud_bridge.console.accounts import DUTY_ACCOUNT, MIN_PASSWORD, AccountStore
from cloud_bridge.receiver.store import Database
from cloud_bridge.registry.file import RegistryFile
from mashang.config import load_config


def add_parser(subparsers: argparse._SubParsersAction, name: str = "butler") -> None:
    butler = subparsers.add_parser(name, help="butlers' console accounts")
    actions = butler.add_subparsers(dest="butler_command", required=True, metavar="COMMAND")
    passwd = actions.add_parser(
        "passwd", help=f"set the console password of a butler (registry id) or {DUTY_ACCOUNT!r}"
    )
    passwd.add_argument("account", help=f"a butler id from the registry, or {DUTY_ACCOUNT!r}")
    passwd.add_argument("--config", type=Path, required=True, help="the central's TOML")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    passwd.set_defaults(func=_run_passwd)


def _run_passwd(args: argparse.Namespace) -> int:
    config = load_config(args.config, CentralConfig)
    registry = RegistryFile(config.registry_path).load()
    if args.account != DUTY_ACCOUNT and registry.butler(args.account) is None:
        print(f"mashang butler passwd: no butler {args.account!r} in the registry", file=sys.stderr)
        return 1
    password = _read_password(args.password_stdin)
    if password is None:
        return 1
    db = Database(config.database_path)
    try:
        AccountStore(db).set_password(args.account, password)
    finally:
        db.close()
    print(f"password set for {args.account}")
    return 0


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != password:
            print("mashang butler passwd: the two passwords differ", file=sys.stderr)
            return None
    if len(password) < MIN_PASSWORD:
        print(f"mashang butler passwd: at least {MIN_PASSWORD} characters", file=sys.stderr)
        return None
    return password
