"""Downlink: commands from the central (PROTOCOL §4), long-polled, relayed to where they go.

`feedback` goes to the device's feedback topic ("help is coming"); `registry.replace` becomes
the gateway's registry; `placard.revoke` adds a code to the deny list. The cursor is kept on
disk, so a restart neither replays old commands nor skips new ones (`Downlink.reset_cursor`
forgets it when the gateway lost its registry and needs the whole of it again). Each poll
carries the gateway's facts (PROTOCOL §6) in its `gateway` query parameter, so the central
hears how the gateway is doing at least every `central.poll_wait` seconds.

A poll is signed the v1.1 way (PROTOCOL §6: a fresh nonce, the path and the query as sent).
A command is taken only when the central signed it (`sig`, Ed25519, checked against
`central.command_key`): one forged or changed on the way is refused and logged with the reason.
Without a command key the gateway cannot tell, and takes only `feedback` (an LED, a voice), never
a registry or a revocation, and says so at its start.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, ValidationError
from yarl import URL

from edge.config import CentralSection
from edge.downlink.feedback import Feedback
from edge.sink.central import Backoff, Transient, parse_retry_after
from mashang.files import atomic_write
from mashang.registry import Registry
from mashang.signing import command_refusal, parse_public_key, signed_poll_headers
from mashang.wire import FACTS_PARAM, GatewayFacts

log = logging.getLogger(__name__)


class Command(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    type: str
    device_id: str | None = None
    alert_id: str | None = None
    state: Literal["received", "acknowledged", "resolved"] | None = None
    by: str | None = None
    registry: dict[str, Any] | None = None
    code: str | None = None


class CommandPage(BaseModel):
    cursor: str | int
    commands: list[dict[str, Any]]


class Downlink:
    def __init__(
        self,
        central: CentralSection,
        *,
        gateway_id: str,
        key: bytes,
        feedback: Feedback,
        apply_registry: Callable[[Registry], None],
        revoke_code: Callable[[str], None],
        alert_resolved: Callable[[str, str], None],
        cursor_path: Path,
        facts: Callable[[], GatewayFacts] | None = None,
    ) -> None:
        self._central = central
        self._gateway_id = gateway_id
        self._key = key
        self._feedback = feedback
        self._apply_registry = apply_registry
        self._revoke_code = revoke_code
        self._alert_resolved = alert_resolved
        self._cursor_path = cursor_path
        self._facts = facts
        self._url = f"{central.base_url}/v1/gateways/{gateway_id}/commands"
        self._command_key = (parse_public_key(central.command_key)
                             if central.command_key is not None else None)
        self.relayed = 0

    async def run(self, session: aiohttp.ClientSession) -> None:
        # While the central fails the poll is tried again within central.alert_retry (1 s),
        # not backed off to backoff_max: it is the gateway's probe of the central's return
        # (its request getting through tells CentralHealth, which wakes the uplink), and the
        # butler's "help is coming" must not wait a minute after an outage either. One small
        # request a second; a Retry-After is still honoured to the end.
        retry = min(self._central.backoff_max, self._central.alert_retry)
        backoff = Backoff(min(self._central.backoff_min, retry), retry)
        cursor = self._load_cursor()
        if self._command_key is None:
            log.warning("central.command_key is not set: only feedback commands are taken from "
                        "the central; registry.replace and placard.revoke are refused (set it "
                        "to what `mashang central command-key` prints at the central)")
        while True:
            try:
                page = await self._poll(session, cursor)
            except Transient as exc:
                delay = backoff.next_delay(exc.retry_after)
                log.debug("command poll failed (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            for raw in page.commands:
                self._dispatch(raw)
            if str(page.cursor) != cursor:
                cursor = str(page.cursor)
                self._save_cursor(cursor)

    async def _poll(self, session: aiohttp.ClientSession, cursor: str) -> CommandPage:
        wait = self._central.poll_wait
        timeout = aiohttp.ClientTimeout(total=wait + self._central.timeout,
                                        sock_connect=self._central.connect_timeout)
        params = {"after": cursor, "wait": str(wait)}
        if self._facts is not None:
            params[FACTS_PARAM] = self._facts().model_dump_json(exclude_none=True)
        # Encoded here, once, so that what is signed is byte for byte what is sent.
        url = URL(f"{self._url}?{urllib.parse.urlencode(params)}", encoded=True)
        headers = signed_poll_headers(self._gateway_id, self._key, url.raw_path_qs)
        try:
            async with session.get(url, headers=headers, timeout=timeout) as response:
                body = await response.read()
                if response.status != 200:
                    raise Transient(f"HTTP {response.status}",
                                    parse_retry_after(response.headers.get("Retry-After")))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        try:
            return CommandPage.model_validate_json(body)
        except ValidationError as exc:
            raise Transient(f"unreadable command page: {exc.error_count()} problems") from exc

    def _trusted(self, raw: dict[str, Any]) -> bool:
        kind = raw.get("type")
        if self._command_key is None:
            if kind == "feedback":
                return True
            log.warning("refused command %r of type %r: without central.command_key only "
                        "feedback is taken", raw.get("id"), kind)
            return False
        refusal = command_refusal(self._command_key, raw)
        if refusal is not None:
            log.error("refused command %r of type %r: %s", raw.get("id"), kind, refusal)
            return False
        return True

    def _dispatch(self, raw: dict[str, Any]) -> None:
        if not self._trusted(raw):
            return
        try:
            command = Command.model_validate(raw)
        except ValidationError as exc:
            log.error("ignored a malformed command: %s", exc.errors()[:3])
            return
        if command.type == "feedback" and command.device_id and command.alert_id and command.state:
            self._feedback.button(command.device_id, command.alert_id, command.state, command.by)
            if command.state == "resolved":
                self._alert_resolved(command.device_id, command.alert_id)
        elif command.type == "registry.replace" and command.registry is not None:
            try:
                registry = Registry.model_validate(command.registry)
            except ValidationError as exc:
                log.error("refused a registry snapshot: %s", exc.errors()[:3])
                return
            self._apply_registry(registry)
            log.info("registry replaced (version %s)", registry.version)
        elif command.type == "placard.revoke" and command.code:
            self._revoke_code(command.code)
        else:
            log.warning("ignored command %s of type %s", command.id, command.type)
            return
        self.relayed += 1

    def _load_cursor(self) -> str:
        try:
            return self._cursor_path.read_text().strip()
        except FileNotFoundError:
            return ""

    def _save_cursor(self, cursor: str) -> None:
        atomic_write(self._cursor_path, cursor)

    @staticmethod
    def reset_cursor(path: Path) -> None:
        """Forget the cursor kept at `path` (before the downlink starts), so that the first
        poll has none and the central sends the whole registry first
        (cloud_bridge/commands/queue.py). The commands queued before follow it again, as they
        would to a new gateway."""
        try:
            path.unlink()
        except FileNotFoundError:
            return
        log.warning("downlink cursor %s reset: the central will send the whole registry", path)
