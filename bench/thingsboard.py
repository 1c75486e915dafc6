"""An emulated ThingsBoard server for the ThingsBoard IoT Gateway peer: the bench's second
Mosquitto is its MQTT transport, and this process is the rest of it.

It connects to that broker as a subscriber with a persistent session (so that nothing the
broker acked to the gateway is missed while this client reconnects), answers the gateway's
`getSessionLimits` request (`v1/devices/me/rpc/request/{id}` → `…/response/{id}`: no rate
limits, the payload and in-flight limits of a self-hosted server) and counts the telemetry the
gateway forwards on `v1/gateway/telemetry` ({"device": [{"ts": …, "values": {"seq": …}}]}),
by device and sequence number as bench.receiver counts the other peers' heartbeats. A control
listener answers the bench, as bench.receiver's does.

    python -m bench.thingsboard --broker-port P --control-port C
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from aiohttp import web

from bench.receiver import Tally

RPC_REQUEST = "v1/devices/me/rpc/request/"
RPC_RESPONSE = "v1/devices/me/rpc/response/"
TELEMETRY = "v1/gateway/telemetry"
SESSION_LIMITS = {
    "maxPayloadSize": 65536,
    "maxInflightMessages": 100,
    "rateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
    "gatewayRateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
}


class Telemetry:
    """What arrived (bench.receiver's tally, the same counts as the other peers'), under a
    lock: the MQTT thread adds, the control listener reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.limits_asked = 0
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.tally = Tally()
            self.publishes = 0

    def add(self, payload: bytes) -> None:
        try:
            devices = json.loads(payload)
            keys = [(device, entry.get("values", entry).get("seq"))
                    for device, entries in devices.items() for entry in entries]
        except (ValueError, AttributeError, TypeError):
            return
        with self._lock:
            self.publishes += 1
            self.tally.add(keys)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"heartbeats": {device: list(entry)
                                   for device, entry in self.tally.devices.items()},
                    "publishes": self.publishes, "limits_asked": self.limits_asked}


def subscriber(port: int, telemetry: Telemetry) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="thingsboard-emulated",
                         clean_session=False)

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        client.subscribe([(TELEMETRY, 1), (RPC_REQUEST + "+", 1)])

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == TELEMETRY:
            telemetry.add(message.payload)
        elif message.topic.startswith(RPC_REQUEST):
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(message.payload).get("method") == "getSessionLimits":
                    telemetry.limits_asked += 1
                    request_id = message.topic[len(RPC_REQUEST):]
                    client.publish(RPC_RESPONSE + request_id, json.dumps(SESSION_LIMITS), qos=1)

    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(0.1, 0.5)
    client.connect_async("127.0.0.1", port)
    client.loop_start()
    return client


async def serve(broker_port: int, control_port: int) -> None:
    telemetry = Telemetry()
    client = subscriber(broker_port, telemetry)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(telemetry.stats())

    async def reset(request: web.Request) -> web.Response:
        telemetry.reset()
        return web.json_response(telemetry.stats())

    control = web.Application()
    control.router.add_get("/stats", stats)
    control.router.add_post("/reset", reset)
    runner = web.AppRunner(control, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", control_port).start()
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    finally:
        client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.broker_port, args.control_port))


if __name__ == "__main__":
    main()
