"""A real Mosquitto started with the project's own deploy/mosquitto.conf and mosquitto.acl.

Only what cannot be the same in a test is changed: the listener (a free port on 127.0.0.1),
where the password file is (made here with `mosquitto_passwd -b`), where persistence and the
log go, and the user to run as. The ACL is deploy/mosquitto.acl as shipped (the gateway's and
the Zigbee2MQTT bridge's blocks), with the test's device blocks appended as an operator does:
rendered by edge/tools/broker_acl.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.tools.broker_acl import SHIPPED_ACCOUNTS, render_acl
from tests.helpers.support import Broker, free_port, wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SHIPPED_CONF = DEPLOY / "mosquitto.conf"
SHIPPED_ACL = DEPLOY / "mosquitto.acl"


def make_password_file(path: Path, accounts: dict[str, str]) -> None:
    tool = shutil.which("mosquitto_passwd")
    assert tool, "mosquitto_passwd is not installed (package mosquitto)"
    path.unlink(missing_ok=True)
    for n, (user, password) in enumerate(accounts.items()):
        create = ["-c"] if n == 0 else []
        subprocess.run([tool, *create, "-b", str(path), user, password], check=True,
                       capture_output=True, timeout=30)
    path.chmod(0o600)


def deploy_acl(devices: Iterable[tuple[str, str]], extra: str = "") -> str:
    """deploy/mosquitto.acl as shipped, then the blocks of `devices` ((role, id) pairs) as
    the renderer makes them, then `extra` (raw ACL lines of the test's own)."""
    shipped = SHIPPED_ACL.read_text()
    assert shipped.endswith("\n"), "deploy/mosquitto.acl must end with a newline"
    return shipped + render_acl(devices, header=False) + extra


def deploy_conf(port: int, folder: Path, passwd: Path, acl: Path = SHIPPED_ACL) -> str:
    """deploy/mosquitto.conf with the test's port and paths; everything else as shipped."""
    text = SHIPPED_CONF.read_text()
    swaps = {
        "listener 1883\n": f"listener {port} 127.0.0.1\n",
        "password_file /etc/mosquitto/passwd\n": f"password_file {passwd}\n",
        "acl_file /etc/mosquitto/mashang.acl\n": f"acl_file {acl}\n",
    }
    for shipped, local in swaps.items():
        assert text.count(shipped) == 1, f"deploy/mosquitto.conf no longer has {shipped!r}"
        text = text.replace(shipped, local)
    # What Debian's main file provides, and the user to run as (root may not drop to
    # `mosquitto`, which could not read the test's folders).
    text += f"\npersistence_location {folder}/\nlog_dest stderr\n"
    if os.geteuid() == 0:
        text += "user root\n"
    return text


class SecureBroker(Broker):
    """`accounts`: user name -> password, for the password file. `devices`: the (role, id)
    of each device account, whose blocks go after the shipped ACL (by default every account
    the shipped file has no block for is a button); `extra_acl`: raw lines after those."""

    def __init__(self, folder: Path, accounts: dict[str, str],
                 devices: Iterable[tuple[str, str]] | None = None, extra_acl: str = "") -> None:
        if devices is None:
            shipped = {account for _, account in SHIPPED_ACCOUNTS}
            devices = [("button", name) for name in accounts if name not in shipped]
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        passwd = folder / "passwd"
        make_password_file(passwd, accounts)
        super().__init__(folder, port)
        self.acl = folder / "mashang.acl"
        self.acl.write_text(deploy_acl(devices, extra_acl))
        conf = folder / "mosquitto.conf"
        conf.write_text(deploy_conf(port, folder, passwd, self.acl))
        self.accounts = accounts


class Client:
    """A paho MQTT 5 client that records what it receives and the broker's reason codes."""

    def __init__(self, port: int, username: str | None, password: str | None,
                 protocol: int = mqtt.MQTTv5, will: tuple[str, bytes] | None = None) -> None:
        self.name = username or "anonymous"
        self.received: list[tuple[str, bytes]] = []
        self.puback: dict[int, int] = {}  # mid -> reason code value
        self.suback: dict[int, list[int]] = {}
        self.connack: int | None = None
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"{self.name}-{uuid.uuid4().hex[:8]}",
                                   protocol=protocol)
        if username is not None:
            self._client.username_pw_set(username, password)
        if will is not None:
            self._client.will_set(will[0], will[1], qos=1, retain=False)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._client.on_connect_fail = lambda *args: self._connected.set()
        self._client.on_disconnect = self._on_disconnect
        properties = None
        if protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 0
        self._client.connect("127.0.0.1", port, properties=properties)
        self._client.loop_start()
        self._connected.wait(10)

    # -- callbacks (paho's thread) ---------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = reason_code.value
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connack is None:
            self.connack = reason_code.value
        self._connected.set()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.received.append((message.topic, message.payload))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.puback[mid] = reason_code.value

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._lock:
            self.suback[mid] = [code.value for code in reason_codes]

    # -- use -------------------------------------------------------------------------------

    @property
    def accepted(self) -> bool:
        return self.connack == 0 and self._client.is_connected()

    def subscribe(self, *filters: str) -> list[int]:
        result, mid = self._client.subscribe([(f, 1) for f in filters])
        assert result == mqtt.MQTT_ERR_SUCCESS
        return wait_for(lambda: self.suback.get(mid), 10, what=f"SUBACK for {filters}")

    def publish(self, topic: str, payload: bytes | str) -> int:
        """Publish at QoS 1 and wait for the PUBACK; returns its reason code (0 = accepted,
        135 = not authorized; an MQTT 3.1.1 broker acks a refused publish all the same)."""
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return wait_for(lambda: self.puback.get(info.mid, None) is not None
                        and (self.puback[info.mid],), 10, what=f"PUBACK for {topic}")[0]

    def got(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload in self.received if t == topic]

    def topics(self) -> set[str]:
        with self._lock:
            return {t for t, _ in self.received}

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@contextmanager
def clients(port: int, accounts: dict[str, str], *names: str) -> Iterator[list[Client]]:
    opened = [Client(port, name, accounts[name]) for name in names]
    try:
        yield opened
    finally:
        for client in opened:
            client.close()
