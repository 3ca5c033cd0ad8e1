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


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


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
