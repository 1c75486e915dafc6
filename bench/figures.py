"""The gateway's figures, each measured beside its baseline in the same run: durable ingest
against a bare paho subscriber, latency, the outage drain, memory across bursts, how soon an
alert held through an outage reaches the central once it is back (`recovery`), and the CPU
each event costs, with the gateway pinned to one core (`cpu`). The peers are bench.peer's.

Every figure returns a dict of plain numbers (and notes) that bench.report turns into the
table; a figure that cannot be measured raises, and the report says why in its place.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.load import Prober, Publishers
from bench.plot import Burst
from bench.procs import (
    BenchError,
    Broker,
    OutboxWatch,
    Receiver,
    make_gateway,
    pin,
    received_count,
    rss_bytes,
    start_timed,
    stop,
    wait_until,
)
from edge.gateway import OUTBOX_FILE
from tests.helpers.support import (
    ADMIN_TOKEN,
    GATEWAY_ID,
    GATEWAY_KEY,
    Central,
    Gateway,
    device_topic,
    free_port,
    get_json,
    publish,
)

MB = 1024 * 1024


@dataclass
class Context:
    root: Path
    quick: bool
    profile: bool = False
    results_dir: Path | None = None
    _tags: int = 0
    # Filled as figures run, for the plots.
    latencies: dict[str, list[float]] = field(default_factory=dict)
    memory: list[Burst] = field(default_factory=list)
    rss_idle: int | None = None
    # The quick run measures the footprint on the drain figure's gateway.
    footprint: dict[str, Any] = field(default_factory=dict)

    def tag(self, name: str) -> str:
        self._tags += 1
        return f"{name}{self._tags}"

    def folder(self, name: str) -> Path:
        path = self.root / self.tag(name)
        path.mkdir(parents=True)
        return path


@contextlib.contextmanager
def running(*processes) -> Iterator[None]:
    """Stop what was started, last first, whatever happens in between."""
    try:
        yield
    finally:
        for process in reversed(processes):
            stop(process)


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99, p99.9 and max in milliseconds (nearest rank)."""
    if not samples:
        raise BenchError("no latency samples")
    ordered = sorted(samples)

    def rank(share: float) -> float:
        index = min(len(ordered) - 1, max(0, int(share * len(ordered) + 0.999999) - 1))
        return ordered[index] * 1000

    return {"n": len(ordered), "p50": rank(0.50), "p99": rank(0.99), "p999": rank(0.999),
            "max": ordered[-1] * 1000}


def dead_url() -> str:
    """An address where nothing listens: the central is down for the whole run."""
    return f"http://127.0.0.1:{free_port()}"


def outbox_of(gateway: Gateway) -> OutboxWatch:
    return OutboxWatch(gateway.data_dir / OUTBOX_FILE)


class MemorySampler:
    """One burst of the memory plot: (messages the gateway received since the burst began,
    its RSS), sampled every `interval` seconds in a thread for as long as the block runs."""

    def __init__(self, gateway: Gateway, label: str, interval: float = 0.2) -> None:
        self.burst = Burst(label)
        self._gateway = gateway
        self._base = received_count(gateway)  # fails here, loudly, if there is no counter
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory", daemon=True)

    def __enter__(self) -> Burst:
        self._thread.start()
        return self.burst

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(10)

    def _run(self) -> None:
        assert self._gateway.proc is not None
        pid = self._gateway.proc.pid
        while not self._done.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.burst.samples.append((received_count(self._gateway) - self._base,
                                           rss_bytes(pid)))
            self._done.wait(self._interval)


class Profiler:
    """py-spy recording a process for as long as the block runs (when asked for)."""

    def __init__(self, pid: int, out: Path | None) -> None:
        self._proc: subprocess.Popen | None = None
        self.out = out
        if out is None:
            return
        spy = Path(sys.executable).parent / "py-spy"
        if not spy.exists():
            raise BenchError("py-spy is not installed: ./scripts/bench installs the bench extra")
        self._proc = subprocess.Popen(
            [str(spy), "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
             "--threads", "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(2)  # SIGINT: py-spy writes what it has
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()


# -- 1. durable ingest -------------------------------------------------------------------------


def ingest_counts(ctx: Context) -> tuple[int, int]:
    """(messages per run, publisher processes)."""
    return (10_000 if ctx.quick else 100_000), 10


def loaded_broker(folder: Path, pinned: bool) -> tuple[Broker, list[str]]:
    """A started broker and the publishers' command prefix: when the measured process is
    pinned to core 0, both keep to the other cores."""
    broker = Broker(folder / "broker")
    elsewhere = procs.elsewhere() if pinned else []
    if elsewhere:
        pin(broker, elsewhere)
    broker.start()
    return broker, elsewhere


def run_ceiling(ctx: Context, total: int, processes: int,
                pinned: bool = False) -> dict[str, Any]:
    folder = ctx.folder("ceiling")
    broker, elsewhere = loaded_broker(folder, pinned)
    with running(broker):
        argv = [sys.executable, "-m", "bench.ceiling", "--port", str(broker.port),
                "--count", str(total)]
        subscriber = subprocess.Popen(
            [*procs.taskset_prefix(), *argv] if pinned else argv,  # on core 0
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=procs.REPO,
        )
        try:
            assert subscriber.stdout is not None
            line = subscriber.stdout.readline().strip()
            if line != "ready":
                raise BenchError(f"ceiling subscriber did not start: {subscriber.stderr.read()}")
            publishers = Publishers(folder / "load", broker.port, total, ctx.tag("c"), processes,
                                    prefix=elsewhere)
            started = publishers.start()
            peak_cpu = _sample_cpu(subscriber.pid, lambda: subscriber.poll() is not None)
            seen = json.loads(subscriber.stdout.readline() or "{}")
            publishers.wait()
        finally:
            procs.kill_quietly(subscriber)
    if seen.get("received", 0) < total or not seen.get("last"):
        raise BenchError(f"ceiling subscriber saw {seen.get('received')} of {total}")
    return {"rate": total / (seen["last"] - started), "cpu": peak_cpu}


def _sample_cpu(pid: int, finished, interval: float = 0.25) -> float:
    """Mean share of a core the process used until finished() (sampled, best effort)."""
    try:
        first, started = procs.cpu_seconds(pid), time.monotonic()
        last = first
        while not finished():
            time.sleep(interval)
            with contextlib.suppress(OSError):
                last = procs.cpu_seconds(pid)
        return (last - first) / max(1e-9, time.monotonic() - started)
    except OSError:
        return float("nan")


def run_gateway_ingest(ctx: Context, total: int, processes: int,
                       profile_to: Path | None = None, pinned: bool = False) -> dict[str, Any]:
    """Events/s committed (and so acked) by the gateway, with the central down: the outbox
    count, read from outside, is the committed count; each group is acked right after its
    commit, on the same thread. CPU: the gateway's, per message, from first to last."""
    folder = ctx.folder("ingest")
    broker, elsewhere = loaded_broker(folder, pinned)
    gateway = make_gateway(folder / "gateway", broker.port, dead_url())
    if pinned:
        pin(gateway)
    with running(broker, gateway):
        start_timed(gateway)
        watch = outbox_of(gateway)
        base = wait_until(lambda: watch.depth(), 10, "the gateway.started event")
        publishers = Publishers(folder / "load", broker.port, total, ctx.tag("g"), processes,
                                prefix=elsewhere)
        profiler = Profiler(gateway.proc.pid, profile_to) if profile_to else None
        cpu_before = procs.cpu_seconds(gateway.proc.pid)
        started = publishers.start()
        peak_rss = 0
        deadline = time.monotonic() + 600
        while (depth := watch.depth()) - base < total:
            peak_rss = max(peak_rss, rss_bytes(gateway.proc.pid))
            if time.monotonic() > deadline:
                raise BenchError(f"gateway committed {depth - base} of {total} in 600 s")
            time.sleep(0.01)
        finished = time.time()
        used = procs.cpu_seconds(gateway.proc.pid) - cpu_before
        if profiler:
            profiler.stop()
        publishers.wait()
        watch.close()
    return {"rate": total / (finished - started), "cpu": used / (finished - started),
            "cpu_us": used / total * 1e6, "peak_rss": peak_rss}


def figure_ingest(ctx: Context) -> dict[str, Any]:
    total, processes = ingest_counts(ctx)
    rounds = 1 if ctx.quick else 2
    ceilings, gateways = [], []
    for index in range(rounds):
        ceilings.append(run_ceiling(ctx, total, processes))
        profile = None
        if ctx.profile and index == rounds - 1 and ctx.results_dir is not None:
            profile = ctx.results_dir / "profile-ingest.txt"
        gateways.append(run_gateway_ingest(ctx, total, processes, profile))
    ceiling = max(ceilings, key=lambda run: run["rate"])
    ours = max(gateways, key=lambda run: run["rate"])
    return {
        "messages": total,
        "publishers": processes,
        "rounds": rounds,
        "ceiling": ceiling["rate"],
        "ceiling_runs": [run["rate"] for run in ceilings],
        "ceiling_cpu": ceiling["cpu"],
        "gateway": ours["rate"],
        "gateway_runs": [run["rate"] for run in gateways],
        "gateway_cpu": ours["cpu"],
        "gateway_cpu_us": ours["cpu_us"],
        "gateway_peak_rss": ours["peak_rss"],
        "ratio": ours["rate"] / ceiling["rate"],
    }


# -- 2. latency --------------------------------------------------------------------------------


class Console:
    """The butlers' console stream (duty account), when the central has one."""

    def __init__(self, central: Central) -> None:
        from tests.helpers.console import ConsoleClient  # the console's own test client

        self._client = ConsoleClient(central)
        answer = self._client.login("duty")
        if answer.status != 200:
            raise BenchError(f"console login answered {answer.status}")
        self._context = self._client.stream()
        self.stream = self._context.__enter__()
        if self.stream.response.status != 200:
            raise BenchError(f"console stream answered {self.stream.response.status}")

    def arrivals(self) -> dict[str, float]:
        """device id -> when its alert first reached the stream (unix seconds)."""
        first: dict[str, float] = {}
        for name, data, moment in list(self.stream.events):
            for alert in data if name == "snapshot" else [data]:
                device = alert.get("device_id") if isinstance(alert, dict) else None
                if device and device not in first:
                    first[device] = moment
        return first

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._context.__exit__(None, None, None)


def start_reference_central(folder: Path) -> tuple[Central, str | None]:
    """The reference central, with a duty console account when this central has a console;
    (central, None) or (central, why the console is not measured)."""
    try:
        from tests.helpers.console import start_central as start_with_console
    except ImportError as exc:
        return procs.start_central(folder), f"n/a (console not built yet: {exc})"
    try:
        return start_with_console(folder, accounts=("duty",)), None
    except Exception as exc:  # the console is being built: say so, measure the central
        return procs.start_central(folder / "plain"), f"n/a (console not available: {exc})"


def central_arrivals(central: Central, devices: dict[str, float]) -> dict[str, float]:
    """device id -> when the central stored its press (the central's own arrival stamp)."""
    found = {}
    for event in central.events("button.press"):
        device = event.get("device_id")
        if device in devices and "arrived_at" in event:
            found[device] = float(event["arrived_at"])
    return found


def probe(ctx: Context, central: Central, console: Console | None, broker_port: int,
          count: int, rate: float, stop_when: threading.Event | None = None
          ) -> tuple[list[float], list[float]]:
    """Presses at `rate`; latencies (s) press -> central, press -> console."""
    prober = Prober(broker_port, ctx.tag("p"))
    try:
        prober.run(count, rate, stop_when)
    finally:
        prober.close()
    sent = prober.sent
    arrived = wait_until(
        lambda: (found := central_arrivals(central, sent)) and len(found) >= len(sent) and found,
        60, f"{len(sent)} presses at the central", interval=0.25,
    )
    to_central = [arrived[device] - t0 for device, t0 in sent.items()]
    to_console: list[float] = []
    if console is not None:
        shown = wait_until(
            lambda: (found := console.arrivals()) and all(d in found for d in sent) and found,
            30, "the presses on the console stream", interval=0.1,
        )
        to_console = [shown[device] - t0 for device, t0 in sent.items()]
    return to_central, to_console


def figure_latency(ctx: Context) -> dict[str, Any]:
    count, rate = (60, 50.0) if ctx.quick else (1000, 25.0)
    background = 1000.0
    folder = ctx.folder("latency")
    broker = Broker(folder / "broker")
    broker.start()
    central, console_note = start_reference_central(folder / "central")
    gateway = make_gateway(folder / "gateway", broker.port, central.url)
    console = None
    with running(broker, central, gateway):
        start_timed(gateway)
        if console_note is None:
            try:
                console = Console(central)
            except Exception as exc:
                console_note = f"n/a (console stream not available: {exc})"
        try:
            results: dict[str, Any] = {"presses": count, "rate": rate,
                                       "background": background, "console_note": console_note}
            for name in ("idle", "load"):
                paced = None
                if name == "load":
                    paced = procs_paced(broker.port, background, ctx.tag("bg"))
                    time.sleep(2.0)  # the background reaches its pace first
                try:
                    central_s, console_s = probe(ctx, central, console, broker.port, count, rate)
                finally:
                    fed = paced.stop() if paced else 0
                results[f"{name}_central"] = percentiles(central_s)
                ctx.latencies[f"press -> central, {name}"] = central_s
                if console_s:
                    results[f"{name}_console"] = percentiles(console_s)
                    ctx.latencies[f"press -> console, {name}"] = console_s
                if paced:
                    results["background_fed"] = fed
        finally:
            if console is not None:
                console.close()
    return results


def procs_paced(port: int, rate: float, device: str):
    from bench.load import PacedPublisher

    paced = PacedPublisher(port, rate, device)
    paced.start()
    return paced


# -- 3. outage drain ---------------------------------------------------------------------------


def figure_drain(ctx: Context) -> dict[str, Any]:
    # Quick: the backlog is also the footprint's 20,000-message burst (see figure_footprint).
    backlog = 20_000 if ctx.quick else 100_000
    alert_rate = 20.0
    folder = ctx.folder("drain")
    broker = Broker(folder / "broker")
    broker.start()
    central, _ = start_reference_central(folder / "central")
    gateway = make_gateway(folder / "gateway", broker.port, central.url)
    with running(broker, central, gateway):
        ready = start_timed(gateway)
        watch = outbox_of(gateway)
        wait_until(lambda: watch.depth() == 0, 30, "the gateway's first events to leave")
        if ctx.quick:
            ctx.footprint.update(start_ready=ready, start_runs=[ready], cpu_window=3.0,
                                 rss_idle=settle_rss(gateway.proc.pid, 1.0))
            memory_now(gateway.proc.pid, ctx.footprint, "idle")
            ctx.footprint["cpu_idle"] = procs.cpu_share(gateway.proc.pid, 3.0)
            ctx.rss_idle = ctx.footprint["rss_idle"]
        seen_before = max((event["seq"] for event in central.events()), default=0)
        central.terminate()

        # The outage: the backlog is published and committed (quick: RSS sampled).
        publishers = Publishers(folder / "load", broker.port, backlog, ctx.tag("d"))
        sampler = (MemorySampler(gateway, f"{backlog:,} burst, central down") if ctx.quick
                   else contextlib.nullcontext(Burst("")))
        with sampler as burst:
            started = publishers.start()
            wait_until(lambda: watch.depth() >= backlog, 600, f"{backlog:,} logs buffered",
                       interval=0.05)
            buffered_in = time.time() - started
            publishers.wait()
        held = watch.logs()
        if ctx.quick:  # the quick run's footprint figure: this gateway, after this burst
            burst.settled = ctx.footprint["rss_20k"] = settle_rss(gateway.proc.pid, 3.0)
            memory_now(gateway.proc.pid, ctx.footprint, "20k")
            ctx.footprint["bytes_per_event"] = watch.used_bytes() / max(1, watch.depth())
            ctx.memory.append(burst)

        # The central returns; alerts are pressed while the backlog drains.
        back = time.time()
        cpu_before = procs.cpu_seconds(gateway.proc.pid)
        central.start()
        healthy = time.time()
        done = threading.Event()
        measured: dict[str, Any] = {}

        def press_during_drain() -> None:
            try:
                measured["central"], _ = probe(ctx, central, None, broker.port, 100_000,
                                               alert_rate, stop_when=done)
            except Exception as exc:
                measured["error"] = f"{type(exc).__name__}: {exc}"

        # Presses start as soon as the central is back, and go on until the backlog is gone.
        presser = threading.Thread(target=press_during_drain, daemon=True)
        presser.start()
        wait_until(lambda: watch.logs() < held, 120, "the drain to begin", interval=0.005)
        wait_until(lambda: watch.logs() == 0, 600, "the backlog to drain", interval=0.01)
        emptied = time.time()
        sent_cpu = procs.cpu_seconds(gateway.proc.pid) - cpu_before
        done.set()
        presser.join(90)
        first_arrival = _first_arrival(central, seen_before)
        watch.close()
    if "central" not in measured:
        raise BenchError(f"alerts during the drain: {measured.get('error', 'not measured')}")
    noop: float | str = "skipped (--quick)"
    if not ctx.quick:
        try:
            noop = drain_to_receiver(ctx, backlog)["rate"]
        except Exception as exc:
            noop = f"{type(exc).__name__}: {exc}"
    ctx.latencies["alert -> central, during drain"] = measured["central"]
    return {
        "backlog": held,
        "buffer_rate": backlog / buffered_in,
        "resume_delay": first_arrival - healthy,
        "central_restart": healthy - back,
        "drain_rate": held / (emptied - first_arrival),
        "drain_seconds": emptied - first_arrival,
        "send_cpu_us": sent_cpu / held * 1e6,
        "noop_drain_rate": noop,
        "alerts": percentiles(measured["central"]),
    }


def drain_to_receiver(ctx: Context, backlog: int, pinned: bool = False) -> dict[str, Any]:
    """The gateway's own drain capacity: the same backlog (written straight into the outbox),
    drained to the no-op receiver instead of the reference central; and its CPU per event
    sent (lease, batch, sign, POST, delete), from start to an empty outbox."""
    folder = ctx.folder("drain-noop")
    broker, elsewhere = loaded_broker(folder, pinned)
    receiver = Receiver(folder / "receiver", GATEWAY_KEY, GATEWAY_ID)
    gateway = make_gateway(folder / "gateway", broker.port, receiver.url)
    if pinned:
        pin(gateway)
        if elsewhere:
            pin(receiver, elsewhere)
    gateway.data_dir.mkdir(parents=True, exist_ok=True)
    fill_outbox(gateway.data_dir / OUTBOX_FILE, backlog, ctx.tag("n"))
    with running(broker, receiver, gateway):
        receiver.start()
        watch = outbox_of(gateway)
        # The receiver listens only once the gateway is up, so that the CPU counted from
        # then on is the sending's, not the start-up's (the first retry comes within a second).
        receiver.refuse()
        start_timed(gateway)
        cpu_before, held = procs.cpu_seconds(gateway.proc.pid), watch.depth()
        receiver.recover()
        wait_until(lambda: watch.depth() < held, 60, "the drain to begin", interval=0.005)
        wait_until(lambda: watch.depth() == 0, 300, "the backlog to drain", interval=0.01)
        emptied = time.time()
        used = procs.cpu_seconds(gateway.proc.pid) - cpu_before
        stats = receiver.stats()
        watch.close()
    return {"backlog": held, "rate": held / (emptied - stats["first"]),
            "cpu_us": used / held * 1e6}


def _first_arrival(central: Central, after: int) -> float:
    """When the central stored the first backlog log after its return (its clock)."""
    answer = get_json(f"{central.url}/v1/events?after={after}&limit=1&type=button.status",
                      token=ADMIN_TOKEN)
    if not answer or not answer.get("events"):
        raise BenchError("the central holds nothing from after the outage")
    return float(answer["events"][0]["arrived_at"])


# -- a backlog written straight into a stopped gateway's outbox ---------------------------------


class Prebuilt:
    """What Outbox.put needs of an event, with its JSON made by formatting, not encoding."""

    __slots__ = ("body", "id")
    is_alert = False

    def __init__(self, event_id: str, body: bytes) -> None:
        self.id = event_id
        self.body = body

    def encode(self) -> bytes:
        return self.body


def fill_outbox(path: Path, count: int, tag: str, batch: int = 20_000) -> float:
    """Write `count` heartbeat logs straight into a stopped gateway's outbox, in big
    transactions; returns seconds taken. Bodies have the shape and size the gateway gives."""
    from bench.load import status_line, status_topic
    from edge.buffer.outbox import Outbox
    from edge.events import event_id, now
    from edge.source.messages import parse_message
    from edge.transform.rules import make_event

    topic = status_topic(f"{tag}-fill")
    sample = parse_message("mashang/v1", topic, status_line(123456789).encode(), now())
    template = make_event(sample, "log", "button.status", "low").encode().decode()
    head, tail = template.split(sample.identity_key().split("seq=")[1], 1)
    head = head.replace(json.loads(template)["id"], "\0id\0")
    started = time.monotonic()
    outbox = Outbox(path, max_bytes=1 << 40, log_ttl=30 * 24 * 3600.0)
    try:
        for first in range(0, count, batch):
            rows = []
            for seq in range(first, min(count, first + batch)):
                ident = event_id(f"{topic}\nseq={seq}", "message")
                rows.append(Prebuilt(ident, f"{head.replace(chr(0) + 'id' + chr(0), ident)}"
                                            f"{seq}{tail}".encode()))
            outbox.put(rows)
    finally:
        outbox.close()
    return time.monotonic() - started


# -- 4. footprint ------------------------------------------------------------------------------


def settle_rss(pid: int, seconds: float) -> int:
    time.sleep(seconds)
    return rss_bytes(pid)


def memory_now(pid: int, results: dict[str, Any], key: str) -> None:
    """The anonymous share and the process count beside an RSS figure just taken."""
    results[f"anon_{key}"] = procs.anon_bytes(pid)
    results[f"processes_{key}"] = len(procs.family(pid))


def figure_footprint(ctx: Context) -> dict[str, Any]:
    """Memory idle, after bursts of 20,000 and 100,000 heartbeats going through to the
    upstream, and with 1,000,000 buffered while the upstream is away (published by the ten
    bulk publishers as fast as the gateway commits them); RSS sampled against the gateway's
    received counter all along (the memory plot). Quick: taken from the drain figure's
    gateway when that ran (idle, then its 20,000-event backlog), otherwise idle and one
    20,000 burst here."""
    if ctx.quick and "rss_20k" in ctx.footprint:
        return {**ctx.footprint, "shared": True}
    folder = ctx.folder("footprint")
    broker = Broker(folder / "broker")
    broker.start()
    receiver = Receiver(folder / "receiver", GATEWAY_KEY, GATEWAY_ID)
    # The shipped cap (256 MiB) holds about 600,000 heartbeats: past it the oldest logs are
    # evicted, so the 1,000,000-event figure needs a larger one.
    gateway = make_gateway(folder / "gateway", broker.port, receiver.url,
                           **{"outbox.max_bytes": str(2**30)})
    results: dict[str, Any] = {}
    with running(broker, receiver, gateway):
        receiver.start()
        starts = []
        for _ in range(1 if ctx.quick else 3):
            if starts:
                gateway.terminate()
            starts.append(start_timed(gateway))
        results["start_ready"] = statistics.median(starts)
        results["start_runs"] = starts
        pid = gateway.proc.pid
        watch = outbox_of(gateway)
        wait_until(lambda: watch.depth() == 0, 30, "the start-up events to leave")
        ctx.rss_idle = results["rss_idle"] = settle_rss(pid, 3.0)
        memory_now(pid, results, "idle")
        results["cpu_window"] = 3.0 if ctx.quick else 10.0
        results["cpu_idle"] = procs.cpu_share(pid, results["cpu_window"])

        for total in (20_000,) if ctx.quick else (20_000, 100_000):
            tag = ctx.tag("f")
            publishers = Publishers(folder / tag, broker.port, total, tag)
            with MemorySampler(gateway, f"{total:,} burst, central up") as burst:
                publishers.start()
                wait_until(lambda tag=tag, total=total: _arrived(receiver, tag) >= total, 600,
                           f"{total:,} heartbeats through to the receiver", interval=0.1)
                publishers.wait()
            burst.settled = results[f"rss_{total // 1000}k"] = settle_rss(pid, 5.0)
            memory_now(pid, results, f"{total // 1000}k")
            ctx.memory.append(burst)
        if not ctx.quick:
            results.update(_million_buffered(ctx, folder, broker, receiver, gateway, watch))
        results["bytes_per_event"] = watch.used_bytes() / max(1, watch.depth())
        watch.close()
    return results


def _arrived(receiver: Receiver, devices: str) -> int:
    """Distinct heartbeats from the devices whose id begins with `devices`."""
    return sum(entry[0] for device, entry in receiver.stats()["heartbeats"].items()
               if device.startswith(devices))


def _million_buffered(ctx: Context, folder: Path, broker: Broker, receiver: Receiver,
                      gateway: Gateway, watch: OutboxWatch) -> dict[str, Any]:
    """The upstream goes away and 1,000,000 heartbeats are published by the ten bulk
    publishers, in rounds of 50,000 as fast as the gateway commits them: a round starts once
    the gateway has committed all but one round of what went before, so that the broker never
    queues more than about 100,000 for it (with a couple of hundred thousand queued,
    Mosquitto 2.0.11 drops the publishers' connections, "out of memory", and mosquitto_pub
    exits 0 with most of its file unsent: bench/NOTES.md). Then RSS with them all buffered,
    and a restart with them (start to ready)."""
    total, rounds = 1_000_000, 20
    receiver.refuse()
    assert gateway.proc is not None
    with MemorySampler(gateway, f"{total:,} buffered, central down", interval=0.5) as burst:
        started = time.monotonic()
        for index in range(rounds):
            published = index * total // rounds
            wait_until(lambda published=published: watch.depth() >= published - total // rounds,
                       300, f"round {index}'s heartbeats committed", interval=0.05)
            tag = ctx.tag("m")
            publishers = Publishers(folder / tag, broker.port, total // rounds, tag)
            publishers.start()
            publishers.wait()
        wait_until(lambda: watch.depth() >= total, 300, f"{total:,} events buffered",
                   interval=0.2)
        seconds = time.monotonic() - started
    results = {"rss_1m": settle_rss(gateway.proc.pid, 5.0), "depth_1m": watch.depth(),
               "buffer_1m_seconds": seconds}
    memory_now(gateway.proc.pid, results, "1m")
    burst.settled = results["rss_1m"]
    ctx.memory.append(burst)
    gateway.terminate()
    results["start_ready_1m"] = start_timed(gateway, timeout=180)
    assert gateway.proc is not None
    results["rss_1m_restarted"] = settle_rss(gateway.proc.pid, 5.0)
    return results


# -- 7. CPU per event, and the gateway pinned to one core ----------------------------------------


def hotpath(messages: int) -> dict[str, dict[str, float]]:
    """bench.hotpath in a process of its own on core 0: CPU µs per message for each step."""
    result = subprocess.run(
        [*procs.taskset_prefix(), sys.executable, "-m", "bench.hotpath", "--json",
         "--messages", str(messages)],
        capture_output=True, text=True, timeout=300, cwd=procs.REPO,
    )
    if result.returncode != 0:
        raise BenchError(f"bench.hotpath failed: {result.stderr.strip()[-300:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def figure_cpu(ctx: Context) -> dict[str, Any]:
    """What each event costs in CPU, and what one core does: the in-process steps (parse,
    rules, encode, commit), then the whole gateway process pinned to core 0 (`taskset -c 0`)
    ingesting a burst (MQTT in, parse, rules, commit, ack) beside a bare paho subscriber
    pinned the same way, and draining a backlog to the no-op receiver (lease, batch, sign,
    POST, delete). The broker, publishers and receiver keep to the other cores."""
    total = 5_000 if ctx.quick else 50_000
    steps = hotpath(2_000 if ctx.quick else 20_000)
    ceiling = run_ceiling(ctx, total, 10, pinned=True)
    ingest = run_gateway_ingest(ctx, total, 10, pinned=True)
    send = drain_to_receiver(ctx, total, pinned=True)
    return {"messages": total, "steps": steps, "ceiling": ceiling["rate"],
            "ingest": ingest["rate"], "ingest_cpu_us": ingest["cpu_us"],
            "ingest_cpu": ingest["cpu"], "ratio": ingest["rate"] / ceiling["rate"],
            "send": send["rate"], "send_cpu_us": send["cpu_us"]}


# -- 6. recovery -------------------------------------------------------------------------------


def figure_recovery(ctx: Context) -> dict[str, Any]:
    """Central down (connections refused) for `outage` seconds, an alert pressed 1 s into it;
    seconds from the central's return to the alert's arrival, round after round on one gateway.

    The central is the tests' scriptable one (tests/helpers/receiver.py), in this process: the
    moment it is restored (taken just before its socket listens again, so the figure errs long
    by the few ms that takes) and the moment the alert's request arrives are both this
    process's time.monotonic(). One clock: no process start, no health poll in between."""
    from tests.helpers.receiver import Receiver as ScriptedCentral

    outage, rounds, press_after = (5.0, 2, 1.0) if ctx.quick else (75.0, 5, 1.0)
    folder = ctx.folder("recovery")
    broker = Broker(folder / "broker")
    broker.start()
    samples: list[float] = []
    with running(broker), ScriptedCentral() as central:
        gateway = make_gateway(folder / "gateway", broker.port, central.url)
        with running(gateway):
            start_timed(gateway)
            watch = outbox_of(gateway)
            wait_until(lambda: central.events(), 30, "the gateway's first events")
            wait_until(lambda: watch.depth() == 0, 30, "the gateway's first events to leave")
            for number in range(rounds):
                samples.append(_recovery_round(ctx, central, broker.port, watch, number,
                                               outage, press_after))
            watch.close()
    return {"outage": outage, "rounds": rounds, "press_after": press_after,
            "samples": samples, "median": statistics.median(samples), "worst": max(samples)}


def _recovery_round(ctx: Context, central: Any, broker_port: int, watch: OutboxWatch,
                    number: int, outage: float, press_after: float) -> float:
    """One outage with a press in it; seconds from the restore to the alert's arrival."""
    device = ctx.tag("btn-rec")
    central.refuse()
    down = time.monotonic()
    time.sleep(press_after)
    publish(broker_port, [(device_topic(device), json.dumps({"seq": number}))])
    wait_until(lambda: watch.depth() > 0, 10, "the press held in the outbox")
    # Plus up to a second, so that the rounds meet the gateway's retries at different points
    # of their interval rather than all at the same one.
    time.sleep(max(0.0, down + outage + random.uniform(0.0, 1.0) - time.monotonic()))
    restored = time.monotonic()
    central.recover()
    [event] = wait_until(
        lambda: [e for e in central.events() if e.get("device_id") == device],
        max(120.0, outage * 2), f"round {number + 1}'s alert at the central", interval=0.005,
    )
    arrived = min(r.arrived for r in central.requests()
                  if r.status == 200 and event["id"] in r.ids)
    wait_until(lambda: watch.depth() == 0, 30, "an empty outbox after the round")
    return float(arrived - restored)
