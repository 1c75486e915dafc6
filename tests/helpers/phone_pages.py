"""A real central whose registry has zones, stalls and households with signed codes, for the
pages a resident's phone opens from a placard or a door code (`/S/…`, `/H/…`)."""

from __future__ import annotations

import base64
import copy
import datetime
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud_bridge.issuing.keys import issue_token
from mashang.codes import Kind
from tests.helpers.console import REGISTRY, Answer, request, start_central
from tests.helpers.support import Central

KEY = Ed25519PrivateKey.generate()
COMMUNITY_ZONE = ZoneInfo("Asia/Shanghai")  # the central's default time zone


def community_today() -> datetime.date:
    return datetime.datetime.now(COMMUNITY_ZONE).date()


def hours_closed_now() -> str:
    """A stall's hours that do not include the community's present minute."""
    now = datetime.datetime.now(COMMUNITY_ZONE)
    start, end = now + datetime.timedelta(hours=1), now + datetime.timedelta(hours=2)
    return f"{start:%H:%M}-{end:%H:%M}"


def phone_registry() -> dict[str, Any]:
    registry = copy.deepcopy(REGISTRY)
    public = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    registry.update(
        zones=[{"id": "night-market", "name": "河畔夜市"}],
        stalls=[
            {"id": "ST-001", "name": "老王烤串", "number": "017", "zone": "night-market",
             "hours": "00:00-23:59"},
            {"id": "ST-002", "name": "旧摊位", "zone": "night-market", "hours": "00:00-23:59",
             "min_generation": 2},
            {"id": "ST-003", "name": "夜宵粥铺", "zone": "night-market",
             "hours": hours_closed_now()},
        ],
        households=[
            {"id": "H-3-1201", "building": "B3", "room": "1201", "elderly_living_alone": True},
            {"id": "H-3-0302", "building": "B3", "room": "302", "min_generation": 2},
        ],
        code_keys={"1": base64.b64encode(public).decode()},
        denied_codes=["household:H-3-0999"],
    )
    return registry


def token(kind: Kind, subject: str, generation: int = 1, days: int = 30) -> str:
    expires = community_today() + datetime.timedelta(days=days)
    return issue_token(KEY, 1, kind, subject, generation, expires)


def start_phone_central(folder: Path, extra: str = "", database: str | None = None) -> Central:
    # A test sends more than the default five submissions from its one loopback address.
    return start_central(folder, registry=phone_registry(),
                         extra=f"{extra}\n[stalls]\nsubmissions_per_window = 50\n",
                         database=database)


def get(central: Central, path: str, language: str | None = None) -> Answer:
    headers = {"Accept-Language": language} if language else {}
    return request(f"{central.url}{path}", headers=headers)


def post_form(central: Central, path: str, fields: dict[str, str],
              source: str | None = None) -> Answer:
    return request(f"{central.url}{path}", "POST", urlencode(fields).encode(),
                   {"Content-Type": "application/x-www-form-urlencoded"}, source=source)


def form_key(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found, "the page has no form key"
    return found.group(1)
