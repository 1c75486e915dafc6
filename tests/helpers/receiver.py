"""A scriptable central for fault injection: a real aiohttp server on 127.0.0.1.

It implements PROTOCOL §3's `POST /v1/ingest` (signature checked with the same code the real
central uses, events deduplicated by id) and records every request: headers, raw body, the
events it carried, what it was answered and when it arrived. At run time a test tells it to

    refuse()                      stop listening: new connections are refused, open ones closed
    fail(500)                     answer 500 (or any status), optionally with Retry-After,
    fail(429, retry_after=3)      optionally only for the next `times` requests
    hang()                        hold every request unanswered (past the gateway's timeout)
    slow(0.5)                     answer 200, but only after a delay
    poison(predicate)             answer 422 to any batch holding an event for which
                                  predicate(event) is true (the event is the wire dict)
    recover()                     listen again (if refused) and answer 200 to everything

It runs its own event loop in a background thread, so that tests stay plain synchronous code:

    with Receiver() as receiver:
        gateway = make_gateway(receiver.url)
        ...
        receiver.wait_for_events(lambda events: len(events) >= 10)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from mashang.signing import GATEWAY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, check_signature
from tests.helpers.support import GATEWAY_ID, GATEWAY_KEY, wait_for

Event = dict[str, Any]
Predicate = Callable[[Event], bool]

# How long a hung request is held at most, should nobody release it or the client stay.
HANG_CAP = 120.0


@dataclass
class Request:
    """One POST /v1/ingest as it arrived, and what it was answered."""

    index: int
    arrived: float  # time.monotonic() on arrival
    headers: CIMultiDict[str]
    body: bytes
    mode: str
    signature_error: str | None = None
    payload: dict | None = None
    # The HTTP status answered; None while held (or for a hung request the client gave up on).
    status: int | None = None
    answered: float | None = None
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        if not self.payload or not isinstance(self.payload.get("events"), list):
            return []
        return self.payload["events"]

    @property
    def ids(self) -> list[str]:
        return [event.get("id") for event in self.events]

    @property
    def delivered(self) -> bool:
        return self.status == 200


class Receiver:
    def __init__(self, key: str = GATEWAY_KEY, gateway_id: str = GATEWAY_ID) -> None:
        self.key = key.encode()
        self.gateway_id = gateway_id
        self.port: int | None = None
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        # Accepted events in order of first acceptance, and by id.
        self._delivered: list[Event] = []
        self._by_id: dict[str, Event] = {}
        self._mode = "ok"
        self._fail_status = 500
        self._retry_after: str | None = None
        self._fail_times: int | None = None
        self._delay = 0.0
        self._poison: Predicate | None = None
        self._listening = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self.command_polls = 0

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self.port is not None, "start the receiver first"
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver", daemon=True)
        self._thread.start()
        self._call(self._listen())

    def close(self) -> None:
        if self._loop is None:
            return
        self._call(self._stop_listening())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def _call(self, coroutine) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(15)

    # -- what a test tells it --------------------------------------------------------------

    def refuse(self) -> None:
        """Close the listening socket and every open connection: connections are refused."""
        self._call(self._stop_listening())

    def fail(self, status: int, retry_after: float | str | None = None, times: int | None = None):
        """Answer `status` (with Retry-After when given); after `times` requests, answer 200."""
        with self._lock:
            self._set_mode("fail")
            self._fail_status = status
            self._retry_after = None if retry_after is None else str(retry_after)
            self._fail_times = times
        self._ensure_listening()

    def hang(self) -> None:
        """Hold every request without answering, until the client gives up or recover()."""
        with self._lock:
            self._set_mode("hang")
        self._ensure_listening()

    def slow(self, delay: float) -> None:
        """Answer as usual (200), but each answer only after `delay` seconds."""
        with self._lock:
            self._set_mode("slow")
            self._delay = delay
        self._ensure_listening()

    def poison(self, predicate: Predicate | None) -> None:
        """422 for any batch holding an event that matches; None cures the poison."""
        with self._lock:
            self._poison = predicate

    def recover(self) -> None:
        """Listen again and answer 200 to everything (a poison predicate stays in force)."""
        with self._lock:
            self._set_mode("ok")
        self._ensure_listening()

    def _set_mode(self, mode: str) -> None:
        self._mode = mode
        if self._loop is not None and self._release is not None:
            # Requests held by hang() are let go (answered 503, nothing stored).
            held, self._release = self._release, asyncio.Event()
            self._loop.call_soon_threadsafe(held.set)

    def _ensure_listening(self) -> None:
        if not self._listening:
            self._call(self._listen())

    # -- what it saw -----------------------------------------------------------------------

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def events(self) -> list[Event]:
        """Every distinct event answered 200, in the order the central first accepted them."""
        with self._lock:
            return list(self._delivered)

    def by_id(self) -> dict[str, Event]:
        with self._lock:
            return dict(self._by_id)

    def events_where(self, predicate: Predicate) -> list[Event]:
        return [event for event in self.events() if predicate(event)]

    def wait_for_events(
        self, predicate: Callable[[list[Event]], Any], timeout: float = 30.0, what: str = ""
    ) -> Any:
        return wait_for(lambda: predicate(self.events()), timeout, what=what or "events")

    def wait_for_requests(
        self, predicate: Callable[[list[Request]], Any], timeout: float = 30.0, what: str = ""
    ) -> Any:
        return wait_for(lambda: predicate(self.requests()), timeout, what=what or "requests")

    # -- the server ------------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._listening:
            return
        self._release = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/ingest", self._ingest)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/v1/gateways/{gateway_id}/commands", self._commands)
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port or 0, reuse_address=True)
        await site.start()
        if self.port is None:
            self.port = runner.addresses[0][1]
        self._runner = runner
        self._listening = True

    async def _stop_listening(self) -> None:
        if not self._listening:
            return
        assert self._runner is not None and self._release is not None
        self._release.set()
        await self._runner.cleanup()
        self._runner = None
        self._listening = False

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _commands(self, request: web.Request) -> web.Response:
        """PROTOCOL §4's long poll, with never a command: held for `wait`, then empty."""
        with self._lock:
            self.command_polls += 1
            release = self._release
        wait = request.query.get("wait", "0")
        assert release is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), min(float(wait) if wait.isdigit() else 0, 30))
        cursor = request.query.get("after") or "0"
        return web.json_response({"cursor": cursor, "commands": []})

    async def _ingest(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        with self._lock:
            record = Request(
                index=len(self._requests),
                arrived=time.monotonic(),
                headers=CIMultiDict(request.headers),
                body=body,
                mode=self._mode,
                payload=payload,
            )
            self._requests.append(record)
            mode = self._mode
            delay = self._delay
            release = self._release
        if mode == "hang":
            assert release is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), HANG_CAP)
            # Let go by a change of mode: the client has long given up; nothing is stored.
            return self._answer(record, 503, {"error": "was hanging"})
        if mode == "slow":
            await asyncio.sleep(delay)
        return self._handle(record)

    def _handle(self, record: Request) -> web.Response:
        headers = record.headers
        gateway_id = headers.get(GATEWAY_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        claimed = headers.get(SIGNATURE_HEADER)
        if not gateway_id or not timestamp or not claimed:
            record.signature_error = "missing signature headers"
        elif gateway_id != self.gateway_id:
            record.signature_error = f"unknown gateway {gateway_id!r}"
        else:
            record.signature_error = check_signature(self.key, timestamp, record.body, claimed)
        if record.signature_error:
            return self._answer(record, 401, {"error": record.signature_error})
        if not self._well_formed(record.payload):
            return self._answer(record, 400, {"error": "not an ingest request"})
        with self._lock:
            if self._mode == "fail":
                status, retry_after = self._fail_status, self._retry_after
                if self._fail_times is not None:
                    self._fail_times -= 1
                    if self._fail_times <= 0:
                        self._mode = "ok"
                headers = {"Retry-After": retry_after} if retry_after is not None else None
                return self._answer(record, status, {"error": "told to fail"}, headers)
            poison = self._poison
            if poison is not None:
                bad = [event for event in record.events if poison(event)]
                if bad:
                    return self._answer(record, 422, {"error": f"poisoned event {bad[0]['id']}"})
            for event in record.events:
                if event["id"] in self._by_id:
                    record.duplicates.append(event["id"])
                else:
                    record.accepted.append(event["id"])
                    self._by_id[event["id"]] = event
                    self._delivered.append(event)
        return self._answer(
            record, 200, {"accepted": record.accepted, "duplicates": record.duplicates}
        )

    @staticmethod
    def _well_formed(payload: Any) -> bool:
        return (
            isinstance(payload, dict)
            and isinstance(payload.get("gateway_id"), str)
            and isinstance(payload.get("sent_at"), str)
            and isinstance(payload.get("events"), list)
            and all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in payload["events"])
        )

    @staticmethod
    def _answer(
        record: Request, status: int, body: dict, headers: dict[str, str] | None = None
    ) -> web.Response:
        record.status = status
        record.answered = time.monotonic()
        return web.json_response(body, status=status, headers=headers)
