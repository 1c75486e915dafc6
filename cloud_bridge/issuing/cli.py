"""``mashang codes``: make signing keys and issue printable placards."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from cloud_bridge.issuing.keys import (
    DEFAULT_BASE,
    DEFAULT_GENERATION,
    DEFAULT_VALID_DAYS,
    KEYRING_FILE,
    IssueRequest,
    IssuingError,
    issue,
    keygen,
    load_signing_key,
    make_request,
    requests_from_csv,
    write_manifest,
)
from mashang.codes import Kind

_STALL_ONLY = ("name", "zone", "hours", "number")


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
    stall = kinds.add_parser("stall", help="stall placards (流动摊位管理码)")
    _add_issue_arguments(stall)
    stall.add_argument("--name", default="", help="stall name, printed")
    stall.add_argument("--zone", default="", help="zone the stall is licensed for, printed")
    stall.add_argument("--hours", default="", help="licensed hours, e.g. 17:00-23:30")
    stall.add_argument("--number", default="", help="stall number, printed")
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
        # Font, key, every request and every placard are checked before the first file is
        # written, so a mistake on row 900 of a CSV does not leave 899 placards behind.
        writer = PlacardWriter()
        key = load_signing_key(args.key_dir, args.key_id)
        requests = _requests(args)
        today = datetime.date.today()
        mask = BULK_MASK if args.csv else None
        codes = [issue(key, request, base=args.base, today=today) for request in requests]
        writer.write_all(codes, args.out, mask=mask)
        manifest = write_manifest(args.out, codes)
    except (IssuingError, PlacardError, OSError) as error:
        return _fail(error)
    if args.csv is None:
        print(codes[0].url)
    print(
        f"issued {len(codes)} {args.kind} code(s) with key {key.key_id} into {args.out} "
        f"(SVG, PNG, PDF); recorded in {manifest}"
    )
    return 0


def _requests(args: argparse.Namespace) -> list[IssueRequest]:
    kind: Kind = args.kind
    if args.csv is None:
        details = {field: getattr(args, field, "") for field in _STALL_ONLY}
        return [
            make_request(kind, args.id, generation=args.generation, valid_days=args.days, **details)
        ]
    given = [f"--{field}" for field in _STALL_ONLY if getattr(args, field, "")]
    if given:
        raise IssuingError(f"{', '.join(given)}: with --csv these come from the CSV's columns")
    return requests_from_csv(args.csv, kind, generation=args.generation, valid_days=args.days)


def _fail(error: Exception) -> int:
    print(f"mashang codes: error: {error}", file=sys.stderr)
    return 1
