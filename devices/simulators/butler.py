"""A simulated butler: the console API as the butler's page uses it.

It logs in (session cookie and CSRF token), follows the live stream of server-sent events,
and acknowledges or resolves alerts (resolving with a reason, as the page asks); the demo
plays a butler with it, and the tests use it to check what a butler may see and do.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    body: Any
    headers: http.client.HTTPMessage


def request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    source: str | None = None,
    timeout: float = 10.0,
) -> Answer:
    """One HTTP request; `source` picks the loopback address it comes from (127.0.0.x)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Answer(response.status, parsed, response.headers)


class ConsoleClient:
    """The console API as a butler's page uses it: a session cookie and the CSRF token."""

    def __init__(self, base_url: str, source: str | None = None) -> None:
        self.base = base_url
        self.source = source
        self.cookie: str | None = None
        self.csrf: str | None = None

    def login(self, account: str, password: str) -> Answer:
        body = json.dumps({"account": account, "password": password}).encode()
        answer = request(
            f"{self.base}/v1/console/login",
            "POST",
            body,
            {"Content-Type": "application/json"},
            source=self.source,
        )
        if answer.status == 200:
            cookie = answer.headers["Set-Cookie"]
            self.cookie = cookie.split(";")[0]
            self.csrf = answer.body["csrf"]
        return answer

    def headers(self, csrf: bool = True) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        if csrf and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        return headers

    def get(self, path: str) -> Answer:
        return request(f"{self.base}{path}", headers=self.headers(), source=self.source)

    def post(self, path: str, body: bytes = b"{}", *, csrf: bool = True) -> Answer:
        return request(f"{self.base}{path}", "POST", body, self.headers(csrf), source=self.source)

    def act(
        self, alert_id: str, action: str, reason: str = "arrived", note: str | None = None
    ) -> Answer:
        """Acknowledge, or resolve with the reason the page's one tap sends (and a note)."""
        said = {"reason": reason, "note": note} if action == "resolve" else {}
        body = json.dumps(said, ensure_ascii=False).encode()
        return self.post(f"/v1/console/alerts/{alert_id}/{action}", body)

    @contextmanager
    def stream(self) -> Iterator[LiveStream]:
        live = LiveStream(self.base, self.headers(csrf=False))
        try:
            yield live
        finally:
            live.close()


class EventLines:
    """Server-sent events put together from their lines, fed one at a time."""

    def __init__(self) -> None:
        self._name: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, Any] | None:
        """The event this line ends, if it ends one: (its name, its data parsed)."""
        line = line.rstrip("\r\n")
        if line.startswith("event: "):
            self._name = line[7:]
        elif line.startswith("data: "):
            self._data.append(line[6:])
        elif not line and self._name:
            event = (self._name, json.loads("\n".join(self._data)))
            self._name, self._data = None, []
            return event
        return None


class LiveStream:
    """The console's server-sent event stream, read in a thread; `events` fills as it runs."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base)
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self._connection.request("GET", "/v1/console/stream", headers=headers)
        self.response = self._connection.getresponse()
        self.events: list[tuple[str, Any, float]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        if self.response.status == 200:
            self._thread.start()

    def _read(self) -> None:
        lines = EventLines()
        try:
            for raw in self.response:
                found = lines.feed(raw.decode())
                if found is not None:
                    self.events.append((*found, time.time()))
        except (OSError, ValueError, http.client.HTTPException):
            return

    def alerts(self) -> list[dict]:
        """Every alert the stream has carried, snapshot entries included, in order."""
        found = []
        for name, data, _ in list(self.events):
            found.extend(data if name == "snapshot" else [data] if name == "alert" else [])
        return found

    def close(self) -> None:
        if self._connection.sock is not None:  # ends the reader's blocking read
            self._connection.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._connection.close()
