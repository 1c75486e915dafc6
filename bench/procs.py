"""The processes a benchmark runs, and what /proc says about them.

The broker, the reference central and the gateway are the lab's wrappers (lab/processes.py),
so that the bench starts them exactly as the tests and an operator do. The broker gets a
configuration of its own (no queue limit: a benchmark must not lose messages to the broker's
per-client cap), and the no-op receiver and the peers (Node-RED, the ThingsBoard IoT Gateway
with its emulated ThingsBoard) are installed and started here.
"""

from __future__ import annotations

import contextlib
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
_FAMILIES: dict[int, tuple[float, list[int]]] = {}


class BenchError(Exception):
    """A figure could not be measured: the harness says why instead of a number."""


class InstallError(BenchError):
    """A peer could not be installed (no network to its registry, no npm): it is not
    measured, and the bench goes on with the others."""


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


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        # The command name may hold spaces: the fields we want follow its closing parenthesis.
        return handle.read().rsplit(")", 1)[1].split()


def family(pid: int) -> list[int]:
    """The process and every process below it: a program that forks helpers (a second
    process for its commits, a peer's workers) is measured whole. Looked up again at most
    once a second (it reads every process's stat), so that sampling stays cheap."""
    known = _FAMILIES.get(pid)
    if known and time.monotonic() - known[0] < 1.0:
        return known[1]
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(_stat_fields(int(entry))[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    _FAMILIES[pid] = (time.monotonic(), found)
    return found


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0  # a zombie has no memory left


def _family_sum(pid: int, field: str) -> int:
    total = _status_kb(pid, field)
    for child in family(pid)[1:]:
        with contextlib.suppress(OSError):
            total += _status_kb(child, field)
    return total


def rss_bytes(pid: int) -> int:
    """Resident set size now (VmRSS of /proc/PID/status), the process and its children
    added up (so a shared library's pages count once for each of them)."""
    return _family_sum(pid, "VmRSS:")


def anon_bytes(pid: int) -> int:
    """The anonymous part of that (RssAnon: the heap, what no other process shares)."""
    return _family_sum(pid, "RssAnon:")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process and its living children have used so far."""
    total = 0.0
    for member in family(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            if member == pid:
                raise
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


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
            # As root, mosquitto drops to its own user, which could not write its persistence.
            f"{'user root' if os.geteuid() == 0 else ''}\n"
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


def received_count(gateway: Gateway) -> int:
    """Messages the gateway has received from devices, by its own counter: the sum of the
    mashang_messages_received_total series on its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.http_port}/metrics",
                                timeout=5) as response:
        text = response.read().decode()
    if "# TYPE mashang_messages_received" not in text:
        raise BenchError("the gateway's /metrics has no mashang_messages_received counter")
    # No series yet until the first message arrives (its labels are not known before).
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("mashang_messages_received_total")))


def taskset_prefix(cores: str = "0") -> list[str]:
    """What runs a command on these cores only, threads and children included (util-linux)."""
    taskset = shutil.which("taskset")
    if taskset is None:
        raise BenchError("taskset is not installed (util-linux): needed for the pinned figures")
    return [taskset, "-c", cores]


def elsewhere() -> list[str]:
    """For the pinned figures' broker, publishers and receiver: every core but core 0, which
    the measured process has to itself (on a Raspberry Pi the broker and the system run on
    the other cores too). Nothing on a single-core machine."""
    count = os.cpu_count() or 1
    return taskset_prefix(f"1-{count - 1}") if count > 1 else []


def pin(process: Process, prefix: list[str] | None = None) -> Process:
    """Start the process on core 0 only (or under `prefix`): a single core of a board."""
    process.argv = [*(taskset_prefix() if prefix is None else prefix), *process.argv]
    return process


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

# The peers are installed once into a cache folder outside the repository.
CACHE = Path(os.environ.get("MASHANG_BENCH_CACHE", Path.home() / ".cache/mashang-bench"))
NODE_RED_VERSION = "4"
PEER_DIR = REPO / "bench" / "peers" / "node-red"


def node_red_script() -> Path:
    """Install node-red@4 into the cache folder (outside the repository) once; its red.js."""
    home = CACHE / "node-red"
    script = home / "node_modules" / "node-red" / "red.js"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise InstallError("Node.js and npm are needed for the Node-RED peer (apt-get install npm)")
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
        raise InstallError(f"npm install node-red@{NODE_RED_VERSION} failed (is the package "
                           f"registry reachable?): {result.stderr[-500:]}")
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
        before = len(self.output())  # a restart appends to the same log
        super().start()
        wait_until(lambda: self._connected(before), 60, "Node-RED to connect to the broker",
                   interval=0.1)

    def _connected(self, since: int) -> bool:
        if not self.running():
            raise BenchError(f"Node-RED exited:\n{self.output()[-2000:]}")
        return "Connected to broker" in self.output()[since:]

    def version(self) -> str:
        manifest = CACHE / "node-red" / "node_modules" / "node-red" / "package.json"
        try:
            return json.loads(manifest.read_text())["version"]
        except (OSError, ValueError, KeyError):
            return "?"


# -- the ThingsBoard IoT Gateway -------------------------------------------------------------------

THINGSBOARD_VERSION = "3.8.5"
THINGSBOARD_DIR = REPO / "bench" / "peers" / "thingsboard"


def _install_step(argv: list[str], what: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise InstallError(f"{what}: still running after 900 s") from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        # pip's own verdict is its last ERROR line; what comes before is noise.
        detail = next((line for line in reversed(lines) if line.startswith("ERROR")),
                      lines[-1] if lines else f"exit status {result.returncode}")
        raise InstallError(f"{what} failed (is the package registry reachable?): {detail}")


def thingsboard_home() -> Path:
    """Install thingsboard-gateway into a venv of its own in the cache folder (outside the
    repository) once, with pip from the package registry; the venv's folder."""
    venv = CACHE / "thingsboard-gateway" / "venv"
    stamp = venv / f".installed-{THINGSBOARD_VERSION}"
    if stamp.exists():
        return venv
    if not (venv / "bin" / "python").exists():
        _install_step([sys.executable, "-m", "venv", str(venv)], f"python -m venv {venv}")
    _install_step([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check", f"thingsboard-gateway=={THINGSBOARD_VERSION}"],
                  f"pip install thingsboard-gateway=={THINGSBOARD_VERSION} into {venv}")
    stamp.touch()
    return venv


class EmulatedThingsBoard(Process):
    """ThingsBoard as the gateway sees it: a second Mosquitto (its MQTT transport) and
    bench.thingsboard, which answers the session-limits request and counts the telemetry."""

    def __init__(self, folder: Path) -> None:
        self.broker = Broker(folder / "broker")
        self.port = self.broker.port
        self.control_port = free_port()
        self._control = f"http://127.0.0.1:{self.control_port}"
        argv = [sys.executable, "-m", "bench.thingsboard", "--broker-port", str(self.port),
                "--control-port", str(self.control_port)]
        super().__init__("thingsboard-server", argv, folder, env={"PYTHONPATH": str(REPO)})

    def start(self) -> None:
        self.broker.start()
        super().start()
        wait_until(lambda: listening(self.control_port), 20, "the emulated ThingsBoard")

    def terminate(self, timeout: float = 30.0) -> int:
        try:
            return super().terminate(timeout)
        finally:
            stop(self.broker)

    def stats(self) -> dict[str, Any]:
        return http_json(f"{self._control}/stats")

    def reset(self) -> None:
        http_json(f"{self._control}/reset", "POST")

    def refuse(self) -> None:
        """ThingsBoard goes away: its broker stops (keeping what it holds on disk)."""
        stop(self.broker)

    def recover(self) -> None:
        self.broker.start()


class ThingsBoardGateway(Process):
    """The ThingsBoard IoT Gateway as shipped (its own `thingsboard-gateway` command and
    logging configuration), with bench/peers/thingsboard/'s configuration: the MQTT connector
    on the community broker, SQLite storage, the emulated ThingsBoard upstream."""

    def __init__(self, folder: Path, broker_port: int, server_port: int) -> None:
        venv = thingsboard_home()
        config = folder / "config"
        config.mkdir(parents=True, exist_ok=True)
        (folder / "logs").mkdir(exist_ok=True)
        main = json.loads((THINGSBOARD_DIR / "tb_gateway.json").read_text())
        main["thingsboard"]["port"] = server_port
        (config / "tb_gateway.json").write_text(json.dumps(main, indent=2))
        connector = json.loads((THINGSBOARD_DIR / "mqtt.json").read_text())
        connector["broker"]["port"] = broker_port
        (config / "mqtt.json").write_text(json.dumps(connector, indent=2))
        shipped = next(venv.glob("lib/python*/site-packages/thingsboard_gateway/config"))
        shutil.copy(shipped / "logs.json", config / "logs.json")
        super().__init__("thingsboard-gateway", [str(venv / "bin" / "thingsboard-gateway")],
                         folder, env={"TB_GW_CONFIG_DIR": str(config)})

    def start(self) -> None:
        # Its storage (./data/) and its log files (./logs/) are relative to where it runs.
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.folder)
        log.close()

    def version(self) -> str:
        return THINGSBOARD_VERSION


def kill_quietly(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
