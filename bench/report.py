"""The results as a Markdown table, with the machine and the commit they were measured on."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.procs import REPO

MB = 1024 * 1024


def run_text(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (result.stdout or result.stderr).strip()


def commit() -> str:
    head = run_text(["git", "rev-parse", "--short=12", "HEAD"])
    dirty = run_text(["git", "status", "--porcelain", "--untracked-files=no"])
    return f"{head} (with uncommitted changes)" if dirty and head != "?" else head


def machine(load_before: str) -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    system = "?"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    mosquitto = run_text(["/usr/sbin/mosquitto", "-h"]).splitlines()[:1]
    node = run_text(["node", "--version"])
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; memory {memory}",
        f"- System: {system}, Linux {platform.release()}",
        f"- Python {platform.python_version()}; {mosquitto[0] if mosquitto else 'mosquitto ?'};"
        f" Node.js {node}",
        f"- Load average when the run began: {load_before} (1, 5, 15 min); other work on the "
        "machine shares its cores and shows in every figure, baselines included",
    ]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def pct(value: float) -> str:
    return f"{value * 100:.0f} %"


def mb(value: float) -> str:
    return f"{value / MB:.1f} MB"


def rate(value: float) -> str:
    return f"{value:,.0f}/s"


def verdict(ok: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "–"}[ok]


def lat(p: dict[str, float]) -> str:
    return f"{ms(p['p50'])} / {ms(p['p99'])} / {ms(p['p999'])} ms (n={p['n']})"


def us(value: float) -> str:
    return f"{value:,.0f} µs" if value >= 10 else f"{value:.1f} µs"


def count(value: float) -> str:
    return f"{value:,.0f}"


PEERS = ("Mashang", "ThingsBoard", "Node-RED")


def ahead(values: dict[str, float | None], higher_better: bool, show=count) -> str:
    """Who is ahead, and by what ratio: "**Mashang**: 2.8× ThingsBoard, 12× Node-RED" (the
    others' values are that many times worse); where the best is nothing (0 lost), ratios
    mean nothing and the values are given instead."""
    known = {name: value for name, value in values.items() if value is not None}
    if len(known) < 2:
        return "–"
    best = (max if higher_better else min)(known.values())
    leaders = [name for name, value in known.items() if value == best]
    if len(leaders) == len(known):
        return "tie"
    head = " = ".join(f"**{name}**" for name in leaders)
    others = [(name, value) for name, value in known.items() if name not in leaders]
    if best == 0 or any(value == 0 for _, value in others):
        return f"{head} ({show(best)}); " + ", ".join(f"{name} {show(v)}" for name, v in others)
    ratios = [(best / value if higher_better else value / best, name) for name, value in others]
    return f"{head}: " + ", ".join(f"{ratio:.2f}× {name}" if ratio < 2 else
                                   f"{ratio:.1f}× {name}" for ratio, name in ratios)


class Table:
    """One Markdown table, and the row that says why a figure is missing."""

    def __init__(self, results: dict[str, Any], header: list[str]) -> None:
        self.results = results
        self.width = len(header)
        self.rows = ["| " + " | ".join(header) + " |", "|" + "---|" * self.width]

    def row(self, *cells: str) -> None:
        self.rows.append("| " + " | ".join(cells) + " |")

    def missing(self, number: str, what: str, name: str) -> bool:
        """True (and a row that says so) when figure `name` was not measured."""
        error = self.results.get(f"{name}_error")
        if error or name not in self.results:
            why = f"not measured: {error}" if error else "skipped"
            self.row(number, what, why, *[""] * (self.width - 3))
            return True
        return False


def goals_table(results: dict[str, Any], quick: bool) -> list[str]:
    """Every figure with a goal (issue 13's table, and issue 5's goals that still stand):
    Mashang, what it is measured beside, the ratio, the goal and whether it is met."""
    t = Table(results, ["#", "figure", "Mashang", "beside it", "ratio", "goal", "met"])
    ingest_rows(t)
    latency_rows(t)
    drain_rows(t)
    footprint_rows(t, results.get("peer"))
    peer_goal_rows(t)
    recovery_rows(t)
    if quick:
        t.rows += ["", "Quick mode: smaller counts, one round each (recovery: a 5 s outage, 2 "
                   "rounds); the peers and the 1,000,000-event footprint are skipped."]
    return t.rows


def ingest_rows(t: Table) -> None:
    if t.missing("1", "durable ingest", "ingest"):
        return
    f = t.results["ingest"]
    t.row("1", f"durable ingest: {f['messages']:,} heartbeats from {f['publishers']} "
          "`mosquitto_pub -l -q 1`, central down (events/s committed to the outbox and acked)",
          f"{rate(f['gateway'])} (CPU {pct(f['gateway_cpu'])} of a core, "
          f"{us(f['gateway_cpu_us'])} a message)", f"{rate(f['ceiling'])} bare paho QoS 1 "
          "subscriber, same run", pct(f["ratio"]), "≥ 80 % of the subscriber",
          verdict(f["ratio"] >= 0.8))


def latency_rows(t: Table) -> None:
    if t.missing("2", "latency", "latency"):
        return
    f = t.results["latency"]
    conditions = (("idle", "idle", 50), ("load", f"with {f['background']:,.0f} logs/s flowing", 20))
    for name, label, goal in conditions:
        p = f[f"{name}_central"]
        t.row("2", f"press → central, {label} (p50 / p99 / p99.9)", lat(p), "", "",
              f"p99 < {goal} ms", verdict(p["p99"] < goal))
    for name, label, _ in conditions:
        p = f.get(f"{name}_console")
        if p is None:
            t.row("2", f"press → butler console stream, {label}", f.get("console_note") or
                  "n/a", "", "", "p99 < 250 ms", verdict(None))
        else:
            t.row("2", f"press → butler console stream, {label} (p50 / p99 / p99.9)", lat(p),
                  "", "", "p99 < 250 ms", verdict(p["p99"] < 250))


def drain_rows(t: Table) -> None:
    if t.missing("3", "outage drain", "drain"):
        return
    f = t.results["drain"]
    noop = f["noop_drain_rate"]
    noop_text = rate(noop) if isinstance(noop, float) else noop
    t.row("3", f"outage drain: {f['backlog']:,} logs buffered with the central down, then it "
          "returns (events/s delivered and deleted, from the first delivery)",
          f"{rate(f['drain_rate'])} to the reference central ({us(f['send_cpu_us'])} CPU an "
          "event)", f"{noop_text} to the no-op receiver (the gateway's own capacity); first "
          f"delivery {f['resume_delay']:.1f} s after the central answered", "",
          "≥ 10,000/s", verdict(f["drain_rate"] >= 10_000))
    p = f["alerts"]
    t.row("3", "alerts pressed during the drain → central (p50 / p99 / p99.9)", lat(p), "", "",
          "p99 < 100 ms", verdict(p["p99"] < 100))


def _peer_values(peer: dict[str, Any] | None, part: str, key: str) -> dict[str, float | None]:
    sides = (peer or {}).get("sides", {})
    return {name: sides.get(name, {}).get(part, {}).get(key) for name in PEERS}


def _beside(peer: dict[str, Any] | None, part: str, key: str, show=mb) -> str:
    values = _peer_values(peer, part, key)
    shown = [f"{name} {show(value)}" for name, value in values.items()
             if name != "Mashang" and value is not None]
    return ", ".join(shown) + " (peer figure, 20,000 burst)" if shown else ""


def memory_cell(f: dict[str, Any], key: str) -> str:
    """"83.7 MB (anonymous 50.4 MB, 2 processes)": RSS, and what of it is the heap."""
    text = mb(f[f"rss_{key}"])
    if f"anon_{key}" in f:
        text += f" (anonymous {mb(f[f'anon_{key}'])}"
        processes = f.get(f"processes_{key}", 1)
        text += f", {processes} processes)" if processes > 1 else ")"
    return text


def footprint_rows(t: Table, peer: dict[str, Any] | None) -> None:
    if t.missing("4", "footprint", "footprint"):
        return
    f = t.results["footprint"]
    idle = f["rss_idle"]
    limit = idle + 5 * MB
    where = " (quick: the drain figure's gateway, central down)" if f.get("shared") else ""
    t.row("4", "RSS idle (VmRSS, the process and its children added up)",
          memory_cell(f, "idle"), _beside(peer, "burst", "idle_rss"), "", "≤ 45 MB",
          verdict(idle <= 45 * MB))
    after = [("20k", "20,000"), ("100k", "100,000")]
    for key, label in after:
        if f"rss_{key}" in f:
            value = f[f"rss_{key}"]
            t.row("4", f"RSS after a {label}-message burst, settled 5 s{where}",
                  memory_cell(f, key), _beside(peer, "burst", "after_rss") if key == "20k"
                  else "", f"idle + {mb(value - idle)}", "≤ idle + 5 MB",
                  verdict(value <= limit))
    if "rss_1m" in f:
        speed = f["depth_1m"] / f["buffer_1m_seconds"]
        t.row("4", "RSS with 1,000,000 buffered (central down; the ten bulk publishers, in "
              "rounds of 50,000 as fast as the gateway commits)",
              f"{memory_cell(f, '1m')}; {mb(f['rss_1m_restarted'])} after a restart with them",
              f"{f['depth_1m']:,} buffered in {f['buffer_1m_seconds']:.0f} s ({rate(speed)})",
              f"idle + {mb(f['rss_1m'] - idle)}", "≤ idle + 5 MB",
              verdict(f["rss_1m"] <= limit and f["rss_1m_restarted"] <= limit))
    else:
        t.row("4", "RSS with 1,000,000 buffered", "skipped (--quick)", "", "", "≤ idle + 5 MB",
              verdict(None))
    t.row("4", f"CPU idle (over {f['cpu_window']:.0f} s, /proc/PID/stat)",
          f"{f['cpu_idle'] * 100:.2f} % of a core", "", "", "< 1 % of a core",
          verdict(f["cpu_idle"] < 0.01))
    starts = ", ".join(f"{s:.2f}" for s in f["start_runs"])
    extra = (f"; {f['start_ready_1m']:.2f} s with 1,000,000 buffered"
             if "start_ready_1m" in f else "")
    t.row("4", "start to ready (exec → first 200 on /healthz)",
          f"{f['start_ready']:.2f} s (median of {starts}){extra}", "", "", "< 1 s",
          verdict(f["start_ready"] < 1))
    t.row("4", "outbox bytes per event (used pages / events held)",
          f"{f['bytes_per_event']:,.0f} B", "", "", "", verdict(None))


def peer_goal_rows(t: Table) -> None:
    if t.missing("5", "the peers", "peer"):
        return
    rates = _peer_values(t.results["peer"], "burst", "rate")
    ours, theirs = rates["Mashang"], rates["ThingsBoard"]
    if ours is None or not theirs:
        t.row("5", "end-to-end rate beside the ThingsBoard IoT Gateway", "not measured", "", "",
              "≥ 3× ThingsBoard's rate", verdict(None))
    else:
        t.row("5", "end-to-end rate, 20,000 heartbeats from the same publishers, each peer to "
              "its upstream (distinct heartbeats arrived / s)", rate(ours),
              f"ThingsBoard {rate(theirs)}", f"{ours / theirs:.1f}×",
              "≥ 3× ThingsBoard's rate", verdict(ours >= 3 * theirs))
    for part, label in (("outage", "a 10 s outage of its upstream"), ("kill", "a SIGKILL")):
        lost = _peer_values(t.results["peer"], part, "lost")
        mine = lost["Mashang"]
        others = ", ".join(f"{name} {count(value)}" for name, value in lost.items()
                           if name != "Mashang" and value is not None)
        t.row("5", f"heartbeats lost across {label}", "not measured" if mine is None else
              count(mine), others, "", "none lost", verdict(None if mine is None else mine == 0))


def recovery_rows(t: Table) -> None:
    if t.missing("6", "recovery after an outage", "recovery"):
        return
    f = t.results["recovery"]
    samples = ", ".join(f"{x:.2f}" for x in f["samples"])
    t.row("6", f"central back after a {f['outage']:.0f} s outage (connections refused) → the "
          f"alert pressed {f['press_after']:.0f} s into it arrives there (median / worst of "
          f"{f['rounds']}, one clock)", f"{f['median']:.2f} / {f['worst']:.2f} s ({samples})",
          "", "", "< 2 s, worst", verdict(f["worst"] < 2.0))


def peers_table(results: dict[str, Any]) -> list[str]:
    """The peers side by side, figure by figure, and who is ahead by what ratio."""
    peer = results.get("peer")
    if not peer:
        error = results.get("peer_error")
        return [f"Not measured: {error}"] if error else []
    sides = peer["sides"]

    def label(name: str) -> str:
        version = sides.get(name, {}).get("version")
        return f"{name} {version}" if version else name

    t = Table(results, ["figure", *[label(name) for name in PEERS], "ahead, by"])

    def cell(name: str, part: str, key: str, show) -> str:
        measured = sides.get(name, {})
        if f"{part}_error" in measured:
            return "not measured (why: below)"
        value = measured.get(part, {}).get(key)
        return "–" if value is None else show(value)

    def line(what: str, part: str, key: str, show, higher_better: bool, extra=None) -> None:
        cells = [cell(name, part, key, show) for name in PEERS]
        if extra:
            cells = [f"{c} {extra(sides.get(n, {}).get(part, {}))}" if part in sides.get(n, {})
                     else c for c, n in zip(cells, PEERS, strict=True)]
        t.row(what, *cells, ahead(_peer_values(peer, part, key), higher_better, show))

    n = f"{peer['burst']:,}"
    line(f"rate: {n} heartbeats from 10 publishers (distinct arrived / s at the upstream)",
         "burst", "rate", rate, True, extra=lambda m: f"({m['delivered']:,} of {m['sent']:,})")
    line("RSS idle, before the burst", "burst", "idle_rss", mb, False)
    line("RSS at the burst's peak", "burst", "peak_rss", mb, False)
    line("RSS 5 s after the burst", "burst", "after_rss", mb, False)
    line("CPU per heartbeat during the burst (the process and its children)", "burst",
         "cpu_us", us, False)
    for part, what in (("outage", f"a {peer['outage']:.0f} s outage of the upstream"),
                       ("kill", "a SIGKILL of the peer, restarted at once")):
        stream = f"{peer['rate']:.0f} heartbeats/s from one device"
        line(f"lost across {what} ({stream})", part, "lost", count, False,
             extra=lambda m: f"of {m['sent']:,}")
        line(f"doubled across {what}", part, "doubled", count, False)
    if peer.get("not_measured"):
        t.rows += ["", *[f"- Not measured: {why}" for why in peer["not_measured"]]]
    return t.rows


def cpu_table(results: dict[str, Any]) -> list[str]:
    """CPU per event by step, and what one core does: the numbers docs/operations.md scales
    to a Raspberry Pi."""
    t = Table(results, ["what", "heartbeat (a log)", "press (an alert)"])
    if t.missing("7", "CPU per event", "cpu"):
        return t.rows
    f = results["cpu"]
    for step in f["steps"]["heartbeat"]:
        t.row(f"in-process `{step}` (bench.hotpath, core 0), CPU a message",
              us(f["steps"]["heartbeat"][step]), us(f["steps"]["press"].get(step, float("nan"))))
    t.row(f"the gateway process pinned to core 0 (`taskset -c 0`), ingesting {f['messages']:,} "
          "heartbeats, central down (MQTT in, parse, rules, commit, ack), CPU a message",
          f"{us(f['ingest_cpu_us'])}; {rate(f['ingest'])} with {pct(f['ingest_cpu'])} of the "
          f"core, {pct(f['ratio'])} of a bare paho subscriber on that core "
          f"({rate(f['ceiling'])})", "")
    t.row("the gateway process pinned to core 0, sending the same number to the no-op "
          "receiver (lease, batch, sign, POST, delete), CPU an event",
          f"{us(f['send_cpu_us'])}; {rate(f['send'])}", "")
    ingest = results.get("ingest")
    if ingest:
        t.row("the gateway unpinned, figure 1 (ingest), CPU a message",
              us(ingest["gateway_cpu_us"]), "")
    return t.rows


def render(results: dict[str, Any], quick: bool, started: str, seconds: float,
           load_before: str, plots: list[str],
           sections: Sequence[tuple[str, list[str]]] = ()) -> str:
    lines = [
        "# Mashang Edge benchmark",
        "",
        f"Run {started}, {'quick' if quick else 'full'} mode, {seconds:.0f} s; commit "
        f"{commit()}. Produced by `./scripts/bench{' --quick' if quick else ''}`; how each "
        "figure is measured: bench/NOTES.md.",
        "",
        "## Goals",
        "",
        *goals_table(results, quick),
    ]
    peers = peers_table(results)
    if peers:
        lines += ["", "## The peers side by side", "", *peers]
    lines += ["", "## CPU per event, and one core (docs/operations.md scales these to a "
              "Raspberry Pi)", "", *cpu_table(results)]
    for title, rows in sections:  # the central's figures (bench.fleet, bench.drivers)
        if rows:
            lines += ["", f"## {title}", "", *rows]
    lines += ["", "## Machine", *machine(load_before), f"- Load average when it ended: "
              f"{loadavg()}"]
    extras = []
    ingest = results.get("ingest")
    if ingest:
        runs = ", ".join(rate(r) for r in ingest["ceiling_runs"])
        ours = ", ".join(rate(r) for r in ingest["gateway_runs"])
        extras.append(f"- Ingest rounds (best counted): ceiling {runs}; gateway {ours}. "
                      f"Peak gateway RSS while ingesting {mb(ingest['gateway_peak_rss'])}.")
    drain = results.get("drain")
    if drain:
        extras.append(f"- Drain: {drain['drain_seconds']:.1f} s from the first delivery to an "
                      f"empty outbox; the central took {drain['central_restart']:.1f} s to "
                      "come back up.")
    if extras:
        lines += ["", "## Details", *extras]
    if plots:
        lines += ["", "## Plots", *[f"![{p}]({p})" for p in plots]]
    return "\n".join(lines) + "\n"
