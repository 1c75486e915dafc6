"""The gateway's outbox file carries a schema version (`PRAGMA user_version`): an upgrade opens
the previous release's file and keeps every event in it; a file from a newer release is refused
and left where it is, never set aside as damaged and replaced by an empty one."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.buffer.outbox import MIGRATIONS, EventClass, Outbox, OutboxError
from edge.events import Event

pytestmark = pytest.mark.unit

MOMENT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CAP = 1024 * 1024


def event(event_id: str, alert: bool) -> Event:
    return Event(id=event_id, kind="alert" if alert else "log",
                 type="button.press" if alert else "scan.rejected",
                 priority="critical" if alert else "low", device_id="btn-0007",
                 occurred_at=MOMENT, received_at=MOMENT)


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test_a_new_outbox_is_at_the_current_version(tmp_path: Path) -> None:
    Outbox(tmp_path / "outbox.sqlite", max_bytes=CAP, log_ttl=3600).close()
    assert user_version(tmp_path / "outbox.sqlite") == len(MIGRATIONS)


def test_the_previous_releases_outbox_is_migrated_with_its_events(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    # As the release before versions left it: the schema, no user_version, events waiting.
    older = Outbox(path, max_bytes=CAP, log_ttl=3600)
    older.put([event("press-1", alert=True), event("scan-1", alert=False)])
    older.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 0")
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 2

    outbox, replaced = Outbox.open_checked(path, max_bytes=CAP, log_ttl=3600)
    try:
        assert replaced is None
        assert [item.id for item in outbox.lease(EventClass.ALERT, 10)] == ["press-1"]
        assert [item.id for item in outbox.lease(EventClass.LOG, 10)] == ["scan-1"]
        assert outbox.stats().alerts.events == 1
    finally:
        outbox.close()
    assert user_version(path) == len(MIGRATIONS)


def test_an_outbox_from_a_newer_release_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, max_bytes=CAP, log_ttl=3600)
    outbox.put([event("press-1", alert=True)])
    outbox.close()
    newer = len(MIGRATIONS) + 1
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {newer}")
    before = path.read_bytes()

    with pytest.raises(OutboxError, match=f"schema version {newer}, newer than"):
        Outbox.open_checked(path, max_bytes=CAP, log_ttl=3600)

    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if "damaged" in p.name] == []
