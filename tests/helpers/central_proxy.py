"""A real HTTP hop in front of the real central, for fault injection at exact moments.

The gateway is pointed at the proxy; the proxy passes every request to the central byte for byte
(headers, signature and body untouched, so the central checks them as usual) and passes the
answer back. A test can arm it, once, for the next `POST /v1/ingest`:

    arm("before_forward", action)   run action (e.g. SIGKILL the gateway) while the request is
                                    in flight, and never forward it: the central never sees it
    arm("after_central", action)    forward it, let the central store the batch and answer 200,
                                    run action, and only then answer: the window between the
                                    central's 200 and the gateway's outbox delete, hit every time
    arm("after_answer", action)     forward it, write the central's answer to the gateway, then
                                    run action at once: racing the gateway's outbox delete

It can also serve TLS (`ssl_context=`), which makes it a TLS front for a plain-HTTP central,
and play a man in the middle of the downlink: `tamper_commands(change)` passes every command
poll's answer through `change` (the page as JSON, changed in place) until `tamper_commands(None)`.
It runs its own event loop in a background thread, so tests stay plain synchronous code.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
MODES = ("before_forward", "after_central", "after_answer")


@dataclass
class Armed:
    mode: str
    action: Callable[[], None]
    fired: threading.Event = field(default_factory=threading.Event)


@dataclass
class Seen:
    """One proxied ingest request: the central's answer, and the fault injected into it."""

    status: int | None
    accepted: int = 0
    duplicates: int = 0
    fault: str | None = None


class CentralProxy:
    def __init__(self, backend: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self.backend = backend.rstrip("/")
        self._ssl = ssl_context
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = threading.Lock()
        self._armed: Armed | None = None
        self._tamper: Callable[[dict], None] | None = None
        self.ingests: list[Seen] = []

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> CentralProxy:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(15)

    def close(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def arm(self, mode: str, action: Callable[[], None]) -> Armed:
        """Inject `mode` into the next ingest request; `.fired` is set once action has run."""
        assert mode in MODES, mode
        armed = Armed(mode, action)
        with self._lock:
            self._armed = armed
        return armed

    def tamper_commands(self, change: Callable[[dict], None] | None) -> None:
        with self._lock:
            self._tamper = change

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def duplicates_seen(self) -> int:
        with self._lock:
            return sum(seen.duplicates for seen in self.ingests)

    # -- the server ------------------------------------------------------------------------

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5,
                               handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        armed = None
        is_ingest = request.method == "POST" and request.path == "/v1/ingest"
        if is_ingest:
            with self._lock:
                armed, self._armed = self._armed, None
        if armed is not None and armed.mode == "before_forward":
            await self._fire(armed)
            with self._lock:
                self.ingests.append(Seen(None, fault=armed.mode))
            return web.json_response({"error": "the gateway was killed"}, status=503)
        status, headers, answer = await self._forward(request, body)
        with self._lock:
            tamper = self._tamper
        if tamper is not None and status == 200 and request.path.endswith("/commands"):
            page = json.loads(answer)
            tamper(page)
            answer = json.dumps(page, ensure_ascii=False).encode()
        if is_ingest:
            seen = Seen(status, fault=armed.mode if armed else None)
            if status == 200:
                document = json.loads(answer)
                seen.accepted = len(document.get("accepted", []))
                seen.duplicates = len(document.get("duplicates", []))
            with self._lock:
                self.ingests.append(seen)
        if armed is not None and armed.mode == "after_central":
            await self._fire(armed)
        response = web.Response(status=status, body=answer, headers=headers)
        if armed is not None and armed.mode == "after_answer":
            await response.prepare(request)
            await response.write_eof()
            await self._fire(armed)
        return response

    async def _forward(self, request: web.Request, body: bytes):
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            async with self._session.request(
                # The target as it came, not re-quoted: a poll's signature covers it (§6).
                request.method, URL(f"{self.backend}{request.raw_path}", encoded=True),
                data=body, headers=headers
            ) as answer:
                payload = await answer.read()
                keep = {k: v for k, v in answer.headers.items()
                        if k.lower() in ("content-type", "retry-after")}
                return answer.status, keep, payload
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 502, {"Content-Type": "application/json"}, json.dumps(
                {"error": f"central unreachable: {exc}"}
            ).encode()

    async def _fire(self, armed: Armed) -> None:
        def run() -> None:
            armed.action()
            armed.fired.set()

        # In a thread, as the action may wait for a process to die; shielded, as killing the
        # gateway drops its connection, and with it this handler.
        await asyncio.shield(asyncio.to_thread(run))
