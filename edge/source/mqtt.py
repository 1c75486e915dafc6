"""Ingest: the MQTT side. Subscribes to the device topics and hands each message on, unacked.

The broker connection itself runs in a process of its own, the MQTT process
(`edge.source.mqtt_process`, started here and fed over a pipe, `edge.source.link`): paho's
packet handling, which costs as much interpreter time as all of the gateway's own work, then
runs beside the gateway instead of taking turns with it for one interpreter lock. Here, the
`mqtt-in` thread reads what the MQTT process hands over, parses each message and delivers it to
the pipeline, still unacked; `ack(seq)` tells the MQTT process to ack every message up to
`seq`, which it does in the order they came.

The broker keeps a persistent session for us (MQTT 5, clean_start=False, a session expiry), so
whatever was in flight when either process died is redelivered. Should the MQTT process end
while the gateway runs, `on_failure` says so, and the gateway stops for its supervisor to
start both again.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edge.config import MqttSection
from edge.events import moment
from edge.source import link
from edge.source.adapters import AdaptersSection, RepeatFilter, adapter_subscriptions, translate
from edge.source.messages import DeviceMessage, parse_message
from mashang.topics import subscriptions

log = logging.getLogger(__name__)

PROCESS = "edge.source.mqtt_process"
# Bytes read from the MQTT process at once: the messages parsed before the batch is handed on.
READ_SIZE = 8192
# Seconds the MQTT process gets to send its last acks and disconnect when the gateway stops.
CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Received:
    """What one MQTT message carried (an adapter's native message may carry several, or none
    worth an event), and its number in arrival order: acks name the last committed one."""

    messages: tuple[DeviceMessage, ...]
    seq: int


class Ingest:
    def __init__(
        self,
        config: MqttSection,
        *,
        client_id: str,
        topic_root: str,
        deliver: Callable[[list[Received]], object],
        adapters: AdaptersSection | None = None,
        on_failure: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._adapters = adapters or AdaptersSection(enabled=False)
        self._repeats = RepeatFilter()
        self._config = config
        self._root = topic_root
        self._client_id = client_id
        self._deliver = deliver
        self._on_failure = on_failure
        self._accepting = True
        self._closing = False
        self.subscribed = threading.Event()
        self._connected = False
        # Devices' state topics watched for the downlink's indicators (`watch`).
        self._watched: frozenset[str] = frozenset()
        self._watched_list: list[str] = []
        self._observe: Callable[[str, bytes], None] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        # Published before start() (the indicators ask their devices' states as they are
        # made): sent once the MQTT process runs, which publishes them once connected.
        self._early: list[bytes] = []
        # Frames to the MQTT process come from the commit thread, the loop and the indicators'
        # timers: one at a time.
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="mqtt-in", daemon=True)

    def device_topics(self) -> list[str]:
        return subscriptions(self._root) + adapter_subscriptions(self._adapters)

    def watch(self, topics: list[str], observe: Callable[[str, bytes], None]) -> None:
        """Hand every message on these exact topics (indicators' states) to `observe` as well;
        the MQTT process subscribes to those no device filter covers. Replaces the list."""
        self._observe = observe
        self._watched, self._watched_list = frozenset(topics), list(topics)
        if self._process is not None:  # else the configuration carries them
            self._send(link.json_frame(link.WATCH, self._watched_list))

    def start(self) -> None:
        # -S: no site module (its .pth files and what they import, 2 MB resident): the MQTT
        # process is given this interpreter's path instead, and where `edge` lies.
        path = [str(Path(__file__).resolve().parents[2]), *sys.path]
        self._process = subprocess.Popen(
            [sys.executable, "-S", "-m", PROCESS], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            bufsize=0, env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p),
                            "MALLOC_ARENA_MAX": "1"},  # as the gateway (edge.gateway)
        )
        self._send(link.json_frame(link.CONFIG, self._process_config()))
        for data in self._early:
            self._send(data)
        self._early.clear()
        self._reader.start()

    def _process_config(self) -> dict[str, Any]:
        config = self._config
        return {
            "host": config.host, "port": config.port, "client_id": self._client_id,
            "username": config.username,
            "password": config.password.get_secret_value() if config.password else None,
            "ca_file": str(config.ca_file) if config.ca_file else None,
            "keepalive": config.keepalive, "session_expiry": config.session_expiry,
            "receive_maximum": config.receive_maximum,
            "reconnect_min": config.reconnect_min, "reconnect_max": config.reconnect_max,
            "topics": self.device_topics(), "watched": self._watched_list,
        }

    def stop_taking(self) -> None:
        """Messages that arrive from now on stay unacked: the broker keeps them for next time."""
        self._accepting = False

    def close(self) -> None:
        """The MQTT process sends the acks it was given, disconnects and ends."""
        self._closing = True
        process = self._process
        if process is None:
            return
        with self._write_lock:
            self._pipe_in(process).close()
        try:
            process.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("the MQTT process did not end within %.0f s: killed", CLOSE_TIMEOUT)
            process.kill()
            process.wait()
        self._reader.join(CLOSE_TIMEOUT)

    def ack(self, seq: int) -> None:
        """Every message up to `seq` is committed."""
        self._send(link.ack_frame(seq))

    def publish(self, topic: str, payload: bytes) -> None:
        """Feedback to a device, at QoS 1 so that a button that was briefly away still gets it."""
        self._send(link.publish_frame(topic, payload))

    @property
    def connected(self) -> bool:
        return self._connected

    def _send(self, data: bytes) -> None:
        with self._write_lock:
            if self._process is None:
                self._early.append(data)
                return
            pipe = self._pipe_in(self._process)
            if pipe.closed:
                return
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(pipe.fileno(), view):]
            except OSError:
                pass  # the MQTT process is gone: `mqtt-in` reads the end and says so

    @staticmethod
    def _pipe_in(process: subprocess.Popen[bytes]) -> IO[bytes]:
        assert process.stdin is not None  # started with stdin=PIPE
        return process.stdin

    # -- the mqtt-in thread -------------------------------------------------------------------

    def _read(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None  # started with stdout=PIPE
        try:
            self._take(process.stdout.fileno())
        except Exception:
            log.exception("reading from the MQTT process failed")
        self._connected = False
        self.subscribed.clear()
        if not self._closing:
            try:
                status: int | str = process.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                status = "still running"
            self._on_failure(f"the MQTT process ended (exit status {status})")

    def _take(self, source: int) -> None:
        frames = link.Frames()
        while chunk := os.read(source, READ_SIZE):
            batch: list[Received] = []
            for kind, body in frames.feed(chunk):
                if kind == link.MESSAGE:
                    received = self._received(link.read_message(body))
                    if received is not None:
                        batch.append(received)
                elif kind == link.STATE:
                    state = json.loads(body)
                    self._connected = state["connected"]
                    if state["subscribed"]:
                        self.subscribed.set()
                    else:
                        self.subscribed.clear()
                elif kind == link.LOG:
                    line = json.loads(body)
                    log.log(line["level"], "%s", line["message"])
            if batch:
                self._deliver(batch)  # waits while the pipeline holds all it may

    def _received(self, message: link.Message) -> Received | None:
        if not self._accepting:
            return None
        received_at = moment(message.received_at)
        topic, payload = message.topic, message.payload
        watched = topic in self._watched
        try:
            if watched and self._observe is not None:
                self._observe(topic, payload)
            messages = translate(
                topic, payload, received_at, self._adapters,
                topic_root=self._root, retained=message.retain, repeats=self._repeats,
            )
            if messages is None:
                messages = [] if watched else [parse_message(self._root, topic, payload,
                                                             received_at)]
        except Exception as exc:
            # A bug met by one message must not end this thread (every later press would go
            # unheard): the message becomes a rejection, committed and acked like any.
            log.exception("could not read a message on %s", topic[:200])
            messages = [DeviceMessage(topic, None, None, None, payload, received_at,
                                      rejection=f"the gateway could not read this message: "
                                                f"{type(exc).__name__}: {exc}"[:500])]
        # Even a message with nothing to record goes through the pipeline, so that acks keep
        # the order in which the messages arrived.
        return Received(tuple(messages), message.seq)
