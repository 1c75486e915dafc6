"""The results as a Markdown table, with the machine and the commit they were measured on."""

from __future__ import annotations

import os
import platform
import subprocess
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


def table(results: dict[str, Any], quick: bool) -> list[str]:
    rows = ["| # | figure | ours | baseline or peer | ratio · goal | goal |",
            "|---|---|---|---|---|---|"]

    def row(number: str, what: str, ours: str, base: str, ratio: str, ok: bool | None) -> None:
        rows.append(f"| {number} | {what} | {ours} | {base} | {ratio} | {verdict(ok)} |")

    def failed(number: str, what: str, name: str) -> bool:
        error = results.get(f"{name}_error")
        if error:
            row(number, what, f"not measured: {error}", "", "", None)
            return True
        if name not in results:
            row(number, what, "skipped", "", "", None)
            return True
        return False

    if not failed("1", "durable ingest (events/s committed and acked)", "ingest"):
        f = results["ingest"]
        row("1", f"durable ingest, {f['messages']:,} heartbeats from {f['publishers']} "
            "`mosquitto_pub -l`, central down (events/s committed to the outbox and acked)",
            f"{rate(f['gateway'])} (gateway CPU {pct(f['gateway_cpu'])} of a core)",
            f"{rate(f['ceiling'])} bare paho QoS 1 subscriber", f"{pct(f['ratio'])} of the "
            "ceiling · goal ≥ 80 %", f["ratio"] >= 0.8)

    if not failed("2", "latency", "latency"):
        f = results["latency"]
        for name, label in (("idle", "idle"), ("load", f"under {f['background']:,.0f} logs/s")):
            p = f[f"{name}_central"]
            row("2", f"press → central, {label} (p50 / p99 / p99.9)", lat(p), "", "goal p99 "
                "< 50 ms", p["p99"] < 50)
        for name, label in (("idle", "idle"), ("load", f"under {f['background']:,.0f} logs/s")):
            p = f.get(f"{name}_console")
            if p is None:
                row("2", f"press → butler console stream, {label}",
                    f.get("console_note") or "n/a", "", "goal p99 < 250 ms", None)
            else:
                row("2", f"press → butler console stream, {label} (p50 / p99 / p99.9)", lat(p),
                    "", "goal p99 < 250 ms", p["p99"] < 250)

    if not failed("3", "outage drain", "drain"):
        f = results["drain"]
        noop = f["noop_drain_rate"]
        noop_text = rate(noop) if isinstance(noop, float) else noop
        row("3", f"outage drain: {f['backlog']:,} logs buffered with the central down, then "
            "it returns (events/s delivered and deleted, from the first delivery)",
            f"{rate(f['drain_rate'])} to the reference central",
            f"{noop_text} to the no-op receiver (the gateway's own capacity); first delivery "
            f"{f['resume_delay']:.1f} s after the central answered", "goal ≥ 10,000/s",
            f["drain_rate"] >= 10_000)
        p = f["alerts"]
        row("3", "alerts pressed during the drain → central (p50 / p99 / p99.9)", lat(p), "",
            "goal p99 < 100 ms", p["p99"] < 100)

    if not failed("4", "footprint", "footprint"):
        f = results["footprint"]
        flat = f["rss_spread"] <= 5 * MB and f["rss_max"] <= 50 * MB
        one_m = mb(f["rss_1m"]) if "rss_1m" in f else "skipped (--quick)"
        if f.get("shared"):
            one_m += " (quick: measured on the drain figure's gateway)"
        row("4", "gateway RSS: idle / 10,000 buffered / 1,000,000 buffered",
            f"{mb(f['rss_idle'])} / {mb(f['rss_10k'])} / {one_m}", "",
            f"spread {mb(f['rss_spread'])} · goal ≤ 50 MB, flat within 5 MB", flat)
        row("4", f"CPU idle (over {f['cpu_window']:.0f} s, /proc/PID/stat)",
            f"{f['cpu_idle'] * 100:.2f} % of a core", "",
            "goal < 1 % of a core", f["cpu_idle"] < 0.01)
        starts = ", ".join(f"{s:.2f}" for s in f["start_runs"])
        extra = (f"; {f['start_ready_1m']:.2f} s with 1,000,000 buffered"
                 if "start_ready_1m" in f else "")
        row("4", "start to ready (exec → first 200 on /healthz)",
            f"{f['start_ready']:.2f} s (median of {starts}){extra}", "", "goal < 1 s",
            f["start_ready"] < 1)
        per = f.get("bytes_per_event_1m", f["bytes_per_event_10k"])
        at = "1,000,000" if "bytes_per_event_1m" in f else "10,000"
        row("4", f"outbox bytes per event (used pages / events, at {at})", f"{per:,.0f} B", "",
            "", None)

    if not failed("5", "the peer (Node-RED)", "peer"):
        f = results["peer"]
        ours, red = f["ours"], f["node-red"]
        row("5", f"burst of {f['messages']:,} heartbeats from the same publishers to the same "
            "receiver: events/s arriving (arrived of sent)",
            f"{rate(ours['rate'])} ({ours['delivered']:,} of {ours['sent']:,})",
            f"Node-RED {f.get('node_red_version', '')}: {rate(red['rate'])}"
            f" ({red['delivered']:,} of {red['sent']:,})",
            f"{ours['rate'] / red['rate']:.1f}×" if red["rate"] else "", None)
        row("5", "resident memory: idle / peak during that run",
            f"{mb(ours['idle_rss'])} / {mb(ours['peak_rss'])}",
            f"{mb(red['idle_rss'])} / {mb(red['peak_rss'])}", "", None)
        o, r = ours["outage"], red["outage"]
        row("5", f"events lost across a {f['outage']:.0f} s outage of the receiver "
            f"({f['outage_rate']:.0f} events/s)", f"{o['lost']:,} of {o['sent']:,}",
            f"{r['lost']:,} of {r['sent']:,}", "", o["lost"] == 0)
    if not failed("6", "recovery after an outage", "recovery"):
        f = results["recovery"]
        samples = ", ".join(f"{x:.2f}" for x in f["samples"])
        row("6", f"recovery: central down {f['outage']:.0f} s (connections refused), an alert "
            f"pressed {f['press_after']:.0f} s into it: seconds from the central's return to "
            f"the alert's arrival, one clock (median / worst of {f['rounds']})",
            f"{f['median']:.2f} / {f['worst']:.2f} s ({samples})", "",
            "goal ≤ 2 s, worst", f["worst"] <= 2.0)
    if quick:
        rows.append("")
        rows.append("Quick mode: smaller counts, one round each (recovery: a 5 s outage, 2 "
                    "rounds); the Node-RED peer and the 1,000,000-event footprint are skipped.")
    return rows


def render(results: dict[str, Any], quick: bool, started: str, seconds: float,
           load_before: str, plots: list[str]) -> str:
    lines = [
        "# Mashang Edge benchmark",
        "",
        f"Run {started}, {'quick' if quick else 'full'} mode, {seconds:.0f} s; commit "
        f"{commit()}. Produced by `./scripts/bench{' --quick' if quick else ''}`; how each "
        "figure is measured: bench/NOTES.md.",
        "",
        *table(results, quick),
        "",
        "## Machine",
        *machine(load_before),
        f"- Load average when it ended: {loadavg()}",
    ]
    extras = []
    ingest = results.get("ingest")
    if ingest:
        runs = ", ".join(rate(r) for r in ingest["ceiling_runs"])
        ours = ", ".join(rate(r) for r in ingest["gateway_runs"])
        extras.append(f"- Ingest rounds (best counted): ceiling {runs}; gateway {ours}. "
                      f"Peak gateway RSS while ingesting {mb(ingest['gateway_peak_rss'])}.")
    footprint = results.get("footprint")
    if footprint and "fill_seconds" in footprint:
        extras.append(f"- The 1,000,000-event outbox was written with Outbox.put in "
                      f"{footprint['fill_seconds']:.0f} s; gateway CPU with it, central down: "
                      f"{pct(footprint['cpu_1m'])}.")
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
