"""For the visit tests: a registry with residents living alone, a central with a second
gateway beside the lab's one, and a butler's household scan (`visit.checkin`) as a gateway
sends it (edge/transform/scans.py `_household`), at a moment of the test's choosing."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mashang.signing import signed_headers
from tests.helpers.console import (
    PASSWORD,
    REGISTRY,
    admin_cli,
    event,
    now_text,
    request,
    set_password,
)
from tests.helpers.support import GATEWAY_ID, GATEWAY_KEY, Central

COMMUNITY = ZoneInfo("Asia/Shanghai")  # the central's default `central.time_zone`
OTHER_GATEWAY, OTHER_KEY = "gw-east", "east-gateway-key-41c9"
KEYS = {GATEWAY_ID: GATEWAY_KEY, OTHER_GATEWAY: OTHER_KEY}
# 张秀英 (btn-0007's resident) lives alone in 3号楼 1201; 1205's resident has no button, so no
# name in the registry; 5号楼 601 is b-zhao's; 302 does not live alone.
HOUSEHOLDS = [
    {"id": "H-3-1201", "building": "B3", "room": "1201", "elderly_living_alone": True},
    {"id": "H-3-1205", "building": "B3", "room": "1205", "elderly_living_alone": True},
    {"id": "H-5-0601", "building": "B5", "room": "601", "elderly_living_alone": True},
    {"id": "H-3-0302", "building": "B3", "room": "302", "elderly_living_alone": False},
]


def registry(households: list[dict[str, Any]] = HOUSEHOLDS) -> dict[str, Any]:
    found = copy.deepcopy(REGISTRY)
    found["households"] = households
    return found


def visits_central(folder: Path, *, extra: str = "", accounts: tuple[str, ...] = ("b-wang",),
                   households: list[dict[str, Any]] = HOUSEHOLDS,
                   database: str | None = None) -> Central:
    """A central knowing both gateways, with the registry imported and these accounts."""
    central = Central(folder, extra=f"registry_poll = 0.1\n{extra}", database=database)
    with central.config.open("a") as config:  # the file ends with its [gateways] table
        config.write(f'{OTHER_GATEWAY} = "{OTHER_KEY}"\n')
    source = folder / "import.json"
    source.write_text(json.dumps(registry(households), ensure_ascii=False), encoding="utf-8")
    result = admin_cli("registry", "import", str(source), "--config", str(central.config))
    assert result.returncode == 0, result.stderr
    for account in accounts:
        set_password(central, account, PASSWORD)
    central.start()
    return central


def checkin(household: str, *, at: datetime | None = None, result: str = "accepted",
            scanner: str = "butler-phone") -> dict[str, Any]:
    """A household code scanned on a visit; `at` when it was scanned (default now)."""
    data = {"result": result, "reason": "visit" if result == "accepted" else "expired",
            "subject": {"kind": "household", "id": household}}
    found = event("visit.checkin", scanner, data, priority="normal") | {"kind": "log"}
    if at is not None:
        found["occurred_at"] = found["received_at"] = at.isoformat(timespec="milliseconds")
    return found


def send(central: Central, events: list[dict[str, Any]], gateway: str = GATEWAY_ID) -> None:
    """POST /v1/ingest signed with that gateway's own key."""
    body = json.dumps({"gateway_id": gateway, "sent_at": now_text(), "events": events},
                      ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    headers |= signed_headers(gateway, KEYS[gateway].encode(), body)
    answer = request(f"{central.url}/v1/ingest", "POST", body, headers)
    assert answer.status == 200, (answer.status, answer.body)
