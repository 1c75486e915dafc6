"""The street office's side of the central for its tests: a registry with zones, stalls and
scanners beside REGISTRY's residents; an office account made with the real CLI; stall events
as the gateway's own judge makes them (`edge.transform.scans.ScanJudge`); a resident's report
sent through the real stall page with its form key; and a loopback robot for the office."""

from __future__ import annotations

import base64
import copy
import datetime
import html
import re
import urllib.parse
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud_bridge.issuing.keys import issue_token
from edge.transform.scans import ScanJudge
from mashang.codes import code_url
from mashang.registry import Registry
from tests.helpers.console import (
    PASSWORD,
    REGISTRY,
    WebhookReceiver,
    admin_cli,
    event,
    request,
    set_password,
    start_central,
)
from tests.helpers.support import Central

OFFICE = "inspection"
OFFICE_ROBOT = "/cgi-bin/webhook/send"
PUBLIC_URL = "https://kangcheng.mashang.test"
BASE = "HTTPS://M.DDP.CN"
SIGNING_KEY = Ed25519PrivateKey.generate()


def office_registry() -> dict[str, Any]:
    registry = copy.deepcopy(REGISTRY)
    public = SIGNING_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    registry |= {
        "zones": [{"id": "night-market", "name": "夜市"}, {"id": "riverside", "name": "河滨步道"}],
        "scanners": [{"device_id": "gate-north", "zone": "night-market", "purpose": "checkin"}],
        "stalls": [
            {"id": "ST-001", "name": "老王烤串", "number": "017", "zone": "night-market",
             "hours": "00:00-23:59", "min_generation": 2},
            {"id": "ST-002", "name": "张姐凉皮", "number": "022", "zone": "riverside",
             "hours": "00:00-23:59"},
        ],
        "code_keys": {"1": base64.b64encode(public).decode()},
    }
    return registry


def placard(stall_id: str, *, generation: int = 2, days: int = 30) -> str:
    token = issue_token(SIGNING_KEY, 1, "stall", stall_id, generation,
                        datetime.date.today() + datetime.timedelta(days=days))
    return code_url(BASE, "stall", token)


def office_passwd(central: Central, account: str = OFFICE, password: str = PASSWORD):
    return admin_cli("office", "passwd", account, "--config", str(central.config),
                     "--password-stdin", stdin=f"{password}\n")


def start_office_central(folder: Path, robot: WebhookReceiver,
                         database: str | None = None) -> Central:
    extra = (
        f'[console]\npublic_url = "{PUBLIC_URL}"\n'
        f'[[webhooks]]\nurl = "{robot.url}{OFFICE_ROBOT}?key=office-key"\nformat = "wecom"\n'
        f'to = ["{OFFICE}"]\n'
    )
    central = start_central(folder, registry=office_registry(), extra=extra, database=database)
    result = office_passwd(central)
    assert result.returncode == 0, result.stderr
    set_password(central, "b-wang", PASSWORD)
    return central


def scan_events(text: str, scanner: str = "gate-north", purpose: str = "checkin") -> list[dict]:
    """The events the gateway sends for one scan, as its judge decides (edge/transform)."""
    judge = ScanJudge(Registry.model_validate(office_registry()))
    verdict = judge.judge(scanner, text, purpose, datetime.datetime.now().astimezone())
    data = {"code": text, "purpose": purpose, **verdict.data()}
    events = [event(verdict.event_type, scanner, data, priority=verdict.priority)
              | {"kind": verdict.kind}]
    if verdict.violation is not None:
        violation = {"code": text, "purpose": purpose, "result": verdict.result,
                     **verdict.violation}
        events.append(event("stall.violation", scanner, violation))
    return events


def send_report(central: Central, url: str, category: str, words: str) -> None:
    """A resident's report, through the stall page a phone opens from the placard."""
    path = urllib.parse.urlsplit(url).path
    page = request(f"{central.url}{path}")
    assert page.status == 200, page.status
    found = re.search(r'name="form_token" value="([^"]+)"', page.body)
    assert found, "the stall page has no form key"
    form = urllib.parse.urlencode({"form_token": html.unescape(found.group(1)),
                                   "category": category, "report": words, "rating": ""})
    answer = request(f"{central.url}{path}/feedback", "POST", form.encode(),
                     {"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status == 303, (answer.status, answer.body)
