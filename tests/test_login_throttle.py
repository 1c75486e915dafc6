"""Failed logins slow down the client they come from, never the right password from another;
X-Forwarded-For is believed only from a trusted reverse proxy, for the console's logins and
the stall pages' rate limit alike.

Behind the proxy, the proxy (a real process, tests/helpers/reverse_proxy.py) connects from
127.0.0.1, the only trusted address; the clients it forwards come from other loopback
addresses (127.0.0.x), which the central learns only from the header the proxy appends.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud_bridge.config import ConsoleSection
from cloud_bridge.console.sessions import LoginLimiter
from cloud_bridge.issuing.keys import issue_token
from cloud_bridge.receiver.store import Database
from tests.helpers.clock import FakeClock
from tests.helpers.console import PASSWORD, REGISTRY, Answer, request, start_central
from tests.helpers.reverse_proxy import ReverseProxy
from tests.helpers.support import Central

pytestmark = pytest.mark.central  # each test is marked unit or system itself

ACCOUNTS = ("b-wang", "b-zhao")
TRUST_THE_PROXY = 'trusted_proxies = ["127.0.0.1/32"]'
A, B = "127.0.0.10", "127.0.0.11"
WINDOW = 300.0


def login(
    base: str, account: str, password: str, source: str, forwarded: str | None = None
) -> Answer:
    headers = {"Content-Type": "application/json"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    body = json.dumps({"account": account, "password": password}).encode()
    return request(f"{base}/v1/console/login", "POST", body, headers, source=source)


def throttled(answer: Answer) -> bool:
    return answer.status == 429 and int(answer.headers["Retry-After"]) > 0


# -- the rules, on a real database, with a clock of our own -----------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
def limiter(database: Database, clock: FakeClock) -> LoginLimiter:
    return LoginLimiter(database, ConsoleSection(login_window=WINDOW), clock)


def fail(limiter: LoginLimiter, account: str, address: str, times: int = 1) -> None:
    for _ in range(times):
        assert limiter.attempt(account, address) is None, f"{account} from {address} refused"


@pytest.mark.unit
def test_failures_slow_their_own_client_until_they_age_out(limiter, clock) -> None:
    fail(limiter, "b-wang", A, 5)
    assert limiter.attempt("b-wang", A) == WINDOW
    assert limiter.attempt("b-wang", B) is None  # the butler elsewhere
    clock.now += 100
    assert limiter.attempt("b-wang", A) == WINDOW - 100
    clock.now += WINDOW - 100
    assert limiter.attempt("b-wang", A) is None


@pytest.mark.unit
def test_the_right_password_forgives_its_own_client_only(limiter) -> None:
    fail(limiter, "b-wang", A, 4)
    fail(limiter, "b-wang", B, 5)
    limiter.succeeded("b-wang", A)  # the 4th try was the right one
    fail(limiter, "b-wang", A, 5)
    assert limiter.attempt("b-wang", A) is not None
    assert limiter.attempt("b-wang", B) is not None


@pytest.mark.unit
def test_a_client_guessing_across_accounts_is_slowed_for_all_of_them(limiter) -> None:
    for n in range(20):
        fail(limiter, f"guess-{n}", A)
    assert limiter.attempt("b-zhao", A) is not None
    assert limiter.attempt("b-zhao", B) is None


@pytest.mark.unit
def test_an_account_sprayed_from_many_clients_still_lets_a_clean_client_in(limiter) -> None:
    fail(limiter, "b-wang", "127.0.1.1", 2)
    for n in range(18):
        fail(limiter, "b-wang", f"127.0.2.{n}")
    # 20 failures from 19 clients: each client now has two tries at this account, not five.
    assert limiter.attempt("b-wang", "127.0.1.1") is not None
    fail(limiter, "b-wang", "127.0.2.0")
    assert limiter.attempt("b-wang", "127.0.2.0") is not None
    assert limiter.attempt("b-wang", "127.0.3.1") is None  # the butler, from their phone
    assert limiter.attempt("b-zhao", "127.0.1.1") is None  # other accounts are not under attack


@pytest.mark.unit
def test_an_ipv6_client_is_its_64_not_each_address(limiter) -> None:
    for n in range(5):
        fail(limiter, "b-wang", f"2001:db8:0:1::{n + 1}")
    assert limiter.attempt("b-wang", "2001:db8:0:1:ffff::99") is not None
    assert limiter.attempt("b-wang", "2001:db8:0:2::1") is None


@pytest.mark.unit
def test_central_processes_on_one_database_count_together(
    database: Database, opening: Callable[[], Database], clock
) -> None:
    one = LoginLimiter(database, ConsoleSection(), clock)
    other = LoginLimiter(opening(), ConsoleSection(), clock)  # the second process's
    fail(one, "b-wang", A, 3)
    fail(other, "b-wang", A, 2)
    assert one.attempt("b-wang", A) is not None
    assert other.attempt("b-wang", A) is not None


# -- the real central, with and without a reverse proxy ---------------------------------


@pytest.fixture
def proxied(tmp_path: Path, central_database: str | None) -> Iterator[tuple[Central, ReverseProxy]]:
    central = start_central(tmp_path / "central", extra=TRUST_THE_PROXY, accounts=ACCOUNTS,
                            database=central_database)
    proxy = ReverseProxy(tmp_path / "proxy", central.url)
    proxy.start()
    yield central, proxy
    proxy.kill()
    central.kill()


@pytest.mark.system
def test_behind_the_proxy_wrong_passwords_slow_their_address_not_the_butler(proxied) -> None:
    central, proxy = proxied
    for _ in range(5):
        assert login(proxy.url, "b-wang", "wrong password", A).status == 401
    assert throttled(login(proxy.url, "b-wang", PASSWORD, A))
    # Claiming another address in front of the proxy changes nothing: the proxy appends A.
    assert throttled(login(proxy.url, "b-wang", PASSWORD, A, forwarded=B))
    # The butler, from another address, gets in.
    assert login(proxy.url, "b-wang", PASSWORD, B).status == 200
    # Past the proxy, straight to the central, the header is not believed either.
    assert throttled(login(central.url, "b-wang", PASSWORD, A))
    assert login(central.url, "b-wang", PASSWORD, "127.0.0.12", forwarded=A).status == 200


@pytest.mark.system
def test_without_trusted_proxies_a_forged_forwarded_for_changes_nothing(
    tmp_path, central_database
) -> None:
    central = start_central(tmp_path / "central", accounts=ACCOUNTS, database=central_database)
    try:
        for n in range(5):
            wrong = login(central.url, "b-wang", "wrong", A, forwarded=f"192.0.2.{n}, {B}")
            assert wrong.status == 401
        assert throttled(login(central.url, "b-wang", PASSWORD, A, forwarded="192.0.2.99"))
        # A's failures, sent in B's name, are not B's.
        assert login(central.url, "b-wang", PASSWORD, B).status == 200
    finally:
        central.kill()


@pytest.mark.system
def test_the_right_password_gets_in_while_many_addresses_spray_the_account(proxied) -> None:
    _, proxy = proxied
    for n in range(20):
        assert login(proxy.url, "b-wang", "spray", f"127.0.1.{n + 1}").status == 401
    assert login(proxy.url, "b-wang", "spray", "127.0.1.1").status == 401  # its second try
    assert throttled(login(proxy.url, "b-wang", PASSWORD, "127.0.1.1"))  # not a fifth
    assert login(proxy.url, "b-wang", PASSWORD, B).status == 200


# -- the stall pages' rate limit --------------------------------------------------------

STALL_KEY = Ed25519PrivateKey.generate()


def stall_registry() -> dict:
    public = STALL_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    stall = {"id": "ST-001", "name": "老王烤串", "zone": "夜市", "hours": "17:00-23:30"}
    return REGISTRY | {"stalls": [stall], "code_keys": {"1": base64.b64encode(public).decode()}}


def rate_stall(base: str, token: str, source: str, forwarded: str | None = None) -> int:
    page = request(f"{base}/S/{token}", source=source)
    assert page.status == 200, page.body
    found = re.search(r'name="form_token" value="([^"]+)"', str(page.body))
    assert found, "the stall page has no form"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    body = f"form_token={found.group(1)}&rating=5".encode()
    return request(f"{base}/S/{token}/feedback", "POST", body, headers, source=source).status


@pytest.mark.system
def test_the_stall_pages_count_the_address_the_trusted_proxy_forwarded(
    tmp_path, central_database
) -> None:
    central = start_central(
        tmp_path / "central",
        registry=stall_registry(),
        extra=f"{TRUST_THE_PROXY}\n[stalls]\nsubmissions_per_window = 2",
        database=central_database,
    )
    proxy = ReverseProxy(tmp_path / "proxy", central.url)
    proxy.start()
    try:
        expires = datetime.date.today() + datetime.timedelta(days=30)
        token = issue_token(STALL_KEY, 1, "stall", "ST-001", 1, expires)
        assert [rate_stall(proxy.url, token, A) for _ in range(3)] == [303, 303, 429]
        assert rate_stall(proxy.url, token, A, forwarded=B) == 429
        # Every request reaches the central from the proxy's address, yet B is not A.
        assert rate_stall(proxy.url, token, B) == 303
    finally:
        proxy.kill()
        central.kill()
