"""The central under a fleet (issue 11): `mashang simulate fleet` against the central on SQLite,
on PostgreSQL with one process, and with two processes on one port (`reuse_port`), side by
side in one run, each on a fresh database.

Per setup: events/s accepted (answered 200) and stored (a batch whose answer timed out is
stored all the same) beside the rate offered, duplicates and errors, press → accepted
(the alert's batch answered) and press → console (the alert on the duty account's live stream,
which with two processes is on whichever process the kernel gave the stream's connection, the
press on whichever it gave the batch's), the centrals' CPU per stored event, and the
database's growth per million events (the SQLite file with its WAL after a clean stop;
PostgreSQL's `pg_database_size`), before → after the run, scaled.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.figures import Context
from bench.procs import BenchError, cpu_seconds, stop, wait_until
from bench.report import Table, count, ms, rate
from devices.simulators.fleet import PREFIX, SECRET, gateways_table, more_files
from lab.postgres import PostgresServer
from lab.processes import Central, free_port, mashang
from tests.helpers.console import PASSWORD, set_password

SETUPS = ("sqlite", "postgresql", "postgresql x2")
MILLION = 1_000_000


@dataclass(frozen=True)
class Load:
    gateways: int
    devices: int
    seconds: float
    heartbeat_every: float
    presses: float
    scans: float
    drain: float

    def argv(self) -> list[str]:
        return ["--gateways", str(self.gateways), "--devices", str(self.devices),
                "--seconds", str(self.seconds), "--heartbeat-every", str(self.heartbeat_every),
                "--presses", str(self.presses), "--scans", str(self.scans),
                "--drain", str(self.drain)]


# Full: a street's 100 gateways, then the city of 1,000, 500 buttons each, each
# button's heartbeat every 5 minutes (167 and 1,667 events/s), two presses a second.
# Quick: enough to prove the harness on both engines in ~30 s.
FULL = [Load(gateways=gateways, devices=500, seconds=60, heartbeat_every=300, presses=2,
             scans=2, drain=30) for gateways in (100, 1000)]
QUICK = [Load(gateways=50, devices=50, seconds=3, heartbeat_every=5, presses=8, scans=2,
              drain=10)]


def fleet_central(folder: Path, load: Load, *, port: int | None = None,
                  database: str | None = None, extra: str = "") -> Central:
    """A central that knows the fleet's gateways (and the lab's own gw-test)."""
    central = Central(folder, port=port, database=database, extra=extra)
    text = central.config.read_text(encoding="utf-8")
    central.config.write_text(
        text.replace("[gateways]\n", gateways_table(PREFIX, load.gateways, SECRET)),
        encoding="utf-8")
    return central


def sqlite_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("central.sqlite*"))


def sqlite_events(folder: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{folder / 'central.sqlite'}?mode=ro",
                                            uri=True)) as connection:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])


def postgres_events(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM events").fetchone()
    assert row is not None
    return int(row[0])


class Setup:
    """One setup's centrals, started; `size()` reads its database."""

    def __init__(self, name: str, folder: Path, load: Load, server: PostgresServer) -> None:
        self.name = name
        self.folder = folder
        self.url = server.new_database("fleet") if name != "sqlite" else None
        self._server = server
        processes = 2 if name.endswith("x2") else 1
        port = free_port()
        # Every process signs and checks the same session cookies, and shares the port.
        shared = (f"reuse_port = true\n[console]\nsession_secret = \"{secrets.token_hex(32)}\"\n"
                  if processes > 1 else "")
        self.centrals = [fleet_central(folder / f"central{n}", load, port=port,
                                       database=self.url, extra=shared)
                         for n in range(processes)]

    def start(self) -> None:
        set_password(self.centrals[0], "duty", PASSWORD)
        for central in self.centrals:
            central.start()
            # /healthz may have been answered by the other process on the shared port.
            wait_until(lambda central=central: "central listening" in central.output(), 30,
                       "each central listening")

    def size(self) -> int:
        if self.url is None:
            return sqlite_bytes(self.centrals[0].folder)
        return self._server.size(self.url)

    def events(self) -> int:
        """Events stored: those of batches whose answer timed out too."""
        if self.url is None:
            return sqlite_events(self.centrals[0].folder)
        return postgres_events(self.url)

    def cpu(self) -> float:
        return sum(cpu_seconds(c.proc.pid) for c in self.centrals if c.proc is not None)

    def stop(self) -> None:
        for central in self.centrals:
            stop(central)


def simulate(central_url: str, load: Load, folder: Path) -> dict[str, Any]:
    """The fleet simulator, in a process of its own; its JSON result."""
    argv = mashang("simulate", "fleet", "--central", central_url, *load.argv(),
                   "--console", "duty", "--json")
    log = folder / "fleet.log"
    with log.open("w") as errors:
        done = subprocess.run(argv, input=f"{PASSWORD}\n", stdout=subprocess.PIPE,
                              stderr=errors, text=True,
                              timeout=load.seconds + load.drain + 120)
    if done.returncode != 0 or not done.stdout.strip():
        raise BenchError(f"the fleet simulator failed ({done.returncode}): "
                         f"{log.read_text()[-300:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(setup: Setup, load: Load) -> dict[str, Any]:
    setup.start()
    try:
        before, cpu_before = setup.size(), setup.cpu()
        result = simulate(setup.centrals[0].url, load, setup.folder)
        cpu = setup.cpu() - cpu_before
    finally:
        setup.stop()
    grown = setup.size() - before
    stored = result["stored"] = setup.events()
    result["central_cpu_us"] = cpu / stored * MILLION if stored else None
    result["bytes_per_million"] = grown / stored * MILLION if stored else None
    result["database_bytes"] = setup.size()
    return result


@contextlib.contextmanager
def postgres(folder: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def figure_fleet(ctx: Context) -> dict[str, Any]:
    more_files()  # for the centrals, which inherit it: a connection or two per gateway
    runs = []
    folder = ctx.folder("fleet")
    with postgres(folder / "postgres") as server:
        for number, load in enumerate(QUICK if ctx.quick else FULL):
            run: dict[str, Any] = {"load": load.__dict__, "offered": load.gateways * load.devices
                                   / load.heartbeat_every + load.presses + load.scans}
            for name in SETUPS:
                setup = Setup(name, folder / f"{number}-{name.replace(' ', '')}", load, server)
                run[name] = measure(setup, load)
            runs.append(run)
    return {"runs": runs}


# -- the report ------------------------------------------------------------------------------


def size_per_million(value: float | None) -> str:
    return "–" if value is None else f"{value / 1024 ** 3:.2f} GiB"


def latency(figures: dict[str, float] | None) -> str:
    if not figures:
        return "–"
    return f"{ms(figures['p50'])} / {ms(figures['p99'])} ms (n={figures['n']})"


def table(results: dict[str, Any]) -> list[str]:
    """The fleet figure's tables, one per load, one column per setup; nothing when the figure
    did not run."""
    if "fleet" not in results and "fleet_error" not in results:
        return []
    t = Table(results, ["what", *SETUPS])
    if t.missing("8", "the central under a fleet", "fleet"):
        return t.rows
    rows: list[str] = []
    for run in results["fleet"]["runs"]:
        rows += [*run_table(results, run), ""]
    rows.append(
        "One `mashang simulate fleet` process; \"postgresql x2\": two `mashang central` on one "
        "database and one port (`reuse_port`). Each setup on a fresh database; the simulator, "
        f"the centrals and PostgreSQL share this machine's {os.cpu_count()} cores. Stored: "
        "events in the database, with those of batches whose answer timed out.")
    return rows


def run_table(results: dict[str, Any], run: dict[str, Any]) -> list[str]:
    load = run["load"]
    t = Table(results, ["what", *SETUPS])
    runs = [run[name] for name in SETUPS]

    def line(what: str, show: Callable[[dict[str, Any]], str]) -> None:
        t.row(what, *[show(r) for r in runs])

    line("events/s accepted (answered 200)", lambda r: rate(r["accepted_per_s"]))
    line("events/s stored (answered or not)", lambda r: rate(r["stored"] / r["elapsed"]))
    line("accepted / made / stored (duplicates, rejected, never sent)",
         lambda r: f"{count(r['accepted'])} / {count(r['generated'])} / {count(r['stored'])} "
                   f"({r['duplicates']}, {r['rejected']}, {r['unsent']})")
    line("errors", lambda r: ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0")
    line("signed polls answered", lambda r: count(r["polls"]))
    line("press → accepted p50 / p99", lambda r: latency(r["press_to_accepted_ms"]))
    line("press → console p50 / p99", lambda r: latency(r["press_to_console_ms"]))
    line("presses accepted, not on the console", lambda r: str(r["console_missed"]))
    line("central CPU per stored event",
         lambda r: "–" if r["central_cpu_us"] is None else f"{r['central_cpu_us']:,.0f} µs")
    line("the simulator's CPU per event made",
         lambda r: f"{r['cpu_seconds'] / max(1, r['generated']) * MILLION:,.0f} µs")
    line("database growth per 1,000,000 events stored",
         lambda r: size_per_million(r["bytes_per_million"]))
    head = (f"**{load['gateways']:,} gateways × {load['devices']:,} buttons for "
            f"{load['seconds']:g} s**: each button's heartbeat every {load['heartbeat_every']:g} "
            f"s, {load['presses']:g} presses/s, {load['scans']:g} scans/s: "
            f"{run['offered']:,.0f} events/s offered.")
    return [head, "", *t.rows]
