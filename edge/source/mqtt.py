"""Ingest: the MQTT side. Subscribes to the device topics and hands each message on, unacked.

The broker keeps a persistent session for us (MQTT 5, clean_start=False, a session expiry),
and paho runs with manual_ack: a message is acked only when the pipeline says its events are
committed. Whatever was in flight at a crash is redelivered by the broker.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttSection
from edge.events import now
from edge.source.adapters import AdaptersSection, RepeatFilter, adapter_subscriptions, translate
from edge.source.messages import DeviceMessage, parse_message
from edge.words import describe_os_error
from mashang.topics import subscriptions

log = logging.getLogger(__name__)

# MQTT 5 reason code of a DISCONNECT sent because another client took our client id.
SESSION_TAKEN_OVER = 142


@dataclass(frozen=True, slots=True)
class Received:
    """What one MQTT message carried (an adapter's native message may carry several, or none
    worth an event) and the handle to ack it once committed."""

    messages: tuple[DeviceMessage, ...]
    mid: int
    qos: int


class Ingest:
    def __init__(
        self,
        config: MqttSection,
        *,
        client_id: str,
        topic_root: str,
        deliver: Callable[[Received], None],
        adapters: AdaptersSection | None = None,
    ) -> None:
        self._adapters = adapters or AdaptersSection(enabled=False)
        self._repeats = RepeatFilter()
        self._config = config
        self._root = topic_root
        self._deliver = deliver
        self._accepting = True
        self.subscribed = threading.Event()
        self._pending_subscription: int | None = None
        self._client_id = client_id
        # Devices' state topics watched for the downlink's indicators (`watch`), and the ones
        # of them no device filter above covers, subscribed to on their own.
        self._watched: frozenset[str] = frozenset()
        self._watched_only: tuple[str, ...] = ()
        self._observe: Callable[[str, bytes], None] | None = None
        # What is wrong with the broker connection now, if anything: logged once per change.
        self._problem: str | None = None
        self._client = self._make_client(client_id)

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        config = self._config
        if config.username:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.ca_file:
            client.tls_set(ca_certs=str(config.ca_file), cert_reqs=ssl.CERT_REQUIRED)
        # paho annotates the delays as int, but only compares, doubles and adds them to the
        # monotonic clock: fractions of a second (reconnect_min defaults to 0.5) work as such.
        client.reconnect_delay_set(
            config.reconnect_min, config.reconnect_max  # type: ignore[arg-type]
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _topics(self) -> list[str]:
        return self._device_topics() + list(self._watched_only)

    def _device_topics(self) -> list[str]:
        return subscriptions(self._root) + adapter_subscriptions(self._adapters)

    def watch(self, topics: list[str], observe: Callable[[str, bytes], None]) -> None:
        """Hand every message on these exact topics (indicators' states) to `observe` as well,
        subscribing to those no device filter covers. Replaces the previous list."""
        covered = self._device_topics()
        only = tuple(t for t in dict.fromkeys(topics)
                     if not any(mqtt.topic_matches_sub(f, t) for f in covered))
        added = [t for t in only if t not in self._watched_only]
        removed = [t for t in self._watched_only if t not in only]
        self._observe = observe
        self._watched, self._watched_only = frozenset(topics), only
        if self._client.is_connected():
            if added:
                self._client.subscribe([(topic, 1) for topic in added])
            if removed:
                self._client.unsubscribe(removed)

    def start(self) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self._config.session_expiry
        properties.ReceiveMaximum = self._config.receive_maximum
        self._client.connect_async(
            self._config.host,
            self._config.port,
            keepalive=self._config.keepalive,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def stop_taking(self) -> None:
        """Messages that arrive from now on stay unacked: the broker keeps them for next time."""
        self._accepting = False

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            self._client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes) -> None:
        """Feedback to a device, at QoS 1 so that a button that was briefly away still gets it."""
        self._client.publish(topic, payload, qos=1)

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    # -- paho callbacks (paho's network thread) ---------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            self._trouble(logging.ERROR, f"the broker {self._where()} refused the connection: "
                          f"{reason_code} (check mqtt.username and mqtt.password); "
                          f"{self._retrying()}")
            return
        self._problem = None
        log.info(
            "connected to broker %s:%s (session present: %s)",
            self._config.host,
            self._config.port,
            flags.session_present,
        )
        # Renewed on every connect: a broker that lost its state must not leave us deaf.
        result, mid = client.subscribe([(topic, 1) for topic in self._topics()])
        if result == mqtt.MQTT_ERR_SUCCESS:
            self._pending_subscription = mid

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        if mid != self._pending_subscription:
            return
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            log.error("broker refused our subscriptions: %s", ", ".join(failed))
            return
        log.info("subscribed to %s", ", ".join(self._topics()))
        self.subscribed.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._trouble(logging.WARNING, f"the broker {self._where()} is unreachable: "
                      f"{self._why_unreachable()}; {self._retrying()}")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self.subscribed.clear()
        if not self._accepting:
            return
        if reason_code.value == SESSION_TAKEN_OVER:
            self._trouble(logging.ERROR, f"another client connected to {self._where()} with our "
                          f"client id {self._client_id!r} and took our session: is a second "
                          "gateway running with the same gateway.id? Presses go to whichever "
                          f"holds the session; {self._retrying()}")
        else:
            self._trouble(logging.WARNING, f"disconnected from broker {self._where()} "
                          f"({reason_code}); {self._retrying()}")

    def _trouble(self, level: int, problem: str) -> None:
        """Log a connection problem when it is new: a broker down for an hour is one line."""
        if problem != self._problem:
            self._problem = problem
            log.log(level, "%s", problem)

    def _where(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    def _retrying(self) -> str:
        config = self._config
        return (f"retrying after {config.reconnect_min:g} s, backing off to every "
                f"{config.reconnect_max:g} s")

    def _why_unreachable(self) -> str:
        """paho does not say why a connection failed: one plain TCP attempt tells."""
        try:
            with socket.create_connection((self._config.host, self._config.port), timeout=2):
                return "the TCP connection opens, but the MQTT handshake failed (TLS? port?)"
        except OSError as exc:
            return describe_os_error(exc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not self._accepting:
            return
        received_at = now()
        # paho declares bytes | bytearray; what it hands us is bytes, which bytes() returns as is.
        payload = bytes(msg.payload)
        watched = msg.topic in self._watched
        try:
            if watched and self._observe is not None:
                self._observe(msg.topic, payload)
            messages = translate(
                msg.topic, payload, received_at, self._adapters,
                topic_root=self._root, retained=msg.retain, repeats=self._repeats,
            )
            if messages is None:
                messages = [] if watched else [parse_message(self._root, msg.topic, payload,
                                                             received_at)]
        except Exception as exc:
            # A bug met by one message must not end paho's thread (every later press would
            # go unheard): the message becomes a rejection, committed and acked like any.
            log.exception("could not read a message on %s", msg.topic[:200])
            messages = [DeviceMessage(msg.topic, None, None, None, payload, received_at,
                                      rejection=f"the gateway could not read this message: "
                                                f"{type(exc).__name__}: {exc}"[:500])]
        # Even a message with nothing to record goes through the pipeline, so that acks keep
        # the order in which the messages arrived.
        self._deliver(Received(tuple(messages), msg.mid, msg.qos))
