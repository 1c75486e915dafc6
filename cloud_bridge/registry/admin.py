"""``mashang registry import|keys|export``: the central's registry, kept in its database.

`import FILE` takes a JSON file (a whole registry, replacing the current one) or a CSV file
(one row per button: device_id,name,phone,household,building,room[,primary_butler,
backup_butler], merged into the current registry: rows replace buttons of the same device_id,
a new building is created from its first row, which must then name its primary butler), or
the `issued.csv` that `mashang codes issue` writes (its stalls that the registry lacks are
added). Either way the version goes up by one, in one transaction of the central's database
(`registry.table`). Every running central process on that database notices the new version
within `central.registry_poll` seconds and queues `registry.replace` for every gateway; a
stopped one does so when it starts.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from cloud_bridge.config import CentralConfig
from cloud_bridge.console.accounts import DUTY_ACCOUNT
from cloud_bridge.issuing.keys import MANIFEST_FIELDS
from cloud_bridge.receiver.engines import open_database
from cloud_bridge.registry.table import RegistryTable, central_registry
from mashang.codes import parse_keyring
from mashang.config import describe_errors, load_config
from mashang.registry import Building, Button, Registry, Resident, Stall

CSV_COLUMNS = (
    "device_id",
    "name",
    "phone",
    "household",
    "building",
    "room",
    "primary_butler",
    "backup_butler",
)
REQUIRED_COLUMNS = ("device_id", "name", "building")


class ImportProblem(Exception):
    """A registry file that cannot be imported; the message says where and why."""


def add_parser(subparsers: argparse._SubParsersAction, name: str = "registry") -> None:
    registry = subparsers.add_parser(
        name, help="the central's registry (kept in its database): buttons, residents, buildings, "
             "butlers"
    )
    actions = registry.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")

    importing = actions.add_parser(
        "import",
        help="replace the registry (JSON), or merge buttons (CSV) or issued stalls into it",
    )
    importing.add_argument(
        "file", type=Path, help="a .json registry, a .csv of buttons, or an issued.csv"
    )
    importing.add_argument("--config", type=Path, required=True, help="the central's TOML")
    importing.set_defaults(func=_run_import)

    keys = actions.add_parser(
        "keys", help="put a code keyring (from `mashang codes keygen`) into the registry"
    )
    keys.add_argument("keyring", type=Path, help="keyring.json of the key directory")
    keys.add_argument("--config", type=Path, required=True, help="the central's TOML")
    keys.set_defaults(func=_run_keys)

    exporting = actions.add_parser("export", help="print the registry")
    exporting.add_argument("--config", type=Path, required=True, help="the central's TOML")
    exporting.add_argument("--format", choices=["json", "csv"], default="json")
    exporting.set_defaults(func=_run_export)


def _run_import(args: argparse.Namespace) -> int:
    config = load_config(args.config, CentralConfig)
    try:
        updated = _change(config, lambda current: imported(current, args.file))
    except ImportProblem as exc:
        print(f"mashang registry import: {args.file}: {exc}", file=sys.stderr)
        return 1
    print(
        f"registry version {updated.version}: {len(updated.buttons)} buttons,"
        f" {len(updated.buildings)} buildings, {len(updated.butlers)} butlers,"
        f" {len(updated.stalls)} stalls"
    )
    return 0


def _run_keys(args: argparse.Namespace) -> int:
    """The gateways verify codes with these public keys once the registry reaches them; a
    rotated-out key left out of the keyring makes its codes `unknown_key`."""
    config = load_config(args.config, CentralConfig)
    try:
        keys = parse_keyring(args.keyring.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        print(f"mashang registry keys: {args.keyring}: {exc}", file=sys.stderr)
        return 1
    encoded = {key_id: base64.b64encode(raw).decode("ascii") for key_id, raw in keys.items()}
    updated = _change(config, lambda current: current.model_copy(
        update={"code_keys": encoded, "version": current.version + 1}))
    print(f"registry version {updated.version}: code keys {sorted(keys)}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    config = load_config(args.config, CentralConfig)
    registry = central_registry(config)
    if args.format == "json":
        print(json.dumps(registry.model_dump(mode="json"), ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(to_csv(registry))
    return 0


def _change(config: CentralConfig, edit: Callable[[Registry], Registry]) -> Registry:
    db = open_database(config)
    try:
        return RegistryTable(db, config.registry_path).change(edit)
    finally:
        db.close()


def imported(current: Registry, path: Path) -> Registry:
    """The registry after importing `path`, one version above `current`, checked."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportProblem(str(exc)) from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            new = Registry.model_validate_json(text)
            version = max(new.version, current.version + 1)
        elif suffix == ".csv":
            new = (merge_issued if _is_issued_csv(text) else merge_csv)(current, text)
            version = current.version + 1
        else:
            raise ImportProblem("expected a .json or a .csv file")
        new = Registry.model_validate({**new.model_dump(), "version": version})
    except ValidationError as exc:
        raise ImportProblem(describe_errors(exc)) from exc
    problems = broken_references(new)
    if problems:
        raise ImportProblem("; ".join(problems))
    return new


def merge_csv(registry: Registry, text: str) -> Registry:
    reader = csv.DictReader(io.StringIO(text))
    missing = [name for name in REQUIRED_COLUMNS if name not in (reader.fieldnames or [])]
    if missing:
        raise ImportProblem(f"the header row lacks {', '.join(missing)} (columns: {CSV_COLUMNS})")
    buttons = {button.device_id: button for button in registry.buttons}
    buildings = {building.id: building for building in registry.buildings}
    for line, row in enumerate(reader, start=2):
        cell = {name: (row.get(name) or "").strip() for name in CSV_COLUMNS}
        if not all(cell[name] for name in REQUIRED_COLUMNS):
            raise ImportProblem(f"line {line}: {', '.join(REQUIRED_COLUMNS)} must not be empty")
        resident = Resident(
            name=cell["name"],
            phone=cell["phone"] or None,
            household=cell["household"] or None,
            building=cell["building"],
            room=cell["room"] or None,
        )
        previous = buttons.get(cell["device_id"])
        buttons[cell["device_id"]] = (
            previous.model_copy(update={"resident": resident})
            if previous
            else Button(device_id=cell["device_id"], resident=resident)
        )
        buildings[cell["building"]] = _building(buildings.get(cell["building"]), cell, line)
    return registry.model_copy(
        update={"buttons": list(buttons.values()), "buildings": list(buildings.values())}
    )


def _is_issued_csv(text: str) -> bool:
    header = next(csv.reader(io.StringIO(text)), [])
    return "kind" in header and "url" in header


def merge_issued(registry: Registry, text: str) -> Registry:
    """The stalls of an `issued.csv` that the registry does not know, added (a later row of
    the same stall wins). A stall already registered stays as it is: its placard was printed
    from the registry. Households are left out: their building and room are not in the file."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [name for name in MANIFEST_FIELDS if name not in (reader.fieldnames or [])]
    if missing:
        raise ImportProblem(
            f"this issued.csv lacks {', '.join(missing)}: an older mashang wrote it; issue the "
            "stalls again to get one that names them"
        )
    registered = {stall.id for stall in registry.stalls}
    stalls = {stall.id: stall for stall in registry.stalls}
    for line, row in enumerate(reader, start=2):
        cell = {name: (row.get(name) or "").strip() for name in MANIFEST_FIELDS}
        if cell["kind"] not in ("stall", "household"):
            raise ImportProblem(
                f"line {line}: kind {cell['kind']!r} is neither stall nor household"
            )
        if cell["kind"] == "household" or cell["id"] in registered:
            continue
        try:
            stalls[cell["id"]] = Stall(
                id=cell["id"],
                name=cell["name"],
                number=cell["number"] or None,
                zone=cell["zone"],
                hours=cell["hours"],
            )
        except ValidationError as exc:
            raise ImportProblem(f"line {line}: {describe_errors(exc)}") from exc
    return registry.model_copy(update={"stalls": list(stalls.values())})


def _building(known: Building | None, cell: dict[str, str], line: int) -> Building:
    primary, backup = cell["primary_butler"], cell["backup_butler"]
    if known is None:
        if not primary:
            raise ImportProblem(
                f"line {line}: building {cell['building']!r} is new: name its primary_butler"
            )
        return Building(
            id=cell["building"],
            name=cell["building"],
            primary_butler=primary,
            backup_butler=backup or None,
        )
    changes: dict[str, str] = {}
    if primary:
        changes["primary_butler"] = primary
    if backup:
        changes["backup_butler"] = backup
    return known.model_copy(update=changes)


def broken_references(registry: Registry) -> list[str]:
    butlers = {butler.id for butler in registry.butlers}
    problems = []
    if DUTY_ACCOUNT in butlers:
        problems.append(f"butler id {DUTY_ACCOUNT!r} is reserved for the duty contact's account")
    for building in registry.buildings:
        for butler in (building.primary_butler, building.backup_butler):
            if butler and butler not in butlers:
                problems.append(f"building {building.id!r}: no butler {butler!r} in the registry")
    buildings = {building.id for building in registry.buildings}
    for button in registry.buttons:
        if button.resident.building not in buildings:
            problems.append(
                f"button {button.device_id!r}: no building {button.resident.building!r}"
            )
    return problems


def to_csv(registry: Registry) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for button in registry.buttons:
        resident = button.resident
        building = registry.building(resident.building)
        writer.writerow(
            [
                button.device_id,
                resident.name,
                resident.phone or "",
                resident.household or "",
                resident.building,
                resident.room or "",
                building.primary_butler if building else "",
                (building.backup_butler or "") if building else "",
            ]
        )
    return out.getvalue()
