"""The central's database carries a schema version per component and applies missing steps
once, in order, at start: an older file is upgraded in place and keeps its rows, and a file
made by a newer release is refused rather than written with the wrong shape."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cloud_bridge.receiver.store import Database, EventStore

pytestmark = pytest.mark.unit

FIRST = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
SECOND = "ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT 'unknown';"


def test_a_file_made_before_versions_were_kept_is_upgraded_and_keeps_its_rows(tmp_path: Path):
    path = tmp_path / "central.sqlite"
    old = sqlite3.connect(path)
    old.executescript(FIRST)
    old.execute("INSERT INTO notes (text) VALUES ('from the old release')")
    old.commit()
    old.close()

    db = Database(path)
    db.migrate("notes", [FIRST, SECOND])

    assert db.version("notes") == 2
    assert db.rows("SELECT text, author FROM notes") == [("from the old release", "unknown")]


def test_each_step_runs_once_however_often_the_central_starts(tmp_path: Path):
    path = tmp_path / "central.sqlite"
    for _ in range(3):
        db = Database(path)
        # SECOND would fail with "duplicate column" if it ran again.
        db.migrate("notes", [FIRST, SECOND])
        db.close()
    assert Database(path).version("notes") == 2


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path):
    path = tmp_path / "central.sqlite"
    Database(path).migrate("notes", [FIRST, SECOND])
    with pytest.raises(RuntimeError, match="newer"):
        Database(path).migrate("notes", [FIRST])


def test_components_keep_their_own_versions(tmp_path: Path):
    db = Database(tmp_path / "central.sqlite")
    db.migrate("notes", [FIRST, SECOND])
    EventStore(db)
    assert db.version("notes") == 2
    assert db.version("events") >= 1


def test_a_failing_step_leaves_the_file_at_the_last_good_version(tmp_path: Path):
    db = Database(tmp_path / "central.sqlite")
    broken = "ALTER TABLE notes ADD COLUMN author TEXT; ALTER TABLE nowhere ADD COLUMN x TEXT;"
    with pytest.raises(RuntimeError, match="step 2"):
        db.migrate("notes", [FIRST, broken])
    assert db.version("notes") == 1
    assert [row[1] for row in db.rows("PRAGMA table_info(notes)")] == ["id", "text"]
