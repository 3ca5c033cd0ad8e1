"""A lean HTTP/1.1 load generator for the benchmarks.

On a 2-core machine the load generator shares the cores with the servers it measures, so
its own cost per request becomes part of every latency and of the noise between runs. This
client keeps one keep-alive connection per concurrent client, sends pre-built request bytes
and parses only the status line and the body framing: a few tens of microseconds per
request, against several hundred for a general-purpose client such as httpx.

Every target in a run is driven by the same generator, so ratios and differences stay fair.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    raw: bytes  # the complete request, sent as is on every call

    @classmethod
    def build(cls, method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> Target:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {path} HTTP/1.1", f"host: {parts.hostname}:{parts.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
        payload = body or b""
        if payload or method not in ("GET", "HEAD"):
            lines.append(f"content-length: {len(payload)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, head + payload)


class Connection:
    """One keep-alive connection; requests on it are sequential."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, target: Target) -> Connection:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        return cls(reader, writer)

    async def send(self, target: Target) -> tuple[int, bytes]:
        self.writer.write(target.raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = -1
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            return status, await self._chunks()
        return status, await self.reader.readexactly(length) if length > 0 else b""

    async def _chunks(self) -> bytes:
        out = bytearray()
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return bytes(out)
            out += await self.reader.readexactly(size)
            await self.reader.readexactly(2)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def _connections(target: Target, count: int, warmup: int) -> list[Connection]:
    conns = [await Connection.open(target) for _ in range(count)]
    for i in range(warmup):  # connections, caches, the guest's component
        status, body = await conns[i % count].send(target)
        if status != 200:
            raise RuntimeError(f"warm-up: HTTP {status} {body[:200]!r}")
    return conns


async def closed_loop(target: Target, n: int, concurrency: int, warmup: int = 50) -> tuple[list[float], float]:
    """Each client sends its next request as soon as the last one answers: (latencies s, req/s)."""
    conns = await _connections(target, concurrency, warmup)
    latencies: list[float] = []
    remaining = n

    async def client(conn: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            status, body = await conn.send(target)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"HTTP {status} {body[:200]!r}")

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(client(c) for c in conns))
    finally:
        elapsed = time.perf_counter() - t0
        for c in conns:
            await c.close()
    return latencies, n / elapsed


async def open_loop(target: Target, n: int, concurrency: int, rate: float, warmup: int = 50) -> list[float]:
    """`n` requests at a fixed offered `rate` (req/s) from `concurrency` clients.

    Request i is due at t0 + i/rate; its latency counts from that due time, so a server that
    falls behind is charged for the wait (no coordinated omission)."""
    conns = await _connections(target, concurrency, warmup)
    latencies: list[float] = []
    next_index = 0
    t0 = time.perf_counter()

    async def client(conn: Connection) -> None:
        nonlocal next_index
        while next_index < n:
            due = t0 + next_index / rate
            next_index += 1
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status, body = await conn.send(target)
            latencies.append(time.perf_counter() - due)
            if status != 200:
                raise RuntimeError(f"HTTP {status} {body[:200]!r}")

    try:
        await asyncio.gather(*(client(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    return latencies
