"""A receiver that fails safe: a request is judged by its headers before its body is read (an
unsigned flood costs the central no memory), and /healthz answers 503 with the reason while the
store takes no write, so that a load balancer sends to another process: an SQLite file made
read-only or removed, a PostgreSQL server gone or refusing writes, or its writers' lock held.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
import pytest

from cloud_bridge.receiver.postgres import WRITERS_LOCK
from lab.postgres import PostgresServer
from mashang.signing import GATEWAY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.helpers.support import GATEWAY_ID, Central, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

POSTS = 30
BODY = b"x" * (8 * 1024 * 1024)  # the central's max_body_bytes, each
RSS_BOUND_MB = 60  # what 30 bodies held at once would exceed four times over


def memory_mb(pid: int, field: str) -> float:
    """VmRSS (resident now) or VmHWM (the most it was resident) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def post(central: Central, body: bytes, headers: dict[str, str]) -> tuple[int, dict | str]:
    connection = http.client.HTTPConnection("127.0.0.1", central.port, timeout=60)
    try:
        connection.request("POST", "/v1/ingest", body=body,
                           headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_unsigned_big_bodies_are_refused_without_being_read(central: Central) -> None:
    assert central.proc is not None
    pid = central.proc.pid
    before, peak_before = memory_mb(pid, "VmRSS"), memory_mb(pid, "VmHWM")
    answers: list[tuple[int, dict | str]] = []
    lock = threading.Lock()

    def flood() -> None:
        answer = post(central, BODY, {})
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=flood) for _ in range(POSTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    after, peak = memory_mb(pid, "VmRSS"), memory_mb(pid, "VmHWM")
    print(f"\ncentral RSS around {POSTS} concurrent unsigned 8 MB posts: {before:.0f} MB before, "
          f"{after:.0f} MB after, peak {peak:.0f} MB (peak before {peak_before:.0f} MB)")
    assert len(answers) == POSTS
    assert {status for status, _ in answers} == {401}
    assert all("missing signature headers" in text for _, text in answers)
    assert peak - peak_before < RSS_BOUND_MB
    assert central.events() == []


def test_headers_are_judged_before_the_body(central: Central) -> None:
    stamp = str(int(time.time()))
    signed_as = {GATEWAY_HEADER: GATEWAY_ID, TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: "ab" * 32}
    unknown = post(central, BODY, {**signed_as, GATEWAY_HEADER: "gw-nobody"})
    assert unknown[0] == 401 and "unknown gateway" in str(unknown[1])
    stale = post(central, BODY, {**signed_as, TIMESTAMP_HEADER: str(int(time.time()) - 301)})
    assert stale[0] == 401 and "timestamp" in str(stale[1])
    # A known gateway and a fresh timestamp, but a body over max_body_bytes: 413 at once.
    too_big = post(central, BODY + b"x", signed_as)
    assert too_big[0] == 413 and "too large" in str(too_big[1])
    assert central.running()


def health(central: Central) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(f"{central.url}/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def make_read_only(path: Path, read_only: bool) -> None:
    """Read-only for whoever runs the test: root writes through file modes, not through the
    immutable attribute."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if read_only else "-i", str(path)], check=True)
    else:
        path.chmod(0o444 if read_only else 0o644)


def test_healthz_says_503_while_the_sqlite_file_takes_no_write(tmp_path: Path) -> None:
    central = Central(tmp_path / "central")  # about the file itself: SQLite only
    central.start()
    try:
        says_503_while_its_file_takes_no_write(central, tmp_path)
    finally:
        central.kill()


def says_503_while_its_file_takes_no_write(central: Central, tmp_path: Path) -> None:
    assert health(central) == (200, {"ok": True})
    database = tmp_path / "central" / "central.sqlite"
    make_read_only(database, True)
    try:
        status, answer = health(central)
        assert status == 503, answer
        assert isinstance(answer, dict) and answer["ok"] is False
        assert "readonly" in answer["error"] and str(database) in answer["error"]
    finally:
        make_read_only(database, False)
    wait_for(lambda: health(central)[0] == 200, what="healthz back to 200")

    shutil.rmtree(tmp_path / "central")  # the database and its folder, gone
    status, answer = health(central)
    assert status == 503, answer
    assert isinstance(answer, dict) and "gone" in answer["error"]
    # Recreating the folder does not bring that database back: the central's file is lost.
    database.parent.mkdir()
    database.write_bytes(b"")
    status, answer = health(central)
    assert status == 503 and "replaced" in answer["error"], answer


def admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


@contextmanager
def server_stopped(server: PostgresServer, url: str) -> Iterator[str]:
    server.stop()
    yield "cannot be reached"


@contextmanager
def writes_refused(server: PostgresServer, url: str) -> Iterator[str]:
    """The database made read-only, as an operator does before a move; its sessions dropped,
    so that the central's next ones start read-only."""
    name = url.rsplit("/", 1)[1]

    def set_read_only(value: str) -> None:
        with admin(server.url()) as connection:
            connection.execute(
                f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
            connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE datname = %s", (name,))

    set_read_only("on")
    try:
        yield "read-only transaction"
    finally:
        set_read_only("off")


@contextmanager
def writers_lock_held(server: PostgresServer, url: str) -> Iterator[str]:
    """Another process stuck inside a write transaction: every writer waits behind it."""
    with admin(url) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (WRITERS_LOCK,))
        yield "lock timeout"


Breakage = Callable[[PostgresServer, str], AbstractContextManager[str]]


@pytest.mark.parametrize("breakage", [server_stopped, writes_refused, writers_lock_held],
                         ids=["server-gone", "read-only", "lock-held"])
def test_healthz_says_503_with_the_reason_while_postgresql_takes_no_write(
    tmp_path: Path, breakage: Breakage
) -> None:
    # A server of its own, which the test may stop: not the one the other tests share.
    server = PostgresServer(tmp_path / "postgres")
    server.start()
    url = server.new_database()
    central = Central(tmp_path / "central", database=url)
    try:
        central.start()
        assert health(central) == (200, {"ok": True})
        with breakage(server, url) as reason:
            wait_for(lambda: reason in str(health(central)[1]), what=f"healthz saying {reason}")
            status, answer = health(central)
            assert status == 503, answer
            assert isinstance(answer, dict) and answer["ok"] is False
            assert f"127.0.0.1:{server.port}" in answer["error"], answer
        if breakage is not server_stopped:
            wait_for(lambda: health(central)[0] == 200, what="healthz back to 200")
    finally:
        central.kill()
        server.stop()
