"""The central's registry and its made secrets live in its database, so that every central
process on one database (PostgreSQL, maybe on machines of their own) serves one registry and
signs with one key: an import is seen by another connection at its next look, two changes at
once both land, an old `{data_dir}/registry.json` is imported once and left as it was, and
connections starting together on PostgreSQL (two processes, maybe on two machines) agree on
the secrets they make."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud_bridge.commands.signing import KEY_FILE, command_signing_key
from cloud_bridge.config import CentralConfig
from cloud_bridge.console.sessions import SECRET_FILE, console_secret
from cloud_bridge.receiver.postgres import PostgresDatabase
from cloud_bridge.receiver.store import Database, SQLiteDatabase
from cloud_bridge.registry.source import RegistrySource
from cloud_bridge.registry.table import RegistryTable
from mashang import cli
from mashang.registry import Button, Registry, Resident
from tests.helpers.console import REGISTRY

pytestmark = [pytest.mark.unit, pytest.mark.central]

CSV = "device_id,name,building,room\nbtn-0100,孙淑珍,B5,101\n"


def central_toml(config: Path, data_dir: Path, database: str | None) -> Path:
    """A central's configuration: SQLite in `data_dir`, or the PostgreSQL database given."""
    url = f'database = "{database}"\n' if database else ""
    config.write_text(f'[central]\ndata_dir = "{data_dir}"\n{url}', encoding="utf-8")
    return config


def write_json(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def imports_logged(caplog: pytest.LogCaptureFixture, old: Path) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if f"imported from {old}" in record.getMessage()]


def with_button(device_id: str):
    def edit(current: Registry) -> Registry:
        button = Button(device_id=device_id, resident=Resident(name=device_id, building="B3"))
        return current.model_copy(
            update={"buttons": [*current.buttons, button], "version": current.version + 1})
    return edit


def test_an_import_goes_one_version_up_and_another_process_sees_it_at_its_next_look(
    central_database: str | None, tmp_path: Path, opening: Callable[[], Database]
) -> None:
    config = central_toml(tmp_path / "central.toml", tmp_path, central_database)
    db, other = opening(), opening()
    watching = RegistrySource(other)
    assert not watching.exists and not watching.refresh()

    source = write_json(tmp_path / "registry-v1.json", REGISTRY | {"version": 0})
    assert cli.main(["registry", "import", str(source), "--config", str(config)]) == 0
    assert RegistryTable(db).version() == 1  # at least one above what there was
    assert watching.refresh() and watching.exists
    assert watching.current == Registry.model_validate(REGISTRY)
    assert not watching.refresh()  # unchanged: nothing to reread

    (tmp_path / "more.csv").write_text(CSV, encoding="utf-8")
    assert cli.main(["registry", "import", str(tmp_path / "more.csv"),
                     "--config", str(config)]) == 0
    assert watching.refresh()
    assert watching.current.version == 2
    assert watching.current.button("btn-0100") is not None
    assert watching.current.button("btn-0007") is not None  # a CSV merges
    assert RegistrySource(db).current == watching.current


def test_two_changes_at_once_from_two_connections_both_land(
    database: Database, opening: Callable[[], Database]
) -> None:
    RegistryTable(database).change(lambda _: Registry.model_validate(REGISTRY))
    other = opening()
    tables = [RegistryTable(database), RegistryTable(other)]
    def add(table: RegistryTable, side: int) -> None:
        for n in range(10):
            table.change(with_button(f"btn-{side}-{n}"))

    workers = [threading.Thread(target=add, args=(table, side))
               for side, table in enumerate(tables)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    registry = tables[0].load()
    assert registry.version == 1 + 20
    assert {f"btn-{side}-{n}" for side in (0, 1) for n in range(10)} <= {
        button.device_id for button in registry.buttons}


def test_a_refused_change_leaves_the_registry_as_it_was(database: Database) -> None:
    table = RegistryTable(database)
    table.change(lambda _: Registry.model_validate(REGISTRY))

    def refuse(current: Registry) -> Registry:
        raise LookupError("refused")

    with pytest.raises(LookupError):
        table.change(refuse)
    with pytest.raises(ValueError, match="not above"):
        table.change(lambda current: current)
    assert table.load() == Registry.model_validate(REGISTRY)


def test_an_old_registry_json_is_imported_once_and_left_as_it_was(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = write_json(tmp_path / "registry.json", REGISTRY | {"version": 7})
    before = old.read_bytes()
    with caplog.at_level(logging.WARNING, logger="cloud_bridge.registry.table"):
        source = RegistrySource(database, old)
    assert source.current.version == 7
    assert source.current.button("btn-0007") is not None
    assert imports_logged(caplog, old), "the import from the old file was not logged"
    assert old.read_bytes() == before

    RegistryTable(database).change(with_button("btn-new"))
    write_json(old, REGISTRY | {"version": 99})  # the file is no longer read
    caplog.clear()
    again = RegistrySource(database, old)
    assert again.current.version == 8 and again.current.button("btn-new") is not None
    assert not imports_logged(caplog, old)


def test_an_upgraded_central_exports_the_registry_its_old_file_held(
    central_database: str | None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = central_toml(tmp_path / "central.toml", tmp_path, central_database)
    write_json(tmp_path / "registry.json", REGISTRY | {"version": 4})
    assert cli.main(["registry", "export", "--config", str(config)]) == 0
    exported = Registry.model_validate_json(capsys.readouterr().out)
    assert exported == Registry.model_validate(REGISTRY | {"version": 4})


def test_a_damaged_old_registry_json_is_not_imported_and_the_central_starts_with_none(
    database: Database, tmp_path: Path
) -> None:
    old = tmp_path / "registry.json"
    old.write_text('{"version": 3, "butt', encoding="utf-8")
    source = RegistrySource(database, old)
    assert not source.exists and source.current == Registry()


# -- the secrets a central makes itself ---------------------------------------------------------


def made_command_key(config: CentralConfig, db: Database) -> bytes:
    return command_signing_key(config, db).private_bytes_raw()


@pytest.mark.parametrize(("made", "file_name"), [(made_command_key, KEY_FILE),
                                                 (console_secret, SECRET_FILE)])
def test_processes_starting_together_on_postgresql_make_one_secret(
    postgres_server, tmp_path: Path, made: Callable[[CentralConfig, Database], bytes],
    file_name: str
) -> None:
    """Two machines (two data folders), one database: the gateways hold one public key, and a
    session opened on one process holds on the other."""
    url = postgres_server.new_database()
    databases = [PostgresDatabase(url) for _ in range(2)]
    configs = [CentralConfig.model_validate({"central": {"data_dir": tmp_path / f"machine-{n}"}})
               for n in range(2)]
    secrets: list[bytes] = [b"", b""]
    try:
        def start(n: int) -> None:
            secrets[n] = made(configs[n], databases[n])

        workers = [threading.Thread(target=start, args=(n,)) for n in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert secrets[0] and secrets[0] == secrets[1]
        assert made(configs[0], databases[1]) == secrets[0]  # made once, kept
        for n in range(2):
            assert not (tmp_path / f"machine-{n}" / file_name).exists(), "kept on one machine"
    finally:
        for db in databases:
            db.close()


def test_a_central_moved_from_sqlite_to_postgresql_keeps_its_secrets(
    postgres_server, tmp_path: Path
) -> None:
    """The gateways already hold the public half of the key the SQLite central made."""
    config = CentralConfig.model_validate({"central": {"data_dir": tmp_path}})
    sqlite = SQLiteDatabase(tmp_path / "central.sqlite")
    try:
        made = console_secret(config, sqlite)
    finally:
        sqlite.close()
    assert (tmp_path / "console.key").read_text().strip().encode() == made
    postgres = PostgresDatabase(postgres_server.new_database())
    try:
        assert console_secret(config, postgres) == made
    finally:
        postgres.close()
