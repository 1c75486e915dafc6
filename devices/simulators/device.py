"""A simulated device: one real paho client with the device's last will, as hardware would."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime

import paho.mqtt.client as mqtt

DEFAULT_ROOT = "mashang/v1"


class SimulatedDevice:
    kind = "devices"

    def __init__(
        self,
        device_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        root: str = DEFAULT_ROOT,
        on_feedback: Callable[[str, dict], None] | None = None,
    ) -> None:
        self.device_id = device_id
        self.base = f"{root.rstrip('/')}/{self.kind}/{device_id}"
        self.seq = 0
        self._on_feedback = on_feedback
        self._connected = threading.Event()
        self._stopped = False
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{device_id}")
        self._client.will_set(
            f"{self.base}/status", json.dumps({"state": "offline"}), qos=1, retain=True
        )
        self._client.on_connect = self._connected_cb
        self._client.on_message = self._message_cb
        self._client.connect_async(host, port, keepalive=30)

    def start(self, timeout: float = 10.0) -> None:
        self._client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError(f"{self.device_id}: no connection to the broker in {timeout} s")
        self.status("online")

    def stop(self, *, clean: bool = True) -> None:
        """clean=False drops the connection without a goodbye, so the broker sends the will.
        Stopping a stopped device does nothing."""
        if self._stopped:
            return
        self._stopped = True
        if clean:
            self.status("offline")
            self._client.disconnect()
            self._client.loop_stop()
            return
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()

    def status(self, state: str, **fields) -> dict:
        """A heartbeat; its seq makes each one a message of its own (PROTOCOL §2)."""
        payload = {"state": state, "seq": self.next_seq(), "ts": self.timestamp(), **fields}
        self.publish("status", payload, retain=True)
        return payload

    def publish(self, channel: str, payload: dict | bytes, *, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False)
        self._client.publish(f"{self.base}/{channel}", data, qos=1, retain=retain).wait_for_publish(
            10
        )

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    @staticmethod
    def timestamp() -> str:
        return datetime.now().astimezone().isoformat(timespec="milliseconds")

    def _connected_cb(self, client, userdata, flags, reason_code, properties) -> None:
        if self._on_feedback is not None:
            client.subscribe(f"{self.base}/feedback", qos=1)
        self._connected.set()

    def _message_cb(self, client, userdata, message) -> None:
        if self._on_feedback is None:
            return
        try:
            feedback = json.loads(message.payload)
        except ValueError:
            return
        self._on_feedback(self.device_id, feedback)
