"""The bench's HTTP receiver: one process that both the gateway and Node-RED post to.

It does as little as a receiver can while staying honest: it checks the gateway's signature
(PROTOCOL §3) and answers the ids it got; it counts Node-RED's one-message posts by the
device and sequence number they carry, and the gateway's heartbeats (`button.status`) the
same way, so that lost and doubled heartbeats are counted alike for both. It stores nothing,
so that it is never what limits a throughput figure. A control listener on a second port
answers the bench: counts, and refuse/recover (stop listening on the main port, then listen
again) for the outage figures.

    python -m bench.receiver --port P --control-port C --key K --gateway-id G
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

from aiohttp import web

from mashang.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, check_signature


class Tally:
    """Heartbeats by device and sequence number, whoever sent them: per device, how many
    distinct ones arrived, how many arrivals in all (doubles included), and when the last new
    one came. The bench sums the devices of one run, so that nothing else sent (a readiness
    probe, a gateway's own events) is counted with it."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, object]] = set()
        self.devices: dict[str, list] = {}  # device -> [distinct, arrivals, last new (unix s)]

    def add(self, keys: list[tuple[str, object]]) -> None:
        for key in keys:
            entry = self.devices.setdefault(str(key[0]), [0, 0, None])
            entry[1] += 1
            if key not in self.seen:
                self.seen.add(key)
                entry[0] += 1
                entry[2] = time.time()


class State:
    def __init__(self, key: bytes, gateway_id: str) -> None:
        self.key = key
        self.gateway_id = gateway_id
        self.reset()

    def reset(self) -> None:
        self.ids: set[str] = set()
        self.peer: set[str] = set()
        self.heartbeats = Tally()
        self.requests = 0
        self.refused_signatures = 0
        self.first: float | None = None
        self.last: float | None = None

    def arrived(self, new: int) -> None:
        if new:
            moment = time.time()
            self.first = self.first or moment
            self.last = moment

    def stats(self) -> dict:
        return {
            "ingest_events": len(self.ids),
            "peer_events": len(self.peer),
            "heartbeats": self.heartbeats.devices,
            "requests": self.requests,
            "refused_signatures": self.refused_signatures,
            "first": self.first,
            "last": self.last,
        }


def main_app(state: State) -> web.Application:
    async def ingest(request: web.Request) -> web.Response:
        body = await request.read()
        state.requests += 1
        reason = check_signature(state.key, request.headers.get(TIMESTAMP_HEADER, ""), body,
                                 request.headers.get(SIGNATURE_HEADER, ""))
        if reason:
            state.refused_signatures += 1
            return web.json_response({"error": reason}, status=401)
        events = json.loads(body)["events"]
        ids = [event["id"] for event in events]
        state.heartbeats.add([(event.get("device_id"), event["data"].get("seq"))
                              for event in events if event.get("type") == "button.status"])
        before = len(state.ids)
        state.ids.update(ids)
        state.arrived(len(state.ids) - before)
        return web.json_response({"accepted": ids, "duplicates": []})

    async def peer(request: web.Request) -> web.Response:
        body = await request.read()
        state.requests += 1
        try:
            message = json.loads(body)
            key = f"{message.get('device_id')}:{message.get('data', {}).get('seq')}"
        except (ValueError, AttributeError):
            return web.json_response({"error": "not JSON"}, status=400)
        if message.get("type") == "buttons.status":
            state.heartbeats.add([(message.get("device_id"), message.get("data", {}).get("seq"))])
        before = len(state.peer)
        state.peer.add(key)
        state.arrived(len(state.peer) - before)
        return web.json_response({"ok": True})

    async def commands(request: web.Request) -> web.Response:
        """PROTOCOL §4's long poll, never with a command."""
        wait = request.query.get("wait", "0")
        await asyncio.sleep(min(float(wait) if wait.isdigit() else 0, 30))
        return web.json_response({"cursor": request.query.get("after") or "0", "commands": []})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/ingest", ingest)
    app.router.add_post("/peer", peer)
    app.router.add_get("/v1/gateways/{gateway_id}/commands", commands)
    app.router.add_get("/healthz", healthz)
    return app


class Listener:
    def __init__(self, app: web.Application, port: int) -> None:
        self._app = app
        self._port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=0.2,
                               handler_cancellation=True)
        await runner.setup()
        # A deep accept queue: a peer that opens a connection per message (Node-RED's plain
        # flow does) is not held back by SYN retries against the default of 128.
        await web.TCPSite(runner, "127.0.0.1", self._port, reuse_address=True,
                          backlog=4096).start()
        self._runner = runner

    async def stop(self) -> None:
        """Close the listening socket and every open connection."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await runner.cleanup()


async def serve(port: int, control_port: int, key: str, gateway_id: str) -> None:
    state = State(key.encode(), gateway_id)
    main = Listener(main_app(state), port)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state.stats())

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response(state.stats())

    async def refuse(request: web.Request) -> web.Response:
        await main.stop()
        return web.json_response({"listening": False})

    async def recover(request: web.Request) -> web.Response:
        await main.start()
        return web.json_response({"listening": True})

    control = web.Application()
    control.router.add_get("/stats", stats)
    control.router.add_post("/reset", reset)
    control.router.add_post("/refuse", refuse)
    control.router.add_post("/recover", recover)
    await Listener(control, control_port).start()
    await main.start()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--gateway-id", required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.control_port, args.key, args.gateway_id))


if __name__ == "__main__":
    main()
