"""The MQTT process: the gateway's broker connection, in a process (and an interpreter) of its
own, so that paho's packet handling runs on one core while the gateway parses, judges and
commits on another. `edge.source.mqtt.Ingest` starts it; nobody else should.

    python -S -m edge.source.mqtt_process      (stdin, stdout: the pipe of `edge.source.link`)

It hands every message over as it arrives, unacked, numbered in arrival order, and acks only
what the gateway says is committed ("everything up to seq N"), in the order the messages
came. It keeps no message itself: when the pipe to the gateway is full, paho's thread waits,
and the broker keeps the rest. The broker session is the gateway's (MQTT 5, clean_start=False,
a session expiry), so whatever was in flight when either process died is delivered again.

It takes orders only from the gateway, and ends when the gateway closes its stdin: on a clean
stop, or because the gateway died (SIGTERM and SIGINT are ignored, so that a stop signal sent
to both processes leaves the gateway the time to ack what it committed). It logs nothing
itself: its log lines go to the gateway as frames, through the gateway's formatter and
redactor. Only paho and the standard library are loaded here.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.source import link
from edge.words import describe_os_error

# MQTT 5 reason code of a DISCONNECT sent because another client took our client id.
SESSION_TAKEN_OVER = 142
READ_SIZE = 65536


def uncovered(filters: list[str], topics: list[str]) -> list[str]:
    """The topics (once each, in order) that none of the filters covers."""
    return [topic for topic in dict.fromkeys(topics)
            if not any(mqtt.topic_matches_sub(f, topic) for f in filters)]


class Connection:
    """One broker connection: what it receives goes to the gateway as frames on `out`; the
    gateway's frames come to `obey`."""

    def __init__(self, config: dict[str, Any], out: int) -> None:
        self._config = config
        self._out = out
        self._device_topics: list[str] = config["topics"]
        self._watched_only = uncovered(self._device_topics, config["watched"])
        self._seq = 0
        # (seq, mid, qos, connection) of each message handed over and not yet acked. The
        # connection number tells a message of a connection since lost: its mid means nothing
        # on the next one (the broker delivers it again, with the gateway's ack to follow).
        self._unacked: deque[tuple[int, int, int, int]] = deque()
        self._connection = 0
        self._pending_subscription: int | None = None
        self._problem: str | None = None
        self._closing = False
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        config = self._config
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config["client_id"],
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if config["username"]:
            client.username_pw_set(config["username"], config["password"])
        if config["ca_file"]:
            client.tls_set(ca_certs=config["ca_file"], cert_reqs=ssl.CERT_REQUIRED)
        # paho annotates the delays as int, but only compares, doubles and adds them to the
        # monotonic clock: fractions of a second (reconnect_min defaults to 0.5) work as such.
        client.reconnect_delay_set(config["reconnect_min"], config["reconnect_max"])
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self._config["session_expiry"]
        properties.ReceiveMaximum = self._config["receive_maximum"]
        self._client.connect_async(self._config["host"], self._config["port"],
                                   keepalive=self._config["keepalive"], clean_start=False,
                                   properties=properties)
        self._client.loop_start()

    def obey(self, kind: bytes, body: bytes) -> None:
        """One of the gateway's frames."""
        if kind == link.ACK:
            self._ack_through(link.read_ack(body))
        elif kind == link.PUBLISH:
            topic, payload = link.read_publish(body)
            self._client.publish(topic, payload, qos=1)
        elif kind == link.WATCH:
            self._watch(json.loads(body))

    def close(self) -> None:
        """Send the acks given so far, then disconnect."""
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()

    def _ack_through(self, seq: int) -> None:
        unacked = self._unacked
        while unacked and unacked[0][0] <= seq:
            _, mid, qos, connection = unacked.popleft()
            if connection == self._connection:
                self._client.ack(mid, qos)

    def _watch(self, topics: list[str]) -> None:
        only = uncovered(self._device_topics, topics)
        added = [t for t in only if t not in self._watched_only]
        removed = [t for t in self._watched_only if t not in only]
        self._watched_only = only
        if self._client.is_connected():
            if added:
                self._client.subscribe([(topic, 1) for topic in added])
            if removed:
                self._client.unsubscribe(removed)

    def _send(self, data: bytes) -> None:
        """Only paho's thread writes (every callback runs there): frames never interleave."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._out, view):]
        except OSError:
            os._exit(0)  # the gateway is gone: nothing here may be acked any more

    def _state(self, connected: bool, subscribed: bool = False) -> None:
        self._send(link.json_frame(link.STATE, {"connected": connected,
                                                "subscribed": subscribed}))

    def _log(self, level: int, message: str) -> None:
        self._send(link.json_frame(link.LOG, {"level": level, "message": message}))

    # -- paho callbacks (paho's network thread) ---------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._seq += 1
        if msg.qos:
            self._unacked.append((self._seq, msg.mid, msg.qos, self._connection))
        # The topic's bytes as received: `msg.topic` decodes them, and raises on bytes that are
        # not UTF-8, which would end paho's thread (the gateway decodes them without raising).
        self._send(link.message_frame(self._seq, time.time(), msg.retain, msg._topic,
                                      bytes(msg.payload)))

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            self._trouble(logging.ERROR, f"the broker {self._where()} refused the connection: "
                          f"{reason_code} (check mqtt.username and mqtt.password); "
                          f"{self._retrying()}")
            return
        self._problem = None
        self._connection += 1
        self._state(True)
        self._log(logging.INFO, f"connected to broker {self._where()} "
                                f"(session present: {flags.session_present})")
        # Renewed on every connect: a broker that lost its state must not leave us deaf.
        result, mid = client.subscribe([(t, 1) for t in self._topics()])
        if result == mqtt.MQTT_ERR_SUCCESS:
            self._pending_subscription = mid

    def _topics(self) -> list[str]:
        return self._device_topics + self._watched_only

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        if mid != self._pending_subscription:
            return
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            self._log(logging.ERROR, f"broker refused our subscriptions: {', '.join(failed)}")
            return
        self._log(logging.INFO, f"subscribed to {', '.join(self._topics())}")
        self._state(True, subscribed=True)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._trouble(logging.WARNING, f"the broker {self._where()} is unreachable: "
                      f"{self._why_unreachable()}; {self._retrying()}")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self._connection += 1
        if self._closing:
            return
        self._state(False)
        if reason_code.value == SESSION_TAKEN_OVER:
            self._trouble(logging.ERROR, f"another client connected to {self._where()} with our "
                          f"client id {self._config['client_id']!r} and took our session: is a "
                          "second gateway running with the same gateway.id? Presses go to "
                          f"whichever holds the session; {self._retrying()}")
        else:
            self._trouble(logging.WARNING, f"disconnected from broker {self._where()} "
                          f"({reason_code}); {self._retrying()}")

    def _trouble(self, level: int, problem: str) -> None:
        """Log a connection problem when it is new: a broker down for an hour is one line."""
        if problem != self._problem:
            self._problem = problem
            self._log(level, problem)

    def _where(self) -> str:
        return f"{self._config['host']}:{self._config['port']}"

    def _retrying(self) -> str:
        return (f"retrying after {self._config['reconnect_min']:g} s, backing off to every "
                f"{self._config['reconnect_max']:g} s")

    def _why_unreachable(self) -> str:
        """paho does not say why a connection failed: one plain TCP attempt tells."""
        try:
            with socket.create_connection((self._config["host"], self._config["port"]),
                                          timeout=2):
                return "the TCP connection opens, but the MQTT handshake failed (TLS? port?)"
        except OSError as exc:
            return describe_os_error(exc)


def main() -> None:
    """Connect as the first frame (CONFIG) says, then obey the gateway's frames until it closes
    the pipe."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    source, out = sys.stdin.fileno(), sys.stdout.fileno()
    frames = link.Frames()
    connection: Connection | None = None
    while chunk := os.read(source, READ_SIZE):
        for kind, body in frames.feed(chunk):
            if connection is not None:
                connection.obey(kind, body)
            elif kind == link.CONFIG:
                connection = Connection(json.loads(body), out)
                connection.start()
    if connection is not None:
        connection.close()


if __name__ == "__main__":
    main()
