"""A receiver that fails safe: a request is judged by its headers before its body is read (an
unsigned flood costs the central no memory), and /healthz answers 503 with the reason while the
store takes no write, so that a load balancer sends to another process.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mashang.signing import GATEWAY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.helpers.support import GATEWAY_ID, Central, wait_for

pytestmark = pytest.mark.system

POSTS = 30
BODY = b"x" * (8 * 1024 * 1024)  # the central's max_body_bytes, each
RSS_BOUND_MB = 60  # what 30 bodies held at once would exceed four times over


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    central = Central(tmp_path / "central")
    central.start()
    yield central
    central.kill()


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
    import json
    import urllib.error
    import urllib.request

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


def test_healthz_says_503_while_the_store_takes_no_write(central: Central, tmp_path: Path
                                                         ) -> None:
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
