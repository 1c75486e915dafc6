from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from cloud_bridge.receiver.postgres import PostgresDatabase
from cloud_bridge.receiver.store import Database, SQLiteDatabase
from lab.postgres import PostgresServer
from tests.helpers.support import Broker, Central, Gateway

# The central's two storage engines; every test of the central runs on both.
ENGINES = ("sqlite", "postgresql")

# Every test is exactly one kind (pyproject.toml's markers say what each means); `-m unit` is
# the in-process suite that runs in seconds, `-m system` the one on real processes.
TEST_KINDS = ("unit", "system")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything, so no test escapes the check
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        kinds = sorted({mark.name for mark in item.iter_markers() if mark.name in TEST_KINDS})
        if len(kinds) != 1:
            wrong.append(f"{item.nodeid}: {' and '.join(kinds) or 'neither'}")
    if wrong:
        raise pytest.UsageError(
            "each test must be marked either unit or system (pytestmark = pytest.mark.unit or "
            "pytest.mark.system at the top of its file, or a decorator on the test), "
            "not neither nor both:\n  " + "\n  ".join(wrong)
        )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the run, started when a test first asks for it."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `central` runs once per engine; others that merely need a central to
    send to (the gateway's tests) run on the default SQLite one."""
    central = metafunc.definition.get_closest_marker("central") is not None
    for name, scope in (("central_database", "function"), ("module_database", "module")):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, ENGINES if central else ENGINES[:1], indirect=True,
                                 scope=scope)


def engine_database(request: pytest.FixtureRequest) -> str | None:
    """None for the SQLite file in the central's folder, else the URL of a fresh database on
    the private PostgreSQL server."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def central_database(request: pytest.FixtureRequest) -> str | None:
    """What a central test runs on (`engine_database`), fresh for each test."""
    return engine_database(request)


@pytest.fixture(scope="module")
def module_database(request: pytest.FixtureRequest) -> str | None:
    """The same, one per module and engine, for a central the module's tests share."""
    return engine_database(request)


@pytest.fixture
def opening(central_database: str | None, tmp_path: Path) -> Iterator[Callable[[], Database]]:
    """Opens the test's database once more at each call, as another central process or the
    next start does: its file, or its URL. All closed after the test."""
    opened: list[Database] = []

    def open_again() -> Database:
        db = (SQLiteDatabase(tmp_path / "central.sqlite") if central_database is None
              else PostgresDatabase(central_database))
        opened.append(db)
        return db

    yield open_again
    for db in opened:
        db.close()


@pytest.fixture
def database(opening: Callable[[], Database]) -> Database:
    """The central's database itself, on each engine, for tests of the parts that use it."""
    return opening()


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = Central(tmp_path / "central", database=central_database)
    central.start()
    yield central
    central.kill()


@pytest.fixture
def make_gateway(tmp_path: Path, broker: Broker) -> Iterator:
    started: list[Gateway] = []

    def make(central_url: str, **kwargs) -> Gateway:
        gateway = Gateway(tmp_path / f"gateway{len(started)}", broker.port, central_url, **kwargs)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.kill()


# Debian's Chromium (no browser download), as root and with this machine's closed network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: ./scripts/setup installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
