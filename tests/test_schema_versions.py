"""The central's database carries a schema version per component and applies missing steps
once, in order, at start: an older database is upgraded in place and keeps its rows, and one
made by a newer release is refused rather than written with the wrong shape. On both engines:
the SQLite file, and a PostgreSQL database."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from cloud_bridge.alerts.book import MIGRATIONS as ALERT_STEPS
from cloud_bridge.receiver.postgres import schema_step
from cloud_bridge.receiver.store import Database, EventStore
from lab.processes import mashang

pytestmark = pytest.mark.central  # each test is marked unit or system itself

FIRST = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
SECOND = "ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT 'unknown';"
OLD_ROW = "INSERT INTO notes (id, text) VALUES (1, 'from the old release')"


def made_by_the_release_before_versions(central_database: str | None, tmp_path: Path) -> None:
    """The notes table as a release before schema versions left it: a row, no version."""
    if central_database is None:
        old = sqlite3.connect(tmp_path / "central.sqlite")
        old.executescript(FIRST)
        old.execute(OLD_ROW)
        old.commit()
        old.close()
        return
    with psycopg.connect(central_database, autocommit=True) as old:
        old.execute(schema_step(FIRST))
        old.execute(OLD_ROW)


@pytest.mark.unit
def test_a_database_made_before_versions_were_kept_is_upgraded_and_keeps_its_rows(
    central_database: str | None, tmp_path: Path, opening: Callable[[], Database]
):
    made_by_the_release_before_versions(central_database, tmp_path)

    db = opening()
    db.migrate("notes", [FIRST, SECOND])

    assert db.version("notes") == 2
    assert db.rows("SELECT text, author FROM notes") == [("from the old release", "unknown")]


@pytest.mark.unit
def test_each_step_runs_once_however_often_the_central_starts(opening: Callable[[], Database]):
    for _ in range(3):
        # SECOND would fail with "duplicate column" if it ran again.
        opening().migrate("notes", [FIRST, SECOND])
    assert opening().version("notes") == 2


@pytest.mark.unit
def test_a_database_from_a_newer_release_is_refused(opening: Callable[[], Database]):
    opening().migrate("notes", [FIRST, SECOND])
    with pytest.raises(RuntimeError, match="newer"):
        opening().migrate("notes", [FIRST])


@pytest.mark.unit
def test_components_keep_their_own_versions(database: Database):
    database.migrate("notes", [FIRST, SECOND])
    EventStore(database)
    assert database.version("notes") == 2
    assert database.version("events") >= 1


@pytest.mark.unit
def test_a_failing_step_leaves_the_database_at_the_last_good_version(database: Database):
    broken = "ALTER TABLE notes ADD COLUMN author TEXT; ALTER TABLE nowhere ADD COLUMN x TEXT;"
    with pytest.raises(RuntimeError, match="step 2"):
        database.migrate("notes", [FIRST, broken])
    assert database.version("notes") == 1
    with database.transaction() as db:
        db.execute(OLD_ROW)
    assert database.rows("SELECT * FROM notes") == [(1, "from the old release")]  # no author


@pytest.mark.system
def test_mashang_central_migrate_brings_an_older_database_to_this_release(
    central_database: str | None, tmp_path: Path, opening: Callable[[], Database]
) -> None:
    # The alerts and events tables at their first step, with an event: an older release's.
    older = opening()
    older.migrate("alerts", ALERT_STEPS[:1])
    EventStore(older).add("gw-test", [{"id": "e-1", "kind": "log", "type": "scan.checkin",
                                       "priority": "low"}])
    older.close()
    config = tmp_path / "central.toml"
    database = f'database = "{central_database}"\n' if central_database else ""
    config.write_text(f'[central]\ndata_dir = "{tmp_path}"\n{database}[gateways]\n')

    done = subprocess.run(mashang("central", "migrate", "--config", str(config)),
                          capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    printed = dict(line.split() for line in done.stdout.splitlines())
    assert printed["alerts"] == str(len(ALERT_STEPS)) and printed["events"] == "1"
    again = opening()
    assert again.versions()["alerts"] == len(ALERT_STEPS)
    assert [event["id"] for event in EventStore(again).list()] == ["e-1"]
