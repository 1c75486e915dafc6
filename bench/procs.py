"""The processes a benchmark runs, and what /proc says about them.

The broker, the reference central and the gateway are the lab's wrappers (lab/processes.py),
so that the bench starts them exactly as the tests and an operator do. The broker gets a
configuration of its own (no queue limit: a benchmark must not lose messages to the broker's
per-client cap), and the no-op receiver and Node-RED are started here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers.support import (
    Central,
    Gateway,
    Process,
    free_port,
    mosquitto_binary,
    set_option,
    wait_for,
)

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class BenchError(Exception):
    """A figure could not be measured: the harness says why instead of a number."""


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02) -> Any:
    """The lab's wait_for, failing as a BenchError: a figure that cannot be measured."""
    try:
        return wait_for(predicate, timeout, interval, what)
    except AssertionError as exc:
        raise BenchError(str(exc)) from None


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def http_json(url: str, method: str = "GET", timeout: float = 10.0) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


# -- /proc -------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size now (VmRSS)."""
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_BYTES


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as handle:
        # The command name may hold spaces: the fields we want follow its closing parenthesis.
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_share(pid: int, seconds: float) -> float:
    """Share of one core the process used over the next `seconds` (1.0 = a whole core)."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


# -- the broker --------------------------------------------------------------------------------


class Broker(Process):
    """Mosquitto as a gateway's site runs it (persistence on), but with no per-client queue cap,
    so that a subscriber slower than the publishers finds every message waiting for it."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "autosave_interval 1800\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
        )
        super().__init__("mosquitto", [mosquitto_binary(), "-c", str(conf)], folder)

    def start(self) -> None:
        super().start()
        wait_until(lambda: listening(self.port), 10, f"mosquitto on port {self.port}")


# -- the gateway and the central ---------------------------------------------------------------


def make_gateway(folder: Path, broker_port: int, central_url: str, **options: str) -> Gateway:
    """A gateway with the shipped defaults for everything that shapes performance (the tests'
    wrapper shortens timeouts and lingers), and `options` as {"section.key": "toml value"}."""
    gateway = Gateway(folder, broker_port, central_url)
    defaults = {
        "central.timeout": "10.0",
        "central.backoff_min": "0.2",
        "central.backoff_max": "60.0",
        "outbox.log_linger": "0.5",
    }
    for dotted, value in {**defaults, **options}.items():
        section, key = dotted.split(".", 1)
        set_option(gateway.config, section, key, value)
    return gateway


def start_timed(gateway: Gateway, timeout: float = 30.0) -> float:
    """Start the gateway; seconds from exec to its first 200 on /healthz (polled every 5 ms)."""
    started = time.monotonic()
    gateway.start(wait_ready=False)
    url = f"http://127.0.0.1:{gateway.http_port}/healthz"

    def healthy() -> bool:
        if not gateway.running():
            raise BenchError(f"gateway exited:\n{gateway.output()[-2000:]}")
        return http_status(url, timeout=1.0) == 200

    wait_until(healthy, timeout, "the gateway's /healthz", interval=0.005)
    return time.monotonic() - started


def start_central(folder: Path, port: int | None = None) -> Central:
    central = Central(folder, port=port)
    central.start()
    return central


def stop(process: Process | None) -> None:
    """SIGTERM, then SIGKILL if it lingers; never raises."""
    if process is None or process.proc is None or process.proc.poll() is not None:
        return
    try:
        process.terminate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


class OutboxWatch:
    """Reads the gateway's outbox depth from outside, read-only, as `mashang outbox` would.

    SQLite in WAL mode lets a reader look while the gateway writes, without blocking it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        return self._db

    def depth(self) -> int:
        """Events held (alerts and logs); 0 before the gateway has made its outbox."""
        if not self.path.exists():
            return 0
        try:
            row = self._connect().execute("SELECT sum(events) FROM depth").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0] or 0)

    def logs(self) -> int:
        """Logs held (alerts come and go during a drain; the backlog is logs)."""
        if not self.path.exists():
            return 0
        try:
            row = self._connect().execute("SELECT events FROM depth WHERE class = 1").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0] or 0) if row else 0

    def used_bytes(self) -> int:
        db = self._connect()
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


# -- the no-op receiver --------------------------------------------------------------------------


class Receiver(Process):
    """bench.receiver in its own process: the same HTTP receiver for the gateway and the peer."""

    def __init__(self, folder: Path, key: str, gateway_id: str) -> None:
        self.port = free_port()
        self.control_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._control = f"http://127.0.0.1:{self.control_port}"
        folder.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "bench.receiver", "--port", str(self.port),
                "--control-port", str(self.control_port), "--key", key,
                "--gateway-id", gateway_id]
        super().__init__("receiver", argv, folder, env={"PYTHONPATH": str(REPO)})

    def start(self) -> None:
        super().start()
        wait_until(lambda: listening(self.control_port) and listening(self.port), 20,
                   "the bench receiver")

    def stats(self) -> dict[str, Any]:
        return http_json(f"{self._control}/stats")

    def reset(self) -> None:
        http_json(f"{self._control}/reset", "POST")

    def refuse(self) -> None:
        http_json(f"{self._control}/refuse", "POST")

    def recover(self) -> None:
        http_json(f"{self._control}/recover", "POST")


# -- Node-RED ------------------------------------------------------------------------------------

NODE_RED_VERSION = "4"
NODE_RED_HOME = Path(os.environ.get("MASHANG_BENCH_CACHE", Path.home() / ".cache/mashang-bench"))
PEER_DIR = REPO / "bench" / "peers" / "node-red"


def node_red_script() -> Path:
    """Install node-red@4 into the cache folder (outside the repository) once; its red.js."""
    home = NODE_RED_HOME / "node-red"
    script = home / "node_modules" / "node-red" / "red.js"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise BenchError("Node.js and npm are needed for the Node-RED peer (apt-get install npm)")
    home.mkdir(parents=True, exist_ok=True)
    manifest = home / "package.json"
    if not manifest.exists():
        manifest.write_text('{"name": "mashang-bench-node-red", "private": true}\n')
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
         f"node-red@{NODE_RED_VERSION}"],
        cwd=home, capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0 or not script.exists():
        raise BenchError(f"npm install node-red@{NODE_RED_VERSION} failed: {result.stderr[-500:]}")
    return script


class NodeRed(Process):
    """Node-RED running the shipped flow: MQTT in (QoS 1) → HTTP request to the receiver."""

    def __init__(self, folder: Path, broker_port: int, receiver_url: str) -> None:
        script = node_red_script()
        user_dir = folder / "node-red"
        user_dir.mkdir(parents=True, exist_ok=True)
        # Node-RED may write next to its flow file: it gets a copy, never the shipped one.
        shutil.copy(PEER_DIR / "flow.json", user_dir / "flow.json")
        self.port = free_port()
        env = {
            "MQTT_PORT": str(broker_port),
            "RECEIVER_URL": f"{receiver_url}/peer",
            "NODE_RED_PORT": str(self.port),
        }
        argv = [shutil.which("node") or "node", str(script), "--userDir", str(user_dir),
                "--settings", str(PEER_DIR / "settings.js"), str(user_dir / "flow.json")]
        super().__init__("node-red", argv, folder, env=env)

    def start(self) -> None:
        super().start()
        wait_until(lambda: self._connected(), 60, "Node-RED to connect to the broker",
                   interval=0.1)

    def _connected(self) -> bool:
        if not self.running():
            raise BenchError(f"Node-RED exited:\n{self.output()[-2000:]}")
        return "Connected to broker" in self.output()

    def version(self) -> str:
        manifest = NODE_RED_HOME / "node-red" / "node_modules" / "node-red" / "package.json"
        try:
            return json.loads(manifest.read_text())["version"]
        except (OSError, ValueError, KeyError):
            return "?"


def kill_quietly(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
