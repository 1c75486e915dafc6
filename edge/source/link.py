"""The pipe between the gateway and its MQTT process (`edge.source.mqtt_process`).

Both directions carry frames: a kind (one byte), the body's length (four bytes, little
endian), the body. Standard library only: the MQTT process imports this and paho, nothing
else of the gateway.

From the MQTT process (its stdout):

    MESSAGE  seq, received_at, retain, topic, payload: one MQTT message, unacked. `seq`
             numbers the messages handed over, 1, 2, 3… for the life of the process.
    STATE    whether it is connected, and subscribed (JSON).
    LOG      a line for the gateway's log: level and text (JSON). The MQTT process has no
             log of its own: its lines get the gateway's format and redaction.

To the MQTT process (its stdin):

    CONFIG   the first frame: where and how to connect (JSON), the password included (never
             on the command line, where `ps` shows it).
    ACK      every message up to this `seq` is committed: ack them (in the order received).
    PUBLISH  topic and payload, published at QoS 1 (feedback to a device).
    WATCH    the full list of topics watched besides the device filters (JSON), for the MQTT
             process to subscribe to the ones no filter covers.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

__all__ = [
    "ACK",
    "CONFIG",
    "LOG",
    "MESSAGE",
    "PUBLISH",
    "STATE",
    "WATCH",
    "Frames",
    "Message",
    "ack_frame",
    "frame",
    "json_frame",
    "message_frame",
    "publish_frame",
    "read_ack",
    "read_message",
    "read_publish",
]

MESSAGE, STATE, LOG = b"M", b"S", b"L"
CONFIG, ACK, PUBLISH, WATCH = b"C", b"A", b"P", b"W"
HEADER = struct.Struct("<cI")
# seq, received_at (unix seconds), retain, topic length: then the topic, then the payload.
MESSAGE_HEAD = struct.Struct("<QdBH")
SEQ = struct.Struct("<Q")
TOPIC_LENGTH = struct.Struct("<H")


class Message(NamedTuple):
    """One message as the MQTT process handed it over. (A named tuple, not a dataclass: the
    dataclasses module would load `inspect` into the MQTT process, a megabyte for nothing.)"""

    seq: int
    received_at: float
    retain: bool
    topic: str
    payload: bytes


def frame(kind: bytes, body: bytes) -> bytes:
    return HEADER.pack(kind, len(body)) + body


def json_frame(kind: bytes, value: Any) -> bytes:
    return frame(kind, json.dumps(value).encode())


def message_frame(seq: int, received_at: float, retain: bool, topic: bytes,
                  payload: bytes) -> bytes:
    head = MESSAGE_HEAD.pack(seq, received_at, retain, len(topic))
    return HEADER.pack(MESSAGE, len(head) + len(topic) + len(payload)) + head + topic + payload


def read_message(body: bytes) -> Message:
    seq, received_at, retain, length = MESSAGE_HEAD.unpack_from(body)
    start = MESSAGE_HEAD.size
    # MQTT topics are UTF-8 (paho checked); `replace` keeps a broken one readable, never raises.
    topic = body[start:start + length].decode(errors="replace")
    return Message(seq, received_at, bool(retain), topic, body[start + length:])


def ack_frame(seq: int) -> bytes:
    return frame(ACK, SEQ.pack(seq))


def read_ack(body: bytes) -> int:
    seq: int = SEQ.unpack(body)[0]
    return seq


def publish_frame(topic: str, payload: bytes) -> bytes:
    encoded = topic.encode()
    return frame(PUBLISH, TOPIC_LENGTH.pack(len(encoded)) + encoded + payload)


def read_publish(body: bytes) -> tuple[str, bytes]:
    (length,) = TOPIC_LENGTH.unpack_from(body)
    start = TOPIC_LENGTH.size
    return body[start:start + length].decode(), body[start + length:]


class Frames:
    """Splits a byte stream into frames, however the reads cut it."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(kind, body) of every frame completed by `chunk`."""
        data = self._pending + chunk if self._pending else chunk
        position = 0
        while len(data) - position >= HEADER.size:
            kind, length = HEADER.unpack_from(data, position)
            end = position + HEADER.size + length
            if end > len(data):
                break
            yield kind, data[position + HEADER.size:end]
            position = end
        self._pending = data[position:]
