"""Where `http.fetch` may connect: public addresses only, checked on the address actually dialled.

The allowlist names hosts, but a name can resolve anywhere: an allowlisted (or later
re-pointed) name resolving to 127.0.0.1, 10.0.0.0/8, 169.254.169.254 (cloud metadata) or
another internal address would turn a guest into a proxy into our network. The guard sits
in the HTTP client's connection layer: it resolves the name, drops every non-public
address, and connects to one of the remaining ones itself, so there is no window between
the check and the connect (DNS rebinding). TLS still verifies the certificate against the
host name. `EXTGATE_RUNNER_FETCH_ALLOW_PRIVATE_NETWORKS=1` lifts this for deployments whose
extensions must reach internal services (the allowlist still applies).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


class EgressBlocked(Exception):
    """The host resolves to no address a guest may reach."""


_V4 = ipaddress.IPv4Address
_V6 = ipaddress.IPv6Network

# IPv6 ranges that embed or tunnel an IPv4 address, with where that address sits (bit offset
# of each 8-bit piece from the top, per RFC 6052 §2.2: bits 64-71 are skipped). A NAT64 or
# 6to4 gateway on the path delivers a packet for one of these to the embedded IPv4 address,
# so `64:ff9b::a00:5` is 10.0.0.5 and must be judged as such, not by IPv6's own tables.
_RFC6052_OFFSETS = {  # prefix length → bit offsets of the four IPv4 octets
    32: (32, 40, 48, 56), 40: (40, 48, 56, 72), 48: (48, 56, 72, 80),
    56: (56, 72, 80, 88), 64: (72, 80, 88, 96), 96: (96, 104, 112, 120),
}
_EMBEDDING: tuple[tuple[ipaddress.IPv6Network, tuple[tuple[int, ...], ...]], ...] = (
    (_V6("::ffff:0:0/96"), (_RFC6052_OFFSETS[96],)),  # IPv4-mapped
    (_V6("::ffff:0:0:0/96"), (_RFC6052_OFFSETS[96],)),  # IPv4-translated (SIIT, RFC 2765)
    (_V6("64:ff9b::/96"), (_RFC6052_OFFSETS[96],)),  # NAT64 well-known prefix (RFC 6052)
    # NAT64 local-use (RFC 8215): the operator picks a prefix of /48 to /96 inside it, and we
    # cannot know which, so every placement must give a public address (fail closed).
    (_V6("64:ff9b:1::/48"), tuple(_RFC6052_OFFSETS[n] for n in (48, 56, 64, 96))),
    (_V6("2002::/16"), ((16, 24, 32, 40),)),  # 6to4 (RFC 3056): the relay's IPv4 address
    (_V6("::/96"), (_RFC6052_OFFSETS[96],)),  # IPv4-compatible (deprecated, RFC 4291 §2.5.5.1)
)
_TEREDO = _V6("2001::/32")  # RFC 4380: server and (obfuscated) client IPv4 addresses


def _octets_at(ip: ipaddress.IPv6Address, offsets: tuple[int, ...]) -> ipaddress.IPv4Address:
    value = int(ip)
    return _V4(bytes((value >> (120 - offset)) & 0xFF for offset in offsets))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address embeds or tunnels to, or None if it embeds none."""
    if ip in _TEREDO:
        assert ip.teredo is not None
        server, client = ip.teredo
        return [server, client]
    for network, placements in _EMBEDDING:
        if ip in network:
            return [_octets_at(ip, offsets) for offsets in placements]
    return None


def _ipv4_is_public(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not ip.is_multicast


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_is_public(ip)
    if ip.is_unspecified or ip.is_loopback:  # `::` and `::1` sit inside ::/96 but are IPv6's own
        return False
    embedded = embedded_ipv4(ip)
    if embedded is not None:
        return all(_ipv4_is_public(v4) for v4 in embedded)
    # fec0::/10 (site-local, deprecated by RFC 3879) is still routed internally by some networks.
    return ip.is_global and not ip.is_multicast and not ip.is_site_local


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [a for a in addresses if is_public(a)]
        if not allowed:
            raise EgressBlocked(host)
        last: Exception | None = None
        for address in allowed:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise EgressBlocked(path)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_client(*, allow_private_networks: bool = False) -> httpx.Client:
    """The runner's outbound client: no redirects, no proxy variables, public addresses only."""
    transport = httpx.HTTPTransport(retries=0)
    if not allow_private_networks:
        pool = transport._pool  # httpcore.ConnectionPool; the network backend is its dial hook
        pool._network_backend = _GuardedBackend(pool._network_backend)
    return httpx.Client(transport=transport, follow_redirects=False, trust_env=False)
