"""Acting under failure, in a real Chromium against a real central: with the central stopped
(or a front proxy answering 502 for it), the butler's acknowledge says so in plain Chinese on
the card and is retried until it lands once the central is back; a retried action can be
cancelled; a refusal (4xx) says why and is not retried; while the live stream is down the
cards say they are stale and since when, and the stream comes back by itself. Leaves
test-artifacts/console-offline.png."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page, expect

from tests.helpers.console import (
    REGISTRY,
    ConsoleClient,
    admin_cli,
    ingest,
    press,
    start_central,
    wait_alert,
)
from tests.helpers.console_page import console_page
from tests.helpers.e2e import ARTIFACTS
from tests.helpers.support import Central, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

LIVE = re.compile(r"\bon\b")
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
BAD_GATEWAY = "<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"


class StreamingFront:
    """A front proxy as nginx is put before the central with `proxy_buffering off`: answers
    are passed on as they come (the live stream too), and while the central does not answer
    it says 502 Bad Gateway with its own HTML page, as nginx does."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="front", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the front did not start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            upstream = await self._session.request(
                request.method,
                f"{self.backend}{request.rel_url}",
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            )
        except aiohttp.ClientError:
            return web.Response(status=502, text=BAD_GATEWAY, content_type="text/html")
        async with upstream:
            response = web.StreamResponse(status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_HEADERS:
                    response.headers.add(name, value)
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except aiohttp.ClientError:
                return response  # the central went away mid-answer: so does this one
            await response.write_eof()
            return response

    def close(self) -> None:
        async def stop() -> None:
            await self._session.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", accounts=("b-wang",),
                            database=central_database)
    yield central
    central.kill()


@pytest.fixture
def front(central: Central) -> Iterator[StreamingFront]:
    front = StreamingFront(central.url)
    yield front
    front.close()


def stale_since(page: Page) -> float:
    """The moment the stale banner says the cards are from, read in the community's zone."""
    banner = page.locator("#stale")
    expect(banner).to_contain_text("与服务器的连接已断开")
    found = re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", banner.inner_text())
    assert found, banner.inner_text()
    shown = datetime.strptime(found.group(), "%Y-%m-%d %H:%M:%S")
    return shown.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def test_an_acknowledge_with_the_central_stopped_lands_when_it_is_back(
    central: Central, browser: Browser
) -> None:
    page = console_page(browser, central)
    ingest(central, [press("btn-0007", "g-1", action="long")])
    card = page.locator(".card", has_text="张秀英")
    expect(card).to_be_visible()

    stopped = time.time()
    central.kill()
    expect(page.locator("#live")).not_to_have_class(LIVE)
    noticed = time.time()
    assert stopped - 1 <= stale_since(page) <= noticed + 1  # seconds shown, whole seconds
    expect(page.locator("#alerts-view")).to_have_class(re.compile(r"\bstale\b"))

    card.locator("button.acknowledge").click()
    job = card.locator(".job")
    expect(job).to_contain_text("网络不通，还没送到服务器。正在自动重试（第 1 次）")
    expect(job).to_contain_text("（第 2 次）")  # and again, by itself
    expect(card.locator("button.acknowledge")).to_be_disabled()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "console-offline.png", full_page=True)

    central.start()
    expect(card).to_have_attribute("data-state", "acknowledged", timeout=20_000)
    expect(job).to_have_count(0)
    expect(page.locator("#stale")).to_be_hidden(timeout=20_000)
    expect(page.locator("#live")).to_have_class(LIVE)
    stored = wait_alert(central, "btn-0007")
    assert (stored["state"], stored["acknowledged_by"]) == ("acknowledged", "王管家")

    ingest(central, [press("btn-0008", "g-2")])  # the stream is live again
    expect(page.locator(".card", has_text="刘桂兰")).to_be_visible()


def test_behind_a_front_a_502_is_retried_and_a_retry_can_be_cancelled(
    central: Central, front: StreamingFront, browser: Browser
) -> None:
    page = console_page(browser, central, url=front.url)
    ingest(central, [press("btn-0007", "g-1"), press("btn-0008", "g-2")])
    first = page.locator(".card", has_text="张秀英")
    second = page.locator(".card", has_text="刘桂兰")
    expect(second).to_be_visible()

    central.kill()  # the front stays, and answers for it
    expect(page.locator("#stale")).to_be_visible()
    first.locator("button.acknowledge").click()
    expect(first.locator(".job")).to_contain_text("服务器出错（502），还没送到。正在自动重试")
    second.locator("button.resolve").click()
    second.locator("button.reason-arrived").click()
    expect(second.locator(".job")).to_contain_text("服务器出错（502）")
    second.locator(".job button", has_text="取消").click()  # the butler gives up on this one
    expect(second.locator(".job")).to_have_count(0)
    expect(second.locator("button.resolve")).to_be_enabled()

    central.start()
    expect(first).to_have_attribute("data-state", "acknowledged", timeout=20_000)
    expect(page.locator("#live")).to_have_class(LIVE, timeout=20_000)
    assert wait_alert(central, "btn-0007")["acknowledged_by"] == "王管家"
    assert wait_alert(central, "btn-0008")["state"] != "resolved"  # cancelled: never sent
    expect(second).to_have_attribute("data-state", re.compile("raised|notified"))


def test_a_refusal_says_why_and_is_not_retried(central: Central, browser: Browser) -> None:
    page = console_page(browser, central)
    ingest(central, [press("btn-0007", "g-1")])
    card = page.locator(".card", has_text="张秀英")
    expect(card).to_be_visible()
    alert = wait_alert(central, "btn-0007")

    # 3号楼 is handed to another butler while the card is on b-wang's screen.
    registry = copy.deepcopy(REGISTRY)
    registry["buildings"][0] |= {"primary_butler": "b-li", "backup_butler": None}
    source = central.config.parent / "handed-over.json"
    source.write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
    result = admin_cli("registry", "import", str(source), "--config", str(central.config))
    assert result.returncode == 0, result.stderr
    wang = ConsoleClient(central)
    wang.login("b-wang")
    wait_for(
        lambda: wang.get(f"/v1/console/alerts/{alert['id']}").status == 404,
        what="the central to stop showing b-wang the alert",
    )

    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    card.locator("button.acknowledge").click()
    job = card.locator(".job")
    expect(job).to_have_text(re.compile(r"^没有办成：no such alert"))
    page.wait_for_timeout(2_500)  # a retry would have gone after 1 s, and again after 2 more
    assert [url for url in sent if url.endswith("/acknowledge")] == [
        f"{central.url}/v1/console/alerts/{alert['id']}/acknowledge"
    ]
    expect(job).not_to_contain_text("重试")
    job.locator("button", has_text="知道了").click()
    expect(job).to_have_count(0)
    assert wait_alert(central, "btn-0007")["state"] in ("raised", "notified")
