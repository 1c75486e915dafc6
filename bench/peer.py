"""The peers side by side: Mashang, the ThingsBoard IoT Gateway and Node-RED on the same
publishers, each on a fresh broker with an upstream of its own that counts what arrives.

Each side is started three times, fresh each time: a burst of heartbeats from the ten bulk
publishers (rate, memory idle and after it, CPU per message), a steady stream across a 10 s
outage of its upstream, and a steady stream across a SIGKILL of the peer (restarted at once).
Heartbeats are counted by device and sequence number at the upstream, so that a heartbeat
that never arrives (lost) and one that arrives twice (doubled) are told apart, alike for all.
They carry the device's own clock (`ts`, one ms apart), as a scanner's or a button's reading
would: ThingsBoard keys telemetry by device and moment and keeps one value per moment.

Upstreams: Mashang and Node-RED post to bench.receiver (the gateway's signed batches, the
flow's one POST per message); the ThingsBoard IoT Gateway publishes to an emulated ThingsBoard
(a second Mosquitto and bench.thingsboard). A side that cannot be installed (no network to
its package registry) is reported as not measured, and the others go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.load import PacedPublisher, Publishers, status_line, status_topic
from bench.procs import (
    BenchError,
    Broker,
    EmulatedThingsBoard,
    InstallError,
    NodeRed,
    Receiver,
    ThingsBoardGateway,
    make_gateway,
    rss_bytes,
    start_timed,
    stop,
    wait_until,
)
from tests.helpers.support import GATEWAY_ID, GATEWAY_KEY, Process, publish

BURST = 20_000
STREAM_RATE = 200.0
OUTAGE = (5.0, 10.0, 5.0)  # seconds streaming before, during and after the upstream outage
KILL = (5.0, 10.0)  # seconds streaming before and after the SIGKILL
QUIET = 8.0  # seconds without a new arrival after which a peer is taken to be done


@dataclass
class Counts:
    events: int  # distinct heartbeats arrived (device, seq)
    deliveries: int  # heartbeats arrived, doubles included
    last: float | None  # when the last new one arrived (unix seconds)


class Side:
    """One peer with its broker and upstream: start, count, cut the upstream, kill."""

    name = ""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.broker = Broker(folder / "broker")
        self.upstream: Any = None
        self.process: Process | None = None

    # What each peer does differently.
    def _start_upstream(self) -> None:
        self.upstream = Receiver(self.folder / "receiver", GATEWAY_KEY, GATEWAY_ID)
        self.upstream.start()

    def _make_process(self) -> Process:
        raise NotImplementedError

    def _start_process(self) -> None:
        assert self.process is not None
        self.process.start()

    def counts(self, devices: str) -> Counts:
        """What arrived from the devices whose id begins with `devices` (one run's)."""
        entries = [entry for device, entry in self.upstream.stats()["heartbeats"].items()
                   if device.startswith(devices)]
        return Counts(sum(entry[0] for entry in entries), sum(entry[1] for entry in entries),
                      max((entry[2] for entry in entries if entry[2]), default=None))

    def version(self) -> str:
        return ""

    # The same for all.
    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.proc is not None
        return self.process.proc.pid

    def start(self) -> None:
        """Broker, upstream and peer up, and a heartbeat seen through to the upstream."""
        self.broker.start()
        self._start_upstream()
        self.process = self._make_process()
        self._start_process()
        clock = int(time.time() * 1000)
        seq = iter(range(10**9))

        def through() -> bool:
            assert self.process is not None
            if not self.process.running():
                raise BenchError(f"{self.name} exited:\n{self.process.output()[-1500:]}")
            publish(self.broker.port, [(status_topic("ready"), status_line(next(seq), clock))])
            return self.counts("ready").events > 0

        wait_until(through, 90, f"a heartbeat through {self.name}", interval=0.3)

    def cut(self) -> None:
        self.upstream.refuse()

    def restore(self) -> None:
        self.upstream.recover()

    def kill_and_restart(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL
        self._start_process()

    def close(self) -> None:
        for process in (self.process, self.upstream, self.broker):
            stop(process)


class Mashang(Side):
    name = "Mashang"

    def _make_process(self) -> Process:
        return make_gateway(self.folder / "gateway", self.broker.port, self.upstream.url)

    def _start_process(self) -> None:
        assert self.process is not None
        start_timed(self.process)  # type: ignore[arg-type]


class NodeRedSide(Side):
    name = "Node-RED"

    def _make_process(self) -> Process:
        return NodeRed(self.folder, self.broker.port, self.upstream.url)

    def version(self) -> str:
        assert isinstance(self.process, NodeRed)
        return self.process.version()


class ThingsBoard(Side):
    name = "ThingsBoard"

    def _start_upstream(self) -> None:
        self.upstream = EmulatedThingsBoard(self.folder / "thingsboard")
        self.upstream.start()

    def _make_process(self) -> Process:
        return ThingsBoardGateway(self.folder / "tb-gateway", self.broker.port,
                                  self.upstream.port)

    def version(self) -> str:
        return procs.THINGSBOARD_VERSION


SIDES: list[type[Side]] = [Mashang, ThingsBoard, NodeRedSide]


def arrivals(side: Side, devices: str, expected: int, quiet: float, timeout: float,
             tick=lambda: None) -> Counts:
    """Wait until `expected` heartbeats from `devices` arrived, or none arrived for `quiet`
    seconds (a peer that dropped some never delivers them); `tick()` on every look."""
    counts, still, deadline = side.counts(devices), time.monotonic(), time.monotonic() + timeout
    while counts.events < expected and time.monotonic() < deadline:
        tick()
        time.sleep(0.05)
        now = side.counts(devices)
        if now.events != counts.events:
            still = time.monotonic()
        elif time.monotonic() - still > quiet:
            break
        counts = now
    return side.counts(devices)


def burst(side: Side, folder: Path, total: int) -> dict[str, Any]:
    """The ten bulk publishers at once: rate, memory idle, at its peak and 5 s after, and
    CPU per heartbeat."""
    time.sleep(2.0)
    idle = rss_bytes(side.pid)
    publishers = Publishers(folder / "load", side.broker.port, total, "burst", stamped=True)
    samples = [idle]
    cpu_before = procs.cpu_seconds(side.pid)
    started = publishers.start()
    counts = arrivals(side, "burst", total, 30.0, 600.0,
                      tick=lambda: samples.append(rss_bytes(side.pid)))
    cpu = procs.cpu_seconds(side.pid) - cpu_before
    publishers.wait()
    after = rss_bytes(side.pid)
    time.sleep(5.0)
    elapsed = (counts.last or time.time()) - started
    return {"sent": total, "delivered": counts.events,
            "doubled": counts.deliveries - counts.events,
            "rate": counts.events / elapsed if elapsed > 0 else 0.0,
            "idle_rss": idle, "peak_rss": max(*samples, after), "after_rss": rss_bytes(side.pid),
            "cpu_us": cpu / max(1, counts.events) * 1e6}


def stream(side: Side, disturb, before: float, after: float) -> dict[str, Any]:
    """Heartbeats at STREAM_RATE from one device; `disturb()` `before` seconds in, `after`
    more seconds of stream, then until every heartbeat arrived or none came for QUIET s."""
    paced = PacedPublisher(side.broker.port, STREAM_RATE, "stream", stamped=True)
    paced.start()
    try:
        time.sleep(before)
        disturb()
        time.sleep(after)
    finally:
        sent = paced.stop()
    counts = arrivals(side, "stream", sent, QUIET, 120.0)
    return {"sent": sent, "delivered": counts.events, "lost": max(0, sent - counts.events),
            "doubled": counts.deliveries - counts.events}


def outage(side: Side) -> dict[str, Any]:
    before, down, after = OUTAGE

    def disturb() -> None:
        side.cut()
        time.sleep(down)
        side.restore()

    return stream(side, disturb, before, after)


def figure_peer(ctx: Any) -> dict[str, Any]:
    """Every side through the three runs; a side that fails says why and the rest go on."""
    results: dict[str, Any] = {"burst": BURST, "rate": STREAM_RATE, "outage": OUTAGE[1],
                               "sides": {}, "not_measured": []}
    parts = ("burst", "outage", "kill")
    for kind in SIDES:
        measured: dict[str, Any] = {}
        for part in parts:
            side = kind(ctx.folder(f"{kind.name}-{part}"))
            try:
                side.start()
                measured["version"] = side.version()
                if part == "burst":
                    measured["burst"] = burst(side, side.folder, BURST)
                elif part == "outage":
                    measured["outage"] = outage(side)
                else:
                    measured["kill"] = stream(side, side.kill_and_restart, *KILL)
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                if isinstance(exc, InstallError):  # it cannot run at all: said once
                    measured.update({f"{other}_error": why for other in parts})
                    results["not_measured"].append(f"{kind.name}: {why}")
                    break
                measured[f"{part}_error"] = why
                results["not_measured"].append(f"{kind.name} {part}: {why}")
            finally:
                side.close()
        results["sides"][kind.name] = measured
    return results
