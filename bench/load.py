"""Load: `mosquitto_pub -l` publishers (bulk and paced), and the press prober for latency.

Bulk load is N `mosquitto_pub -l` processes at QoS 1, each one device publishing heartbeats
(`{root}/buttons/{id}/status`, one log event each) read from a file: far faster than any
Python publisher. Paced load feeds one `mosquitto_pub -l` through a pipe at a set rate. The
prober publishes help-button presses with paho, each stamped with the moment it was sent
(`t0`, an unknown field the gateway forwards in `data`), from a device of its own so that every
press opens an alert of its own.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from bench.procs import BenchError, kill_quietly

ROOT = "mashang/v1"


def mosquitto_pub() -> str:
    found = shutil.which("mosquitto_pub")
    if found is None:
        raise BenchError("mosquitto_pub is not installed: run ./scripts/setup")
    return found


def status_line(seq: int, clock: int | None = None) -> str:
    """A heartbeat; given a device clock's start (ms since the epoch), stamped with the
    device's own `ts` as well, one ms after the one before, so that no two of a device's
    heartbeats share a moment (peers that key telemetry by time, as ThingsBoard does, keep
    one value per device and moment)."""
    if clock is None:
        return f'{{"state":"online","battery":87,"rssi":-70,"seq":{seq}}}'
    return f'{{"state":"online","battery":87,"rssi":-70,"seq":{seq},"ts":{clock + seq}}}'


def device_clock() -> int:
    return int(time.time() * 1000)


def status_topic(device: str) -> str:
    return f"{ROOT}/buttons/{device}/status"


class Publishers:
    """N `mosquitto_pub -l` processes, each a device of its own, `total` messages in all."""

    def __init__(self, folder: Path, port: int, total: int, tag: str, processes: int = 10,
                 stamped: bool = False, prefix: list[str] | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.total = total
        self.prefix = prefix or []  # e.g. taskset, to keep them off the measured core
        self.jobs: list[tuple[str, Path]] = []
        clock = device_clock() if stamped else None
        for index in range(processes):
            count = total // processes + (1 if index < total % processes else 0)
            device = f"{tag}-{index:02d}"
            source = folder / f"{device}.txt"
            source.write_text("".join(status_line(seq, clock) + "\n" for seq in range(count)))
            self.jobs.append((status_topic(device), source))
        self.procs: list[subprocess.Popen] = []

    def start(self) -> float:
        """Start every publisher at once; returns the wall-clock time just before."""
        started = time.time()
        for topic, source in self.jobs:
            with source.open("rb") as stdin:
                self.procs.append(subprocess.Popen(
                    [*self.prefix, mosquitto_pub(), "-h", "127.0.0.1", "-p", str(self.port),
                     "-q", "1", "-t", topic, "-l"],
                    stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                ))
        return started

    def wait(self, timeout: float = 300.0) -> None:
        """Until every publisher has had all its messages acked by the broker."""
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                _, errors = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                self.kill()
                raise BenchError(f"mosquitto_pub still running after {timeout:.0f} s") from exc
            if proc.returncode != 0:
                raise BenchError(f"mosquitto_pub failed: {errors.decode(errors='replace')}")

    def kill(self) -> None:
        for proc in self.procs:
            kill_quietly(proc)


class PacedPublisher:
    """One `mosquitto_pub -l` fed `rate` heartbeats a second through a pipe, in 10 ms steps."""

    def __init__(self, port: int, rate: float, device: str, stamped: bool = False) -> None:
        self.rate = rate
        self.sent = 0
        self._clock = device_clock() if stamped else None
        self._stop = threading.Event()
        self._proc = subprocess.Popen(
            [mosquitto_pub(), "-h", "127.0.0.1", "-p", str(port), "-q", "1",
             "-t", status_topic(device), "-l"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._thread = threading.Thread(target=self._feed, name="paced", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _feed(self) -> None:
        assert self._proc.stdin is not None
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            if due > self.sent:
                lines = "".join(status_line(seq, self._clock) + "\n"
                                for seq in range(self.sent, due))
                try:
                    self._proc.stdin.write(lines.encode())
                    self._proc.stdin.flush()
                except (BrokenPipeError, ValueError):
                    return
                self.sent = due
            self._stop.wait(0.01)

    def stop(self) -> int:
        """Stop feeding; returns how many lines were fed."""
        self._stop.set()
        self._thread.join(5)
        if self._proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            kill_quietly(self._proc)
        return self.sent


class Prober:
    """Help-button presses at a steady rate, one device per press, each stamped with `t0`."""

    def __init__(self, port: int, tag: str) -> None:
        self.tag = tag
        self.sent: dict[str, float] = {}  # device id -> t0 (unix seconds)
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"mashang-bench-prober-{tag}")
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def run(self, count: int, rate: float, stop: threading.Event | None = None) -> None:
        """`count` presses, `rate` a second (stops early when `stop` is set)."""
        started = time.monotonic()
        for index in range(count):
            pause = started + index / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if stop is not None and stop.is_set():
                return
            device = f"probe-{self.tag}-{index:05d}"
            t0 = time.time()
            payload = json.dumps({"seq": index, "action": "single", "t0": t0})
            self._client.publish(f"{ROOT}/buttons/{device}/events", payload, qos=1)
            self.sent[device] = t0

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
