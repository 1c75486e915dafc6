"""The console makes itself noticed, in a real Chromium against a real central: after the
butler's first tap an alarm sound plays while a call waits (a distinct one for a critical
call) and stops when it is acknowledged; a call with the console in the background becomes a
system notification through the service worker, with the resident's name and room; the
screen is kept awake while a call waits; and the console installs as an app: a valid
manifest with icons of their stated sizes, a service worker that controls the page and keeps
its shell (and nothing else), so that it opens without a network.

Headless Chromium never reports a page hidden; "in the background" here is another page
brought to the front, which takes the focus from the console, as another app or tab does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers.console import ingest, press, start_central, wait_alert
from tests.helpers.console_page import console_page
from tests.helpers.support import Central, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

PLAYING = "id => !document.getElementById(id).paused"
NOTIFICATIONS = """async () => {
  const registration = await navigator.serviceWorker.getRegistration('/console/');
  const shown = await registration.getNotifications();
  return shown.map(n => ({title: n.title, body: n.body, tag: n.tag}));
}"""


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", accounts=("b-wang",),
                            database=central_database)
    yield central
    central.kill()


def playing(page: Page, sound: str) -> bool:
    return page.evaluate(f"({PLAYING})('{sound}')")


def wait_playing(page: Page, sound: str) -> None:
    page.wait_for_function(PLAYING, arg=sound)
    position = page.evaluate(f"document.getElementById('{sound}').currentTime")
    page.wait_for_function(
        "([id, at]) => document.getElementById(id).currentTime > at", arg=[sound, position]
    )


def test_the_alarm_repeats_until_the_call_is_acknowledged(
    central: Central, browser: Browser
) -> None:
    page = console_page(browser, central)
    prompt = page.locator("#notice-prompt")
    expect(prompt).to_have_text("点这里开启提醒声音和通知")
    prompt.click()  # the butler's first tap after login
    expect(prompt).to_be_hidden()
    assert not playing(page, "sound-call")  # nothing to ring for yet

    ingest(central, [press("btn-0008", "g-1")])  # a single press: a high call
    call = page.locator(".card", has_text="刘桂兰")
    expect(call).to_be_visible()
    wait_playing(page, "sound-call")
    assert page.evaluate("document.getElementById('sound-call').loop") is True
    assert not playing(page, "sound-critical")

    ingest(central, [press("btn-0007", "g-2", action="long")])  # a long press: critical
    critical = page.locator(".card", has_text="张秀英")
    expect(critical).to_be_visible()
    wait_playing(page, "sound-critical")
    assert not playing(page, "sound-call")  # one alarm at a time, the more urgent one

    critical.locator("button.acknowledge").click()
    expect(critical).to_have_attribute("data-state", "acknowledged")
    wait_playing(page, "sound-call")  # the other call still waits
    assert not playing(page, "sound-critical")

    call.locator("button.acknowledge").click()
    expect(call).to_have_attribute("data-state", "acknowledged")
    page.wait_for_function(f"() => !({PLAYING})('sound-call') && !({PLAYING})('sound-critical')")
    assert page.title() == "码上 · 楼栋管家"  # no "(n)" waiting any more


def test_a_call_with_the_console_in_the_background_is_a_system_notification(
    central: Central, browser: Browser
) -> None:
    page = console_page(browser, central, permissions=("notifications",))
    page.locator("#notice-prompt").click()
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")

    # In front: the card and the alarm are enough, no notification.
    ingest(central, [press("btn-0008", "g-1")])
    expect(page.locator(".card", has_text="刘桂兰")).to_be_visible()
    assert page.evaluate(NOTIFICATIONS) == []

    # Playwright tells every page it has the focus; without that, the front page takes it.
    devtools = page.context.new_cdp_session(page)
    devtools.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
    other = page.context.new_page()
    other.goto("about:blank")
    other.bring_to_front()
    page.wait_for_function("() => !document.hasFocus()")
    ingest(central, [press("btn-0007", "g-2", action="long")])
    alert = wait_alert(central, "btn-0007")
    shown = wait_for(lambda: page.evaluate(NOTIFICATIONS), what="the system notification")
    assert shown == [
        {"title": "一键呼叫 · 危急", "body": "张秀英 · 3号楼 1201", "tag": alert["id"]}
    ]

    # Tapped, the worker brings the console forward on that alert (a test cannot tap a system
    # notification: the worker's own handler is called in its place).
    page.bring_to_front()
    [worker] = page.context.service_workers
    worker.evaluate("id => showAlert(id).catch(() => {})", alert["id"])  # focus() needs a tap
    card = page.locator(f"#alert-{alert['id']}")
    expect(card).to_have_class(re.compile(r"\bfocused\b"))
    expect(card).to_be_in_viewport()

    # Acknowledged, its notification goes away.
    card.locator("button.acknowledge").click()
    wait_for(lambda: page.evaluate(NOTIFICATIONS) == [], what="the notification closed")


def test_the_screen_stays_awake_while_a_call_waits(central: Central, browser: Browser) -> None:
    page = console_page(browser, central, permissions=("screen-wake-lock",))
    html = page.locator("html")
    assert page.evaluate("document.documentElement.dataset.wakeLock") is None
    ingest(central, [press("btn-0008", "g-1")])
    expect(html).to_have_attribute("data-wake-lock", "held")
    card = page.locator(".card", has_text="刘桂兰")
    card.locator("button.acknowledge").click()
    expect(card).to_have_attribute("data-state", "acknowledged")
    expect(html).to_have_attribute("data-wake-lock", "off")


def test_the_console_installs_as_an_app(central: Central, browser: Browser) -> None:
    page = console_page(browser, central)
    manifest_url = page.evaluate("document.querySelector('link[rel=manifest]').href")
    assert manifest_url == f"{central.url}/console/manifest.webmanifest"
    answer = page.request.get(manifest_url)
    assert answer.headers["content-type"].startswith("application/manifest+json")
    manifest = answer.json()
    assert manifest["name"] == "码上·楼栋管家"
    assert (manifest["start_url"], manifest["scope"], manifest["display"]) == (
        "/console/",
        "/console/",
        "standalone",
    )
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["theme_color"])
    icons = manifest["icons"]
    assert {icon["sizes"] for icon in icons} >= {"192x192", "512x512"}
    assert any(icon.get("purpose") == "maskable" for icon in icons)
    for icon in icons:
        width, height = map(int, icon["sizes"].split("x"))
        loaded = page.evaluate(
            """src => new Promise((done, failed) => {
                 const image = new Image();
                 image.onload = () => done([image.naturalWidth, image.naturalHeight]);
                 image.onerror = () => failed(new Error('no icon at ' + src));
                 image.src = src;
               })""",
            icon["src"],
        )
        assert loaded == [width, height], icon

    # The service worker, from /console/ itself, controls the page.
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    worker = page.evaluate("navigator.serviceWorker.controller.scriptURL")
    assert worker == f"{central.url}/console/sw.js"
    assert page.request.get(worker).headers["content-type"].startswith("text/javascript")
    assert page.evaluate("navigator.serviceWorker.getRegistration().then(r => r.scope)") == (
        f"{central.url}/console/"
    )

    # It keeps the shell and never an API answer (names, rooms and phones stay in memory).
    ingest(central, [press("btn-0007", "g-1")])
    expect(page.locator(".card", has_text="张秀英")).to_be_visible()
    page.click("#tab-history")
    expect(page.locator("#tab-history")).to_have_class(re.compile(r"\bactive\b"))
    kept = page.evaluate(
        """async () => {
             const paths = [];
             for (const name of await caches.keys()) {
               const cache = await caches.open(name);
               for (const request of await cache.keys()) paths.push(new URL(request.url).pathname);
             }
             return paths;
           }"""
    )
    assert {"/console/", "/console/assets/app.js", "/console/assets/sounds/call.wav"} <= set(kept)
    assert not [path for path in kept if path.startswith("/v1/")], kept

    # The network gone (the central stopped), the installed app still opens and says so.
    central.kill()
    page.reload()
    expect(page.locator("h1")).to_have_text("码上 · 楼栋管家")
    expect(page.locator("#stale")).to_contain_text("还没连上服务器")
