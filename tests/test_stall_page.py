"""The stall page a resident's phone opens from a placard: licence, zone, hours, and a rating
and report form that refuses bad input and floods."""

from __future__ import annotations

import asyncio
import base64
import datetime
import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud_bridge.config import StallsSection
from cloud_bridge.issuing.keys import issue_token
from cloud_bridge.receiver.store import Database
from cloud_bridge.stalls.pages import StallPages, add_stall_routes
from mashang.registry import Registry, Stall

pytestmark = pytest.mark.system

KEY = Ed25519PrivateKey.generate()
EXPIRES = datetime.date.today() + datetime.timedelta(days=30)


def registry() -> Registry:
    public = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Registry(
        stalls=[
            Stall(id="ST-001", name="老王烤串", number="017", zone="夜市", hours="17:00-23:30"),
            Stall(id="ST-002", name="旧摊位", zone="夜市", hours="17:00-23:30", min_generation=2),
        ],
        code_keys={1: base64.b64encode(public).decode()},
    )


def token(subject: str, generation: int = 1) -> str:
    return issue_token(KEY, 1, "stall", subject, generation, EXPIRES)


def run(tmp_path: Path, scenario, limit: int = 5):
    async def main():
        app = web.Application()
        pages = StallPages(StallsSection(submissions_per_window=limit), registry,
                           Database(tmp_path / "stalls.sqlite"))
        add_stall_routes(app, pages)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as session:
                return await scenario(session)
        finally:
            await server.close()

    return asyncio.run(main())


async def page(session: aiohttp.ClientSession, path: str) -> tuple[int, str]:
    async with session.get(path) as response:
        return response.status, await response.text()


def form_token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found, "the page has no form token"
    return found.group(1)


async def submit(session, path: str, fields: dict) -> tuple[int, str]:
    async with session.post(f"{path}/feedback", data=fields, allow_redirects=False) as response:
        return response.status, await response.text()


def test_a_valid_placard_shows_the_stall_and_its_licence_in_chinese(tmp_path):
    status, html = run(tmp_path, lambda s: page(s, f"/S/{token('ST-001')}"))
    assert status == 200
    assert "老王烤串" in html and "夜市" in html and "17:00-23:30" in html
    assert "有效" in html  # licence valid


def test_a_revoked_placard_shows_as_revoked(tmp_path):
    status, html = run(tmp_path, lambda s: page(s, f"/S/{token('ST-002', generation=1)}"))
    assert status == 200
    assert "已吊销" in html and "有效" not in html


def test_english_on_request_and_forged_codes_are_not_stalls(tmp_path):
    forged = token("ST-001")[:-8] + "AAAAAAAA"

    async def scenario(session):
        return await page(session, f"/S/{token('ST-001')}?lang=en"), await page(
            session, f"/S/{forged}"
        )

    (status, english), (forged_status, forged_html) = run(tmp_path, scenario)
    assert status == 200 and "valid" in english and "Zone" in english
    assert forged_status == 404 and "老王烤串" not in forged_html


def test_the_form_takes_a_rating_and_refuses_bad_input(tmp_path):
    path = f"/S/{token('ST-001')}"

    async def scenario(session):
        _, html = await page(session, path)
        good = form_token(html)
        results = {
            "good": await submit(session, path, {"form_token": good, "rating": "4",
                                                 "report": "很好吃"}),
            "rating out of range": await submit(session, path, {"form_token": good,
                                                                "rating": "9"}),
            "nothing given": await submit(session, path, {"form_token": good}),
            "report too long": await submit(session, path, {"form_token": good,
                                                            "report": "长" * 501}),
            "no form token": await submit(session, path, {"rating": "3"}),
            "forged form token": await submit(session, path, {"form_token": "1.abc",
                                                              "rating": "3"}),
        }
        return results

    results = run(tmp_path, scenario, limit=10)
    assert results["good"][0] == 303
    assert results["rating out of range"][0] == 400
    assert "1 to 5" in results["rating out of range"][1]
    assert results["nothing given"][0] == 400
    assert results["report too long"][0] == 400
    assert results["no form token"][0] == 403
    assert results["forged form token"][0] == 403


def test_floods_from_one_client_are_refused(tmp_path):
    path = f"/S/{token('ST-001')}"

    async def scenario(session):
        _, html = await page(session, path)
        fields = {"form_token": form_token(html), "rating": "5"}
        return [(await submit(session, path, fields))[0] for _ in range(8)]

    statuses = run(tmp_path, scenario, limit=3)
    assert statuses[:3] == [303, 303, 303]
    assert set(statuses[3:]) == {429}
