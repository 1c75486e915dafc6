"""``mashang butler passwd|disable|enable``: the console accounts of butlers and the duty contact;
``mashang office passwd|disable|enable``: the street office's accounts (its view at /office/).

A butler's account is their registry id, or `duty` for the community duty contact (who sees
every alert). A street office account is a name of the office's choosing (`inspection`,
`zhang.wei`), never a butler's id or `duty`: it sees the stalls' violations and residents'
reports, and nothing of the residents. `passwd` sets a password (creating the account);
`disable` shuts an account out until `enable`. All work while the central runs (same SQLite
file): after `passwd` or `disable` the account's earlier sessions end, its open live streams
within seconds.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from pathlib import Path

from cloud_bridge.config import CentralConfig
from cloud_bridge.console.accounts import (
    BUTLER,
    DUTY_ACCOUNT,
    MIN_PASSWORD,
    STREET_OFFICE,
    AccountStore,
)
from cloud_bridge.receiver.engines import open_database
from cloud_bridge.registry.table import central_registry
from mashang.config import load_config
from mashang.registry import Registry

# The account each command names, by command: `mashang butler …` and `mashang office …`.
WHOSE = {
    "butler": f"a butler id from the registry, or {DUTY_ACCOUNT!r}",
    "office": "a street office account (letters, digits, . _ -), not a butler's id",
}
OFFICE_ACCOUNT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def add_parser(subparsers: argparse._SubParsersAction, name: str = "butler") -> None:
    office = name == "office"
    commands = subparsers.add_parser(
        name, help="street office accounts" if office else "butlers' console accounts"
    )
    actions = commands.add_subparsers(dest="butler_command", required=True, metavar="COMMAND")
    commands.set_defaults(command_name=name, kind=STREET_OFFICE if office else BUTLER)
    passwd = _account_parser(actions, "passwd", f"set the password of {WHOSE[name]}", name)
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    passwd.set_defaults(func=_run_passwd)
    for action, disabled, what in (
        ("disable", True, "end an account's sessions and refuse its logins"),
        ("enable", False, "let a disabled account log in again"),
    ):
        switch = _account_parser(actions, action, what, name)
        switch.set_defaults(func=_run_switch, disabled=disabled, action=action)


def _account_parser(
    actions: argparse._SubParsersAction, action: str, what: str, name: str
) -> argparse.ArgumentParser:
    parser = actions.add_parser(action, help=what)
    parser.add_argument("account", help=WHOSE[name])
    parser.add_argument("--config", type=Path, required=True, help="the central's TOML")
    return parser


def _refusal(args: argparse.Namespace, registry: Registry) -> str | None:
    """Why this account may not have a password of this command's kind, or None."""
    account = args.account
    if args.kind == BUTLER:
        if account != DUTY_ACCOUNT and registry.butler(account) is None:
            return f"no butler {account!r} in the registry"
        return None
    if not OFFICE_ACCOUNT.match(account):
        return f"{account!r}: 1-64 letters, digits, . _ or -"
    if account == DUTY_ACCOUNT or registry.butler(account) is not None:
        return f"{account!r} is a butler's account, not the street office's"
    return None


def _run_passwd(args: argparse.Namespace) -> int:
    config = load_config(args.config, CentralConfig)
    registry = central_registry(config)
    refusal = _refusal(args, registry)
    if refusal is not None:
        print(f"mashang {args.command_name} passwd: {refusal}", file=sys.stderr)
        return 1
    password = _read_password(args.password_stdin, args.command_name)
    if password is None:
        return 1
    db = open_database(config)
    try:
        done = AccountStore(db).set_password(args.account, password, args.kind)
    finally:
        db.close()
    if not done:
        other = "`mashang butler`" if args.kind == STREET_OFFICE else "`mashang office`"
        print(
            f"mashang {args.command_name} passwd: {args.account!r} is an account of"
            f" {other}: choose another name",
            file=sys.stderr,
        )
        return 1
    print(f"password set for {args.account}")
    return 0


def _run_switch(args: argparse.Namespace) -> int:
    config = load_config(args.config, CentralConfig)
    db = open_database(config)
    try:
        accounts = AccountStore(db)
        # Each command switches only accounts of its own kind.
        found = accounts.kind(args.account) == args.kind and accounts.set_disabled(
            args.account, args.disabled
        )
    finally:
        db.close()
    if not found:
        print(
            f"mashang {args.command_name} {args.action}: no console account {args.account!r}"
            f" (`mashang {args.command_name} passwd` makes one)",
            file=sys.stderr,
        )
        return 1
    print(f"{args.account} {args.action}d")
    return 0


def _read_password(from_stdin: bool, command: str) -> str | None:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != password:
            print(f"mashang {command} passwd: the two passwords differ", file=sys.stderr)
            return None
    if len(password) < MIN_PASSWORD:
        print(f"mashang {command} passwd: at least {MIN_PASSWORD} characters", file=sys.stderr)
        return None
    return password
