"""A lab on one machine: a Mosquitto broker, the central and the gateway as real processes.

Each runs on free loopback ports in a folder of its own, so that the demo, the tests and the
benchmarks can start, kill, restart and inspect them the way an operator would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mashang.signing import public_key_text

ADMIN_TOKEN = "test-admin-token"
GATEWAY_ID = "gw-test"
GATEWAY_KEY = "test-gateway-key"
# The lab central's command signing key, and its public half that the lab gateway trusts.
COMMAND_SIGNING_KEY = "6d617368616e67206c616220636f6d6d616e64207369676e696e67206b657921"
COMMAND_KEY = public_key_text(
    Ed25519PrivateKey.from_private_bytes(bytes.fromhex(COMMAND_SIGNING_KEY)).public_key()
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = ""
):
    """Poll until predicate() is truthy; returns its value or fails naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(found).exists():
        raise RuntimeError("mosquitto is not installed: run ./scripts/setup")
    return found


class Process:
    """A child process whose output goes to a log file in the test's folder."""

    def __init__(self, name: str, argv: list[str], folder: Path, env: dict | None = None) -> None:
        self.name = name
        self.argv = argv
        self.folder = folder
        self.env = {**os.environ, **(env or {})}
        self.log_path = folder / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Broker(Process):
    def __init__(self, folder: Path, port: int | None = None, extra_conf: str = "") -> None:
        self.port = port or free_port()
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # As root, mosquitto drops to its own user, which cannot write this folder.
            f"{'user root' if os.geteuid() == 0 else ''}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 0\n"
            f"{extra_conf}"
        )
        super().__init__("mosquitto", [mosquitto_binary(), "-c", str(conf)], folder)

    def start(self) -> None:
        super().start()
        wait_for(self._listening, 10, what=f"mosquitto on port {self.port}")

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


def mashang(*args: str) -> list[str]:
    return [sys.executable, "-m", "mashang.cli", *args]


class Central(Process):
    """`command_signing_key=None`: the central makes its own on first start, as installed."""

    def __init__(self, folder: Path, port: int | None = None, extra: str = "",
                 command_signing_key: str | None = COMMAND_SIGNING_KEY,
                 database: str | None = None) -> None:
        """`database`: a PostgreSQL URL (lab/postgres.py); None, the SQLite file in `folder`."""
        self.port = port or free_port()
        self.database = database
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "central.toml"
        signing = (f'command_signing_key = "{command_signing_key}"\n'
                   if command_signing_key else "")
        self.config.write_text(
            "[central]\n"
            f'data_dir = "{folder}"\n'
            f'listen = "127.0.0.1:{self.port}"\n'
            f'admin_token = "{ADMIN_TOKEN}"\n'
            f"{signing}"
            f"{f'database = {json.dumps(database)}' if database else ''}\n"
            f"{extra}\n"
            "[gateways]\n"
            f'{GATEWAY_ID} = "{GATEWAY_KEY}"\n'
        )
        super().__init__("central", mashang("central", "--config", str(self.config)), folder)

    def start(self) -> None:
        super().start()
        wait_for(lambda: get_json(f"{self.url}/healthz") is not None, 40, what="the central")

    def events(self, event_type: str | None = None) -> list[dict]:
        """Every event the central holds (admin API), oldest first."""
        found, after = [], 0
        while True:
            query = f"after={after}&limit=10000" + (f"&type={event_type}" if event_type else "")
            page = get_json(f"{self.url}/v1/events?{query}", token=ADMIN_TOKEN)
            assert page is not None, "central did not answer /v1/events"
            found.extend(page["events"])
            if not page["events"]:
                return found
            after = page["next"]


class Gateway(Process):
    def __init__(
        self,
        folder: Path,
        broker_port: int,
        central_url: str,
        *,
        extra: str = "",
        sections: dict[str, str] | None = None,
        key: str = GATEWAY_KEY,
        command_key: str | None = COMMAND_KEY,
    ) -> None:
        self.http_port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.data_dir = folder / "data"
        self.config = folder / "gateway.toml"
        extra_sections = "".join(f"[{name}]\n{body}\n" for name, body in (sections or {}).items())
        self.config.write_text(
            "[gateway]\n"
            f'id = "{GATEWAY_ID}"\n'
            f'data_dir = "{self.data_dir}"\n'
            f"{extra}\n"
            "[mqtt]\n"
            'host = "127.0.0.1"\n'
            f"port = {broker_port}\n"
            "reconnect_min = 0.1\n"
            "reconnect_max = 1.0\n"
            "[central]\n"
            f'url = "{central_url}"\n'
            f'key = "{key}"\n'
            f"{f'command_key = {json.dumps(command_key)}' if command_key else ''}\n"
            "timeout = 2.0\n"
            "backoff_min = 0.05\n"
            "backoff_max = 1.0\n"
            "[http]\n"
            f'listen = "127.0.0.1:{self.http_port}"\n'
            "[outbox]\n"
            "log_linger = 0.05\n"
            f"{extra_sections}"
        )
        super().__init__("gateway", mashang("gateway", "--config", str(self.config)), folder)

    def start(self, wait_ready: bool = True) -> None:
        super().start()
        if wait_ready:
            self.wait_healthy()

    def wait_healthy(self, timeout: float = 20.0) -> None:
        def healthy() -> bool:
            assert self.running(), f"gateway exited:\n{self.output()[-3000:]}"
            return get_json(f"http://127.0.0.1:{self.http_port}/healthz") is not None

        wait_for(healthy, timeout, what="the gateway's /healthz")


def get_json(url: str, token: str | None = None) -> Any:
    """The JSON of a 200 answer, or None for anything else (refused, 5xx, 503...)."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None
