"""The ceiling: a bare paho-mqtt QoS 1 subscriber that does no work with what it receives.

It connects as the gateway does (MQTT 5, the same receive maximum, QoS 1 on the gateway's own
subscriptions) and lets paho ack each message as it arrives. It prints `ready` once subscribed,
then one JSON line when it has seen `--count` messages (or gives up after `--timeout`):
{"received": n, "first": unix time, "last": unix time}.

    python -m bench.ceiling --port P --count N
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mashang.topics import subscriptions


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--root", default="mashang/v1")
    parser.add_argument("--receive-maximum", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    seen = {"received": 0, "first": None, "last": None}
    subscribed = threading.Event()
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(topic, 1) for topic in subscriptions(args.root)])

    def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
        subscribed.set()

    def on_message(client, userdata, message) -> None:
        seen["received"] += 1
        if seen["first"] is None:
            seen["first"] = time.time()
        if seen["received"] >= args.count:
            seen["last"] = time.time()
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="mashang-bench-ceiling",
                         protocol=mqtt.MQTTv5)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.ReceiveMaximum = args.receive_maximum
    client.connect("127.0.0.1", args.port, clean_start=True, properties=properties)
    client.loop_start()
    if not subscribed.wait(10):
        print("not subscribed after 10 s", file=sys.stderr)
        return 1
    print("ready", flush=True)
    done.wait(args.timeout)
    print(json.dumps(seen), flush=True)
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
