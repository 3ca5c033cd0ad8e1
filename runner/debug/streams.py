"""Stream backends the publisher writes to: Redis, or an in-process store with the same
semantics (the embedded default, read by the service's SSE hub in the same process).

Both take batches of `(key, fields)`; a backend that cannot write raises
`StreamUnavailable` and the publisher keeps the batch in its ring buffer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from runner.debug.wire import format_id

Entry = tuple[str, dict[str, str]]  # (stream key, fields)


class StreamUnavailable(Exception):
    """The backend could not take the batch (connection refused, timeout, out of memory)."""


class StreamWriter(Protocol):
    def write_batch(self, entries: Sequence[Entry]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StreamInfo:
    length: int
    first_id: str | None
    last_id: str | None
    max_deleted_id: str  # "0-0" when nothing was ever trimmed


class RedisStreamWriter:
    """`XADD key MAXLEN ~ N * fields...` for every entry plus one `EXPIRE` per key, in one
    non-transactional pipeline (one round trip per batch)."""

    def __init__(self, url: str, *, maxlen: int, ttl_s: int, connect_timeout_s: float, socket_timeout_s: float) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # redis-py 8's default retry blocks ~3.7 s per failed command; the publisher's
        # circuit breaker decides when to try again instead.
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._maxlen = maxlen
        self._ttl = ttl_s

    def write_batch(self, entries: Sequence[Entry]) -> None:
        import redis

        commands: list[tuple[str, ...]] = []
        keys: dict[str, None] = {}
        maxlen = str(self._maxlen)
        for key, fields in entries:
            args = ["XADD", key, "MAXLEN", "~", maxlen, "*"]
            for name, value in fields.items():
                args += (name, value)
            commands.append(tuple(args))
            keys[key] = None
        commands.extend(("EXPIRE", key, str(self._ttl)) for key in keys)
        # One connection, one write, then the replies: what `pipeline(transaction=False)`
        # does, minus its per-command Python bookkeeping (~40% of the publisher's CPU).
        pool = self._client.connection_pool
        try:
            conn = pool.get_connection()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise StreamUnavailable(type(exc).__name__) from None
        errors: list[redis.ResponseError] = []
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            for _ in commands:  # every reply must be read, errors included
                try:
                    conn.read_response(disable_decoding=True)
                except redis.ResponseError as exc:
                    errors.append(exc)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            conn.disconnect()
            raise StreamUnavailable(type(exc).__name__) from None
        finally:
            pool.release(conn)
        if errors:
            # OOM under `noeviction`, READONLY after a failover: "degraded", the lines wait
            # in the ring buffer.
            raise StreamUnavailable(str(errors[0]).split(" ", 1)[0])

    def close(self) -> None:
        self._client.close()


class _Stream:
    __slots__ = ("entries", "last", "max_deleted", "touched")

    def __init__(self) -> None:
        self.entries: deque[tuple[tuple[int, int], dict[str, str]]] = deque()
        self.last = (0, 0)
        self.max_deleted = (0, 0)
        self.touched = time.monotonic()


class InProcessStreams:
    """Redis-stream semantics in memory: monotonic `<ms>-<seq>` ids, exact MAXLEN trimming,
    idle expiry, `max_deleted_id` for gap detection; listeners are told which keys grew.

    Writers are runner threads; readers are the service's event loop (via listeners)."""

    def __init__(self, *, maxlen: int = 1000, ttl_s: float = 900.0) -> None:
        self._maxlen = maxlen
        self._ttl = ttl_s
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[set[str]], None]] = []
        self._last_sweep = time.monotonic()

    # --- writing (StreamWriter) ----------------------------------------------------------

    def write_batch(self, entries: Sequence[Entry]) -> None:
        now_ms = int(time.time() * 1000)
        touched: set[str] = set()
        with self._lock:
            for key, fields in entries:
                stream = self._streams.get(key)
                if stream is None:
                    stream = self._streams[key] = _Stream()
                ms, seq = stream.last
                new = (now_ms, 0) if now_ms > ms else (ms, seq + 1)  # never goes back, as Redis
                stream.entries.append((new, dict(fields)))
                stream.last = new
                stream.touched = time.monotonic()
                while len(stream.entries) > self._maxlen:
                    stream.max_deleted = stream.entries.popleft()[0]
                touched.add(key)
            self._sweep_locked()
            listeners = list(self._listeners)
        for listener in listeners:
            listener(touched)

    def _sweep_locked(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < 10:
            return
        self._last_sweep = now
        for key in [k for k, s in self._streams.items() if now - s.touched > self._ttl]:
            del self._streams[key]

    def close(self) -> None:
        return None

    # --- reading (the service hub) -----------------------------------------------------

    def add_listener(self, fn: Callable[[set[str]], None]) -> None:
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[set[str]], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def read_after(self, key: str, after: tuple[int, int], count: int) -> list[tuple[str, dict[str, str]]]:
        with self._lock:
            stream = self._streams.get(key)
            if stream is None or stream.last <= after:
                return []
            out: list[tuple[str, dict[str, str]]] = []
            # Readers are nearly always at the tail: walk back from the end.
            for entry_id, fields in reversed(stream.entries):
                if entry_id <= after:
                    break
                out.append((format_id(entry_id), fields))
        out.reverse()
        return out[:count]

    def info(self, key: str) -> StreamInfo | None:
        with self._lock:
            stream = self._streams.get(key)
            if stream is None:
                return None
            first = format_id(stream.entries[0][0]) if stream.entries else None
            last = format_id(stream.last) if stream.entries else None
            return StreamInfo(len(stream.entries), first, last, format_id(stream.max_deleted))

    def clear(self) -> None:
        with self._lock:
            self._streams.clear()
