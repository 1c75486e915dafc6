"""Who is on the other end of a request: the connection's peer, or, behind a reverse proxy the
central is told to trust (`central.trusted_proxies`), the address that proxy forwarded.

X-Forwarded-For is a list each proxy appends its own peer to, so only its right end is
written by proxies the central knows; everything left of the first untrusted entry is
whatever the client chose to send. Without trusted proxies the header is never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from aiohttp import web

UNKNOWN = "unknown"
# An IPv6 client is given a whole /64 by its provider: counting its addresses one by one
# would give it 2^64 fresh starts.
IPV6_CLIENT_PREFIX = 64

Networks = Sequence[IPv4Network | IPv6Network]


def _parse(text: str) -> IPv4Address | IPv6Address | None:
    """An address as a peer or a proxy writes it; IPv4 seen through an IPv6 socket as IPv4."""
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPv4Address | IPv6Address | None, proxies: Networks) -> bool:
    return address is not None and any(address in network for network in proxies)


def forwarded_client(peer: str | None, forwarded: Sequence[str], proxies: Networks) -> str:
    """The client's address from the connection's peer and the X-Forwarded-For headers (in
    the order received). Read right to left, trusted proxies skipped: the first address no
    trusted proxy holds is the client, so a client cannot pick its own address by sending the
    header itself. An entry that is no address, where a client's should be, is UNKNOWN."""
    address = _parse(peer or "")
    if address is None:
        return peer or UNKNOWN
    if not _trusted(address, proxies):
        return str(address)
    hops = [hop for header in forwarded for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _parse(hop)
        if not _trusted(address, proxies):
            return str(address) if address is not None else UNKNOWN
    # Every hop is a trusted proxy: the request began at the leftmost of them.
    return str(address)


def client_address(request: web.Request, proxies: Networks) -> str:
    return forwarded_client(request.remote, request.headers.getall("X-Forwarded-For", []), proxies)


def client_group(address: str) -> str:
    """What one client controls, for counting its requests: an IPv4 address, an IPv6 /64."""
    parsed = _parse(address)
    if isinstance(parsed, IPv6Address):
        return str(ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False))
    return address
