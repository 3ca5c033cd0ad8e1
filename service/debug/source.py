"""Where a viewer's entries come from: Redis Streams, or the in-process hub.

Both answer with `(entry_id, fields)` pairs, ids in Redis form `<ms>-<seq>`. A backend
that cannot answer raises `SourceUnavailable`; the hub turns that into a `warning`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

from runner.debug.streams import InProcessStreams, StreamInfo
from runner.debug.wire import format_id, parse_id
from service.debug.config import DebugSessionSettings

Entry = tuple[str, dict[Any, Any]]


class SourceUnavailable(Exception):
    pass


class StreamSource(Protocol):
    async def info(self, key: str) -> StreamInfo | None: ...

    async def range_after(self, key: str, after: str, upto: str, count: int) -> list[Entry]:
        """Entries with after < id <= upto, oldest first."""
        ...

    async def tail(self, key: str, upto: str, count: int) -> list[Entry]:
        """The last `count` entries with id <= upto, oldest first."""
        ...

    async def read(self, key: str, after: str, count: int, block_ms: int) -> list[Entry]:
        """Entries after `after`, waiting up to `block_ms` for the first one."""
        ...

    async def close(self) -> None: ...


_MAX_SEQ = 2**64 - 1


def _set_all(events: list[asyncio.Event]) -> None:
    for ev in events:
        ev.set()


def now_id() -> str:
    """A cursor just before anything written from now on (entries of this very millisecond
    included: a new entry can get id `<now>-0`, which a `<now>-0` cursor would skip)."""
    return f"{int(time.time() * 1000) - 1}-{_MAX_SEQ}"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamSource:
    def __init__(self, url: str, settings: DebugSessionSettings) -> None:
        import redis.asyncio as aioredis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No client retries (redis-py 8 would block ~3.7 s per failed command); the hub
        # reports the outage and retries on its own schedule.
        self._client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=settings.connect_timeout_s,
            socket_timeout=settings.socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )

    async def _call(self, coro: Any) -> Any:
        import redis

        try:
            return await coro
        except (TimeoutError, redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise SourceUnavailable(type(exc).__name__) from None

    async def info(self, key: str) -> StreamInfo | None:
        import redis

        try:
            raw = await self._call(self._client.xinfo_stream(key))
        except redis.ResponseError:  # no such key
            return None
        first = raw.get("first-entry")
        last = raw.get("last-entry")
        return StreamInfo(
            length=int(raw.get("length", 0)),
            first_id=_s(first[0]) if first else None,
            last_id=_s(last[0]) if last else None,
            max_deleted_id=_s(raw.get("max-deleted-entry-id", b"0-0")),
        )

    async def range_after(self, key: str, after: str, upto: str, count: int) -> list[Entry]:
        rows = await self._call(self._client.xrange(key, min=f"({after}", max=upto, count=count))
        return [(_s(i), f) for i, f in rows]

    async def tail(self, key: str, upto: str, count: int) -> list[Entry]:
        if count <= 0:
            return []
        rows = await self._call(self._client.xrevrange(key, max=upto, min="-", count=count))
        return [(_s(i), f) for i, f in reversed(rows)]

    async def read(self, key: str, after: str, count: int, block_ms: int) -> list[Entry]:
        res = await self._call(self._client.xread({key: after}, count=count, block=block_ms))
        if not res:
            return []
        return [(_s(i), f) for i, f in res[0][1]]

    async def close(self) -> None:
        await self._client.aclose()


class InProcessStreamSource:
    """Reads the process's `InProcessStreams`; writers (runner threads) wake readers
    through a listener that hops onto the event loop."""

    def __init__(self, streams: InProcessStreams) -> None:
        self._streams = streams
        self._events: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        streams.add_listener(self._on_write)

    def _on_write(self, keys: set[str]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        # list() copies each set atomically under the GIL; the loop thread may be changing it.
        hits = [ev for k in keys for ev in list(self._events.get(k, ()))]
        if hits:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_set_all, hits)

    async def info(self, key: str) -> StreamInfo | None:
        return self._streams.info(key)

    async def range_after(self, key: str, after: str, upto: str, count: int) -> list[Entry]:
        top = parse_id(upto) or (0, 0)
        rows = self._streams.read_after(key, parse_id(after) or (0, 0), 1_000_000)
        return [(i, f) for i, f in rows if (parse_id(i) or (0, 0)) <= top][:count]

    async def tail(self, key: str, upto: str, count: int) -> list[Entry]:
        if count <= 0:
            return []
        top = parse_id(upto) or (0, 0)
        rows = [(i, f) for i, f in self._streams.read_after(key, (0, 0), 1_000_000) if (parse_id(i) or (0, 0)) <= top]
        return rows[-count:]

    async def read(self, key: str, after: str, count: int, block_ms: int) -> list[Entry]:
        self._loop = asyncio.get_running_loop()
        cursor = parse_id(after) or (0, 0)
        rows = self._streams.read_after(key, cursor, count)
        if rows:
            return rows
        ev = asyncio.Event()
        self._events.setdefault(key, set()).add(ev)
        try:
            rows = self._streams.read_after(key, cursor, count)  # written between the check and the add
            if rows:
                return rows
            try:
                await asyncio.wait_for(ev.wait(), block_ms / 1000)
            except TimeoutError:
                return []
            return self._streams.read_after(key, cursor, count)
        finally:
            waiters = self._events.get(key)
            if waiters is not None:
                waiters.discard(ev)
                if not waiters:
                    del self._events[key]

    async def close(self) -> None:
        self._streams.remove_listener(self._on_write)


def id_after(a: str, b: str) -> bool:
    """True if entry id `a` sorts after `b`."""
    return (parse_id(a) or (0, 0)) > (parse_id(b) or (0, 0))


def lost_after(info: StreamInfo | None, last_id: str) -> bool:
    """Were entries after `last_id` possibly removed? True when `last_id` itself is gone from
    the front of the stream (MAXLEN trimming; Redis does not record trimmed ids in
    `max-deleted-entry-id`, only XDEL does) or something after it was deleted."""
    if info is None or info.first_id is None:
        return False
    return id_after(info.first_id, last_id) or id_after(info.max_deleted_id, last_id)


__all__ = ["InProcessStreamSource", "RedisStreamSource", "SourceUnavailable", "StreamSource", "format_id", "id_after",
           "lost_after", "now_id"]
