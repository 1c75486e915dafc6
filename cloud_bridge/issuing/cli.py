"""``mashang codes``: make signing keys and issue printable placards."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from cloud_bridge.config import CentralConfig
from cloud_bridge.issuing.keys import (
    DEFAULT_BASE,
    DEFAULT_GENERATION,
    DEFAULT_VALID_DAYS,
    KEYRING_FILE,
    STALL_FIELDS,
    DetailsResolver,
    IssueRequest,
    IssuingError,
    check_manifest,
    issue,
    keygen,
    load_signing_key,
    make_request,
    requests_from_csv,
    write_manifest,
)
from cloud_bridge.issuing.registered import StallDetailsSource
from cloud_bridge.registry.table import central_registry
from mashang.codes import Kind
from mashang.config import ConfigError, load_config
from mashang.registry import Registry


def add_parser(subparsers: argparse._SubParsersAction, name: str = "codes") -> None:
    codes = subparsers.add_parser(name, help="signing keys and placard/household codes")
    actions = codes.add_subparsers(dest="codes_command", required=True, metavar="COMMAND")

    keygen_parser = actions.add_parser(
        "keygen", help="create a signing key; a new key id rotates keys, old ones stay valid"
    )
    keygen_parser.add_argument("--dir", type=Path, required=True, help="key directory")
    keygen_parser.add_argument(
        "--key-id", type=int, help="0-255 (default: one more than the highest in --dir)"
    )
    keygen_parser.set_defaults(func=_run_keygen)

    issue_parser = actions.add_parser("issue", help="issue codes and write placards")
    kinds = issue_parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    stall = kinds.add_parser(
        "stall", help="stall placards (流动摊位管理码), printing what the registry says"
    )
    _add_issue_arguments(stall)
    stall.add_argument(
        "--config", type=Path, help="the central's TOML: its registry names the stalls"
    )
    stall.add_argument(
        "--allow-unregistered",
        action="store_true",
        help="also issue stalls the registry does not know (then import issued.csv)",
    )
    stall.add_argument("--name", default="", help="stall name (for a stall not registered)")
    stall.add_argument("--zone", default="", help="zone id or name (for a stall not registered)")
    stall.add_argument("--hours", default="", help="licensed hours, e.g. 17:00-23:30 (idem)")
    stall.add_argument("--number", default="", help="stall number (idem)")
    household = kinds.add_parser("household", help="household codes (一户一码)")
    _add_issue_arguments(household)


def _add_issue_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--id", help="subject id, e.g. S0017")
    source.add_argument(
        "--csv", type=Path, help="bulk: a CSV with an 'id' column (and the stall's columns)"
    )
    parser.add_argument(
        "--generation",
        type=int,
        default=DEFAULT_GENERATION,
        help="bump to revoke the placards issued before (default %(default)s)",
    )
    parser.add_argument(
        "--days", type=int, default=DEFAULT_VALID_DAYS, help="validity (default %(default)s)"
    )
    parser.add_argument("--key-dir", type=Path, required=True, help="directory made by keygen")
    parser.add_argument("--key-id", type=int, help="sign with this key (default: the newest)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the placards")
    parser.add_argument(
        "--base", default=DEFAULT_BASE, help="public base URL of the central (%(default)s)"
    )
    parser.set_defaults(func=_run_issue)


def _run_keygen(args: argparse.Namespace) -> int:
    try:
        key_id = keygen(args.dir, args.key_id)
    except IssuingError as error:
        return _fail(error)
    print(f"key {key_id}: private key {args.dir / f'key-{key_id}.pem'} (never leaves this host)")
    print(f"public keyring {args.dir / KEYRING_FILE}: send it to the gateways with "
          f"`mashang registry keys {args.dir / KEYRING_FILE} --config CENTRAL.toml`")
    return 0


def _run_issue(args: argparse.Namespace) -> int:
    # Imported here, not at the top: every `mashang` command registers this parser, and the
    # gateway on a Raspberry Pi should not carry Pillow in its memory.
    from cloud_bridge.issuing.placards import BULK_MASK, PlacardError, PlacardWriter

    try:
        # Font, key, registry, every request and every placard are checked before the first
        # file is written, so a mistake on row 900 of a CSV does not leave 899 placards behind.
        writer = PlacardWriter()
        key = load_signing_key(args.key_dir, args.key_id)
        check_manifest(args.out)
        source = _stall_source(args) if args.kind == "stall" else None
        requests = _requests(args, source)
        today = datetime.date.today()
        mask = BULK_MASK if args.csv else None
        codes = [issue(key, request, base=args.base, today=today) for request in requests]
        writer.write_all(codes, args.out, mask=mask)
        manifest = write_manifest(args.out, codes)
    except (IssuingError, PlacardError, ConfigError, OSError) as error:
        return _fail(error)
    if args.csv is None:
        print(codes[0].url)
    print(
        f"issued {len(codes)} {args.kind} code(s) with key {key.key_id} into {args.out} "
        f"(PDF, SVG); recorded in {manifest}"
    )
    if source is not None and source.unregistered:
        shown = ", ".join(source.unregistered[:5]) + (", …" if len(source.unregistered) > 5 else "")
        print(
            f"mashang codes: warning: {len(source.unregistered)} stall(s) not in the registry "
            f"({shown}) scan as unknown_stall until `mashang registry import {manifest} "
            "--config CENTRAL.toml`",
            file=sys.stderr,
        )
    return 0


def _stall_source(args: argparse.Namespace) -> StallDetailsSource:
    registry: Registry | None = None
    if args.config is not None:
        try:
            registry = central_registry(load_config(args.config, CentralConfig))
        except ValueError as error:
            raise IssuingError(f"the central's registry is not valid: {error}") from None
    elif not args.allow_unregistered:
        raise IssuingError(
            "stall placards print what the registry says: pass --config CENTRAL.toml, or "
            "--allow-unregistered to issue without checking"
        )
    return StallDetailsSource(registry, allow_unregistered=args.allow_unregistered)


def _requests(args: argparse.Namespace, resolve: DetailsResolver | None) -> list[IssueRequest]:
    kind: Kind = args.kind
    if args.csv is None:
        details = {field: getattr(args, field, "") for field in STALL_FIELDS}
        if resolve is not None:
            details = dict(resolve(args.id.strip(), details))
        return [
            make_request(kind, args.id, generation=args.generation, valid_days=args.days, **details)
        ]
    given = [f"--{field}" for field in STALL_FIELDS if getattr(args, field, "")]
    if given:
        raise IssuingError(f"{', '.join(given)}: with --csv these come from the CSV's columns")
    return requests_from_csv(
        args.csv, kind, generation=args.generation, valid_days=args.days, resolve=resolve
    )


def _fail(error: Exception) -> int:
    print(f"mashang codes: error: {error}", file=sys.stderr)
    return 1
