"""Helpers for the central's alert, downlink, webhook and console tests.

All of them talk to a real central process over loopback HTTP: signed like a gateway for
ingest and the commands long-poll, with a session cookie like a butler's browser for the
console, with the admin token for the alert API. Webhook robots are played by a real aiohttp
server on loopback that records what it is sent.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from devices.simulators import butler
from devices.simulators.butler import Answer, LiveStream, request  # noqa: F401
from mashang.signing import (
    COMMAND_SIGNATURE,
    command_refusal,
    parse_public_key,
    signed_headers,
    signed_poll_headers,
)
from tests.helpers.support import (
    ADMIN_TOKEN,
    COMMAND_KEY,
    GATEWAY_ID,
    GATEWAY_KEY,
    Central,
    mashang,
    wait_for,
)

PASSWORD = "correct horse battery"

# Two buildings with their butlers, a community duty contact, three registered buttons.
REGISTRY: dict[str, Any] = {
    "version": 1,
    "community": {
        "name": "康城社区",
        "duty_contact": {"name": "社区值班室", "phone": "0477-8590000"},
        "inspection_contact": {"name": "街道巡查", "phone": "0477-8591111"},
    },
    "butlers": [
        {"id": "b-wang", "name": "王管家", "phone": "13800000001"},
        {"id": "b-li", "name": "李管家", "phone": "13800000002"},
        {"id": "b-zhao", "name": "赵管家", "phone": "13800000003"},
    ],
    "buildings": [
        {"id": "B3", "name": "3号楼", "primary_butler": "b-wang", "backup_butler": "b-li"},
        {"id": "B5", "name": "5号楼", "primary_butler": "b-zhao"},
    ],
    "buttons": [
        {
            "device_id": "btn-0007",
            "resident": {
                "name": "张秀英",
                "phone": "13900000007",
                "household": "H-3-1201",
                "building": "B3",
                "room": "1201",
            },
        },
        {
            "device_id": "btn-0008",
            "resident": {"name": "刘桂兰", "phone": "13900000008", "building": "B3", "room": "302"},
        },
        {
            "device_id": "btn-0501",
            "resident": {"name": "陈建国", "phone": "13900000501", "building": "B5", "room": "601"},
        },
    ],
}


# -- the central -------------------------------------------------------------------------


def admin_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`mashang registry …` / `mashang butler …`, in a process of its own as an operator runs
    them."""
    return subprocess.run(
        mashang(*args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_central(
    folder: Path,
    *,
    registry: dict[str, Any] | None = REGISTRY,
    extra: str = "",
    accounts: tuple[str, ...] = (),
    database: str | None = None,
    port: int | None = None,
) -> Central:
    """A central with this registry imported and these console accounts (password PASSWORD);
    `database`: the `central_database` fixture's (PostgreSQL's URL, or None for SQLite)."""
    central = Central(folder, port, extra=f"registry_poll = 0.1\n{extra}", database=database)
    if registry is not None:
        source = folder / "import.json"
        source.write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
        result = admin_cli("registry", "import", str(source), "--config", str(central.config))
        assert result.returncode == 0, result.stderr
    for account in accounts:
        set_password(central, account, PASSWORD)
    central.start()
    return central


def set_password(central: Central, account: str, password: str) -> None:
    result = admin_cli(
        "butler",
        "passwd",
        account,
        "--config",
        str(central.config),
        "--password-stdin",
        stdin=f"{password}\n",
    )
    assert result.returncode == 0, result.stderr


# -- HTTP --------------------------------------------------------------------------------


def admin_get(central: Central, path: str) -> Any:
    answer = request(f"{central.url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status == 200, (answer.status, answer.body)
    return answer.body


def alerts(central: Central, **query: str) -> list[dict]:
    suffix = "&".join(f"{key}={value}" for key, value in query.items())
    return admin_get(central, f"/v1/alerts?{suffix}")["alerts"]


def alert_detail(central: Central, alert_id: str) -> dict:
    return admin_get(central, f"/v1/alerts/{alert_id}")


def steps(central: Central, alert_id: str, step: str | None = None) -> list[dict]:
    found = alert_detail(central, alert_id)["steps"]
    return [entry for entry in found if step in (None, entry["step"])]


def pages(central: Central, alert_id: str, count: int) -> list[list[str]]:
    """Whom the alert's `paged` steps paged, once it has `count` of them: a page is recorded
    when the engine pays it, a moment after the step that owes it."""
    def paged() -> list[dict] | None:
        found = steps(central, alert_id, "paged")
        return found if len(found) >= count else None

    return [s["detail"]["targets"] for s in wait_for(paged, what=f"{count} paged steps")]


def wait_alert(central: Central, device_id: str, predicate=lambda alert: True, **query) -> dict:
    """The newest alert of a device once it satisfies predicate."""

    def ready() -> dict | None:
        found = alerts(central, device_id=device_id, **query)
        return found[0] if found and predicate(found[0]) else None

    return wait_for(ready, what=f"an alert of {device_id}")


# -- the gateway's side ------------------------------------------------------------------


def now_text() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def event(
    event_type: str, device_id: str, data: dict[str, Any], priority: str = "high"
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "kind": "alert",
        "type": event_type,
        "priority": priority,
        "device_id": device_id,
        "occurred_at": now_text(),
        "received_at": now_text(),
        "data": data,
    }


def enrichment(device_id: str, registry: dict[str, Any] = REGISTRY) -> dict[str, Any]:
    """What the gateway adds to a button's event from its copy of the registry."""
    button = next((b for b in registry["buttons"] if b["device_id"] == device_id), None)
    if button is None:
        return {"unregistered": True}
    resident = button["resident"]
    building = next(b for b in registry["buildings"] if b["id"] == resident["building"])
    butlers = {b["id"]: b for b in registry["butlers"]}

    def contact(butler_id: str | None) -> dict | None:
        if butler_id is None:
            return None
        butler = butlers[butler_id]
        return {key: butler[key] for key in ("id", "name", "phone")}

    return {
        "resident": {
            key: resident.get(key) for key in ("name", "phone", "household", "building", "room")
        },
        "building": {"id": building["id"], "name": building["name"]},
        "butlers": {
            "primary": contact(building["primary_butler"]),
            "backup": contact(building.get("backup_butler")),
        },
    }


def press(
    device_id: str, alert_id: str, *, action: str = "single", presses: int = 1, repeat: bool = False
) -> dict[str, Any]:
    """A `button.press` (or `button.repeat`) event as the gateway sends it."""
    data = {
        "seq": presses,
        "action": action,
        "battery": 87,
        "alert_id": alert_id,
        "presses": presses,
    }
    return event(
        "button.repeat" if repeat else "button.press",
        device_id,
        data | enrichment(device_id),
        priority="critical" if action == "long" else "high",
    )


def ingest(central: Central, events: list[dict[str, Any]]) -> dict:
    body = json.dumps(
        {"gateway_id": GATEWAY_ID, "sent_at": now_text(), "events": events}, ensure_ascii=False
    ).encode()
    headers = {"Content-Type": "application/json"}
    headers |= signed_headers(GATEWAY_ID, GATEWAY_KEY.encode(), body)
    answer = request(f"{central.url}/v1/ingest", "POST", body, headers)
    assert answer.status == 200, (answer.status, answer.body)
    return answer.body


def poll_commands(
    central: Central, after: str = "", wait: int = 0, *, signed_by: str = COMMAND_KEY
) -> dict:
    """A page of the gateway's commands, each checked to carry the signature of `signed_by`
    (PROTOCOL §6) and returned without it, as the gateway acts on them."""
    target = f"/v1/gateways/{GATEWAY_ID}/commands?after={after}&wait={wait}"
    headers = signed_poll_headers(GATEWAY_ID, GATEWAY_KEY.encode(), target)
    answer = request(
        f"{central.url}{target}",
        headers=headers,
        timeout=wait + 10,
    )
    assert answer.status == 200, (answer.status, answer.body)
    key = parse_public_key(signed_by)
    for command in answer.body["commands"]:
        assert command_refusal(key, command) is None, command
        del command[COMMAND_SIGNATURE]
    return answer.body


def feedback_for(commands: list[dict], alert_id: str) -> list[dict]:
    return [c for c in commands if c["type"] == "feedback" and c["alert_id"] == alert_id]


# -- a butler's browser, without the browser ---------------------------------------------


class ConsoleClient(butler.ConsoleClient):
    """The simulated butler, at a test central, with the tests' password by default."""

    def __init__(self, central: Central, source: str | None = None) -> None:
        super().__init__(central.url, source)

    def login(self, account: str, password: str = PASSWORD) -> Answer:
        return super().login(account, password)


# -- webhook robots ----------------------------------------------------------------------


@dataclass
class Received:
    path: str
    query: dict[str, str]
    raw_query: str
    body: Any
    at: float


@dataclass
class WebhookReceiver:
    """A loopback HTTP server standing in for WeCom, DingTalk and generic webhook endpoints.

    `script[path]` is a list of (status, json body) answers used in turn; once used up, or for
    a path without a script, it answers 200 {"errcode": 0, "errmsg": "ok"} as both robots do.
    """

    script: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/{path:.*}", self._take)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()

    async def _take(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        self.received.append(
            Received(
                path,
                dict(request.query),
                request.rel_url.raw_query_string,
                await request.json(),
                time.time(),
            )
        )
        answers = self.script.get(path)
        status, body = answers.pop(0) if answers else (200, {"errcode": 0, "errmsg": "ok"})
        return web.json_response(body, status=status)

    def at(self, path: str) -> list[Received]:
        return [item for item in self.received if item.path == path]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
