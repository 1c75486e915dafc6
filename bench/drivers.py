"""The PostgreSQL driver, measured on the central's hot path (issue 11: "psycopg 3 with its
pool, or asyncpg: measure and say why"): `./scripts/bench --only drivers`.

On a private server (lab/postgres.py) and the central's own `events` table, batches of 500
heartbeat-sized events are written by four concurrent writers, as four gateways' batches
arrive at once, each batch in one transaction behind the writers' advisory lock, every row
`ON CONFLICT (id) DO NOTHING` and the accepted ids told apart from the duplicates (a tenth of
each batch is ids of the batch before: a gateway's retry). Then the table is read back in
pages of 500 by `seq`, as the alert engine and `GET /v1/events` read it. Each driver twice:
a statement per event (what `EventStore.add` sent at first; it now sends one multi-row
INSERT) and one statement per batch (`unnest` of arrays), and psycopg both ways once more
without the writers' lock (what ingest would gain if it did not take it: the unique id
dedups, but the alert engine reads the log in `seq` order, docs/scaling.md). psycopg 3 runs
synchronously from worker threads with its pool, as cloud_bridge/receiver/postgres.py uses
it; asyncpg runs on the event loop with its own pool.

asyncpg is not a dependency of the project: when it is not installed, it is installed once
into the bench's cache folder (outside the repository), as the peers are.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from types import ModuleType
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from bench.figures import Context, percentiles
from bench.procs import CACHE, _install_step
from bench.report import Table, ms, rate
from cloud_bridge.receiver.postgres import WRITERS_LOCK, schema_step
from cloud_bridge.receiver.store import SCHEMA
from lab.postgres import PostgresServer

BATCH = 500
SMALL = 2  # a gateway's batch when its central keeps up: what matters then is commits a second
WRITERS = 4

COLUMNS = "id, gateway_id, kind, type, priority, device_id, arrived, body"
PER_ROW = {
    "psycopg": f"INSERT INTO events ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
               " ON CONFLICT (id) DO NOTHING",
    "asyncpg": f"INSERT INTO events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
               " ON CONFLICT (id) DO NOTHING",
}
ARRAYS = ("text[]", "text[]", "text[]", "text[]", "text[]", "text[]", "float8[]", "text[]")


def mark(driver: str, number: int) -> str:
    """A placeholder; psycopg's arrays in binary (%b), as asyncpg always sends them."""
    return "%b" if driver == "psycopg" else f"${number}"


PER_BATCH = {
    driver: f"INSERT INTO events ({COLUMNS}) SELECT * FROM unnest("
            + ", ".join(f"{mark(driver, n)}::{kind}" for n, kind in enumerate(ARRAYS, start=1))
            + ") ON CONFLICT (id) DO NOTHING RETURNING id"
    for driver in ("psycopg", "asyncpg")
}
PAGE = {
    "psycopg": "SELECT seq, gateway_id, arrived, body FROM events WHERE seq > %s"
               " ORDER BY seq LIMIT 500",
    "asyncpg": "SELECT seq, gateway_id, arrived, body FROM events WHERE seq > $1"
               " ORDER BY seq LIMIT 500",
}

Row = tuple[str, str, str, str, str, str, float, str]


def heartbeat(gateway: str, number: int) -> Row:
    event_id, device = str(uuid.uuid4()), f"{gateway}-b{number:04d}"
    body = {"id": event_id, "kind": "log", "type": "button.status", "priority": "low",
            "device_id": device, "occurred_at": "2026-12-01T12:00:00.000+08:00",
            "received_at": "2026-12-01T12:00:00.002+08:00",
            "data": {"state": "online", "battery": 87, "rssi": -70, "unregistered": True}}
    return (event_id, gateway, "log", "button.status", "low", device, time.time(),
            json.dumps(body, ensure_ascii=False))


def retried(size: int) -> int:
    """Ids of the writer's previous batch sent again in each batch: a gateway's retry."""
    return size // 10


def batches(writer: int, count: int, size: int) -> Iterator[list[Row]]:
    """`count` batches of one gateway, each with a tenth of the one before sent again."""
    gateway = f"fleet-{writer:04d}"
    previous: list[Row] = []
    for _ in range(count):
        again = previous[:retried(size)]
        fresh = [heartbeat(gateway, n) for n in range(size - len(again))]
        batch = again + fresh
        yield batch
        previous = fresh


def columns(batch: list[Row]) -> list[list[Any]]:
    return [list(column) for column in zip(*batch, strict=True)]


# -- psycopg 3, synchronous, from worker threads ---------------------------------------------


Writer = Callable[[list[Row], bool], Awaitable[int]]
Reader = Callable[[int], Awaitable[list[Any]]]


def psycopg_writers(url: str, locked: bool = True) -> tuple[Writer, Reader, Callable[[], None]]:
    pool = ConnectionPool(url, min_size=WRITERS, max_size=8, kwargs={"autocommit": True},
                          open=True)

    def write(batch: list[Row], per_row: bool) -> int:
        with pool.connection() as connection, connection.transaction():
            if locked:
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITERS_LOCK,))
            if per_row:
                return sum(connection.execute(PER_ROW["psycopg"], row).rowcount for row in batch)
            return len(connection.execute(PER_BATCH["psycopg"], columns(batch)).fetchall())

    def page(after: int) -> list[Any]:
        with pool.connection() as connection:
            return connection.execute(PAGE["psycopg"], (after,)).fetchall()

    async def write_async(batch: list[Row], per_row: bool) -> int:
        return await asyncio.to_thread(write, batch, per_row)

    async def page_async(after: int) -> list[Any]:
        return await asyncio.to_thread(page, after)

    return write_async, page_async, pool.close


# -- asyncpg, on the loop --------------------------------------------------------------------


def load_asyncpg() -> ModuleType:
    """asyncpg as installed, or installed once into the bench's cache folder."""
    with contextlib.suppress(ImportError):
        return importlib.import_module("asyncpg")
    target = CACHE / "asyncpg"
    if not (target / "asyncpg").exists():
        _install_step([sys.executable, "-m", "pip", "install", "--quiet",
                       "--disable-pip-version-check", "--target", str(target), "asyncpg"],
                      f"pip install asyncpg into {target}")
    sys.path.insert(0, str(target))
    return importlib.import_module("asyncpg")


async def asyncpg_writers(url: str) -> tuple[Writer, Reader, Callable[[], Awaitable[None]]]:
    asyncpg = load_asyncpg()
    pool = await asyncpg.create_pool(url, min_size=WRITERS, max_size=8)

    async def write(batch: list[Row], per_row: bool) -> int:
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", WRITERS_LOCK)
            if per_row:
                statuses = [await connection.execute(PER_ROW["asyncpg"], *row) for row in batch]
                return sum(status.endswith(" 1") for status in statuses)
            return len(await connection.fetch(PER_BATCH["asyncpg"], *columns(batch)))

    async def page(after: int) -> list[Any]:
        async with pool.acquire() as connection:
            return list(await connection.fetch(PAGE["asyncpg"], after))

    return write, page, pool.close


# -- the measurement -------------------------------------------------------------------------


async def run_variant(write: Writer, page: Reader, count: int, per_row: bool, size: int
                      ) -> dict[str, Any]:
    """`WRITERS` writers of `count` batches each, at once; then the table read back."""
    times: list[float] = []
    accepted = 0

    async def writer(number: int) -> None:
        nonlocal accepted
        for batch in batches(number, count, size):
            began = time.perf_counter()
            taken = await write(batch, per_row)  # awaited first: `+=` would read `accepted` before
            accepted += taken
            times.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(writer(n) for n in range(1, WRITERS + 1)))
    written = time.perf_counter() - began
    pages: list[float] = []
    after, rows = 0, 0
    began = time.perf_counter()
    while True:
        started = time.perf_counter()
        found = await page(after)
        pages.append(time.perf_counter() - started)
        if not found:
            break
        rows += len(found)
        after = found[-1][0]
    read = time.perf_counter() - began
    expected = WRITERS * (count * (size - retried(size)) + retried(size))
    if accepted != expected:
        raise RuntimeError(f"accepted {accepted} events, expected {expected}")
    return {"events": WRITERS * count * size, "accepted": accepted,
            "write_per_s": WRITERS * count * size / written,
            "commits_per_s": WRITERS * count / written, "batch_ms": percentiles(times),
            "read_per_s": rows / read, "page_ms": percentiles(pages)}


# (driver, a statement per event?, behind the writers' lock?, events a batch). Then psycopg
# without the lock, what ingest would gain if it did not take it (the unique id dedups), with
# full batches and with the small ones of a fleet whose central keeps up.
VARIANTS = [
    *[(driver, per_row, True, BATCH) for driver in ("psycopg", "asyncpg")
      for per_row in (True, False)],
    ("psycopg", True, False, BATCH), ("psycopg", False, False, BATCH),
    ("psycopg", True, True, SMALL), ("psycopg", True, False, SMALL),
]


def variant_name(driver: str, per_row: bool, locked: bool, size: int) -> str:
    return (f"{driver}, {'a statement per event' if per_row else 'one per batch'}"
            f"{'' if locked else ', no writers’ lock'}"
            f"{'' if size == BATCH else f', batches of {size}'}")


async def measure_once(server: PostgresServer, driver: str, per_row: bool, locked: bool,
                       size: int, count: int) -> dict[str, Any]:
    """One variant on a fresh database; of small batches, twenty times as many."""
    count = count if size == BATCH else count * 20
    url = server.new_database("drivers")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(schema_step(SCHEMA))
    if driver == "psycopg":
        write, page, close = psycopg_writers(url, locked)
        try:
            return await run_variant(write, page, count, per_row, size)
        finally:
            close()
    write, page, close_async = await asyncpg_writers(url)
    try:
        return await run_variant(write, page, count, per_row, size)
    finally:
        await close_async()


async def measure(server: PostgresServer, count: int, rounds: int) -> dict[str, Any]:
    """Every variant once a round, in turn, so that the machine's other load falls on all of
    them alike; the median round of each."""
    runs: dict[str, list[dict[str, Any]]] = {variant_name(*v): [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            runs[variant_name(*variant)].append(await measure_once(server, *variant, count))
    return {name: median_run(found) for name, found in runs.items()}


def median_run(found: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median write rate, and every round's rate."""
    ordered = sorted(found, key=lambda run: run["write_per_s"])
    return {**ordered[len(ordered) // 2], "write_rounds": [run["write_per_s"] for run in found]}


def figure_drivers(ctx: Context) -> dict[str, Any]:
    # Batches per writer and rounds: 10,000 events a variant once, or 50,000 three times.
    count, rounds = (5, 1) if ctx.quick else (25, 3)
    server = PostgresServer(ctx.folder("drivers"))
    server.start()
    try:
        variants = asyncio.run(measure(server, count, rounds))
    finally:
        server.stop()
    return {"variants": variants, "batches": count, "writers": WRITERS, "rounds": rounds,
            "asyncpg": load_asyncpg().__version__, "psycopg": psycopg.__version__}


def table(results: dict[str, Any]) -> list[str]:
    """One row per driver and statement shape; nothing when the figure did not run."""
    if "drivers" not in results and "drivers_error" not in results:
        return []
    t = Table(results, ["driver, statements", "write events/s", "commits/s",
                        "per batch p50 / p99", "read events/s", "per page p50 / p99"])
    if t.missing("9", "drivers", "drivers"):
        return t.rows
    f = results["drivers"]
    for name, v in f["variants"].items():
        rounds = ", ".join(rate(r) for r in v["write_rounds"])
        t.row(name, f"{rate(v['write_per_s'])} ({rounds})" if len(v["write_rounds"]) > 1
              else rate(v["write_per_s"]), rate(v["commits_per_s"]),
              f"{ms(v['batch_ms']['p50'])} / {ms(v['batch_ms']['p99'])} ms",
              rate(v["read_per_s"]), f"{ms(v['page_ms']['p50'])} / {ms(v['page_ms']['p99'])} ms")
    t.rows += ["", f"Median of {f['rounds']} rounds, the variants in turn; each round "
               f"{f['writers']} writers × {f['batches']} batches of {BATCH} events (a tenth "
               "of each sent again), each batch one transaction behind the writers' advisory "
               f"lock (but where it says not); read back in pages of 500. psycopg "
               f"{f['psycopg']} with psycopg_pool from worker threads; asyncpg {f['asyncpg']} "
               "on the loop. How: bench/drivers.py."]
    return t.rows

