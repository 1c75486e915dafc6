"""Who a request is from: the peer, or behind a trusted reverse proxy the address it forwarded,
never an address a client wrote into X-Forwarded-For itself."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from cloud_bridge.clients import UNKNOWN, client_group, forwarded_client

pytestmark = pytest.mark.unit

PROXY = [ip_network("10.0.0.0/24")]
CHAIN = [ip_network("10.0.0.0/24"), ip_network("192.168.7.5/32"), ip_network("fd00::/64")]


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert forwarded_client("203.0.113.9", ["198.51.100.1"], []) == "203.0.113.9"
    assert forwarded_client("10.0.0.2", ["198.51.100.1"], []) == "10.0.0.2"


def test_a_client_that_is_not_the_proxy_is_its_peer_whatever_it_claims() -> None:
    assert forwarded_client("203.0.113.9", ["198.51.100.1"], PROXY) == "203.0.113.9"


def test_behind_the_proxy_the_client_is_what_the_proxy_appended() -> None:
    assert forwarded_client("10.0.0.2", ["198.51.100.1"], PROXY) == "198.51.100.1"
    # What the client sent itself stands left of what the proxy appended: not believed.
    forged = ["127.0.0.1, 192.0.2.66, 198.51.100.1"]
    assert forwarded_client("10.0.0.2", forged, PROXY) == "198.51.100.1"
    # Several headers are one list, in the order received.
    assert forwarded_client("10.0.0.2", ["192.0.2.66", "198.51.100.1"], PROXY) == "198.51.100.1"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    hops = ["192.0.2.66, 198.51.100.1, 192.168.7.5, 10.0.0.3"]
    assert forwarded_client("10.0.0.2", hops, CHAIN) == "198.51.100.1"
    assert forwarded_client("fd00::2", ["2001:db8::7, fd00::9"], CHAIN) == "2001:db8::7"
    # A request that began at a proxy (a health check): the leftmost of them.
    assert forwarded_client("10.0.0.2", ["10.0.0.3"], CHAIN) == "10.0.0.3"
    assert forwarded_client("10.0.0.2", [], CHAIN) == "10.0.0.2"


def test_garbage_where_the_client_should_be_is_unknown_not_the_next_entry() -> None:
    # The entry the trusted proxy wrote is no address: the one left of it is the client's own.
    assert forwarded_client("10.0.0.2", ["192.0.2.66, not-an-address"], PROXY) == UNKNOWN
    assert forwarded_client("10.0.0.2", ["192.0.2.66, 198.51.100.1:4711"], PROXY) == UNKNOWN


def test_ipv4_through_an_ipv6_socket_is_ipv4() -> None:
    assert forwarded_client("::ffff:10.0.0.2", ["::ffff:198.51.100.1"], PROXY) == "198.51.100.1"
    assert forwarded_client("::ffff:203.0.113.9", [], []) == "203.0.113.9"


def test_no_peer_address_is_said_as_such() -> None:
    assert forwarded_client(None, ["198.51.100.1"], PROXY) == UNKNOWN


def test_one_client_is_an_ipv4_address_or_an_ipv6_64() -> None:
    assert client_group("198.51.100.1") == "198.51.100.1"
    assert client_group("2001:db8:0:1:aaaa::1") == client_group("2001:db8:0:1::ffff")
    assert client_group("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    assert client_group("2001:db8:0:2::1") != client_group("2001:db8:0:1::1")
    assert client_group(UNKNOWN) == UNKNOWN
