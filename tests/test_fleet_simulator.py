"""`mashang simulate fleet` against a real central: a handful of gateways for a few seconds,
each with the key the simulator derives, written into the central's `[gateways]` table by
the simulator itself. What the bench's fleet figure (bench/fleet.py) relies on: every event
it made is accepted once, its polls are signed well enough to be answered, each press shows
on the duty room's live stream, and a fleet with the wrong keys is refused and says so."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.console import PASSWORD, set_password
from tests.helpers.support import Central, mashang

pytestmark = [pytest.mark.system, pytest.mark.central]

GATEWAYS = 4


def fleet(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(mashang("simulate", "fleet", "--gateways", str(GATEWAYS), *args),
                          input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture
def fleet_central(tmp_path: Path, central_database: str | None):
    table = tmp_path / "gateways.toml"
    written = fleet("--write-gateways", str(table))
    assert written.returncode == 0, written.stderr
    central = Central(tmp_path / "central", database=central_database)
    config = central.config.read_text(encoding="utf-8")
    central.config.write_text(config.replace("[gateways]\n", table.read_text(encoding="utf-8")),
                              encoding="utf-8")
    set_password(central, "duty", PASSWORD)
    central.start()
    yield central
    central.kill()


def drive(central: Central, *extra: str) -> dict[str, Any]:
    done = fleet("--central", central.url, "--devices", "20", "--seconds", "3",
                 "--heartbeat-every", "2", "--presses", "2", "--scans", "1", "--poll-wait", "1",
                 "--console", "duty", "--json", *extra, stdin=f"{PASSWORD}\n")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_written_table_names_each_gateway_with_a_key_of_its_own(tmp_path: Path) -> None:
    table = tmp_path / "gateways.toml"
    assert fleet("--write-gateways", str(table)).returncode == 0
    header, *entries = table.read_text(encoding="utf-8").splitlines()
    assert header == "[gateways]"
    names = [entry.split(" = ")[0] for entry in entries]
    assert names == [f"fleet-{n:04d}" for n in range(1, GATEWAYS + 1)]
    assert len({entry.split(" = ")[1] for entry in entries}) == GATEWAYS


def test_a_fleet_is_accepted_once_answered_and_shown(fleet_central: Central) -> None:
    result = drive(fleet_central)
    assert result["generated"] > 0
    assert (result["accepted"], result["duplicates"], result["rejected"], result["unsent"]) == (
        result["generated"], 0, 0, 0)
    assert result["errors"] == {}
    assert result["polls"] >= GATEWAYS
    assert result["press_to_accepted_ms"]["n"] == result["presses"] > 0
    assert result["press_to_console_ms"]["n"] == result["presses"]
    assert (result["console_missed"], result["console_error"]) == (0, None)
    presses = fleet_central.events("button.press")
    assert len(presses) == result["presses"]
    assert {event["gateway_id"] for event in presses} <= {
        f"fleet-{n:04d}" for n in range(1, GATEWAYS + 1)}


def test_a_fleet_with_the_wrong_keys_is_refused_and_reports_it(fleet_central: Central) -> None:
    result = drive(fleet_central, "--secret", "not-the-central's", "--drain", "2")
    assert result["accepted"] == 0
    assert result["rejected"] == result["generated"] > 0
    assert set(result["errors"]) == {"ingest: HTTP 401 bad_signature",
                                     "poll: HTTP 401 bad_signature"}
    assert fleet_central.events("button.press") == []
