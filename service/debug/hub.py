"""One reader per (process, stream) fanning out to bounded per-viewer queues.

A viewer that cannot keep up loses its oldest queued lines and gets a `gap` event with
the count; it never slows the reader or other viewers. While the source is unavailable
every viewer gets one `warning` (`redis_unavailable`), and `info` (`redis_recovered`) when
it answers again — plus a `gap` if entries after the reader's cursor were trimmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sse_starlette import ServerSentEvent

from runner.debug.wire import decode
from service.debug.config import DebugSessionSettings
from service.debug.source import SourceUnavailable, StreamSource, lost_after, now_id

log = logging.getLogger("extgate.debug")

Kind = Literal["log", "gap", "warning", "info"]


@dataclass(frozen=True)
class Message:
    kind: Kind
    data: dict[str, Any]
    id: str | None = None

    @functools.cached_property
    def wire(self) -> bytes:
        """The SSE frame, encoded once and shared by every viewer of the stream."""
        data = json.dumps(self.data, separators=(",", ":"))
        return ServerSentEvent(data, event=self.kind, id=self.id).encode()


class Viewer:
    """A bounded queue; overflow drops the oldest line and is reported as a gap."""

    def __init__(self, maxsize: int, accept: Callable[[dict[str, Any]], bool]) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)
        self.accept = accept
        self.lost = 0
        self.last_id: str | None = None

    def offer(self, msg: Message) -> None:
        if msg.kind == "log" and not self.accept(msg.data):
            return
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
                self.lost += 1
        self.queue.put_nowait(msg)


@dataclass
class _Reader:
    key: str
    cursor: str
    viewers: set[Viewer] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    down_since: float | None = None


class StreamHub:
    def __init__(self, source: StreamSource, settings: DebugSessionSettings) -> None:
        self.source = source
        self.settings = settings
        self._readers: dict[str, _Reader] = {}
        self._lock = asyncio.Lock()

    @property
    def reader_count(self) -> int:
        return len(self._readers)

    async def attach(self, key: str, viewer: Viewer) -> str:
        """Register `viewer`; returns the cursor from which it receives live entries (the
        caller sends what came before it as backlog)."""
        async with self._lock:
            reader = self._readers.get(key)
            if reader is None:
                try:
                    info = await self.source.info(key)
                    # An empty or missing stream: everything that appears is new.
                    cursor = info.last_id if info and info.last_id else "0-0"
                except SourceUnavailable:
                    cursor = now_id()
                reader = self._readers[key] = _Reader(key, cursor)
                reader.task = asyncio.create_task(self._run(reader), name=f"debug-reader:{key}")
            reader.viewers.add(viewer)
            return reader.cursor

    async def detach(self, key: str, viewer: Viewer) -> None:
        async with self._lock:
            reader = self._readers.get(key)
            if reader is None:
                return
            reader.viewers.discard(viewer)
            if not reader.viewers:
                del self._readers[key]
                if reader.task is not None:
                    reader.task.cancel()

    def _broadcast(self, reader: _Reader, msg: Message) -> None:
        for viewer in list(reader.viewers):
            viewer.offer(msg)

    async def _run(self, reader: _Reader) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        while reader.viewers:
            try:
                entries = await self.source.read(reader.key, reader.cursor, s.read_count, s.read_block_ms)
                if reader.down_since is not None:
                    await self._recovered(reader)
            except SourceUnavailable as exc:
                if reader.down_since is None:
                    reader.down_since = loop.time()
                    log.warning("debug stream source unavailable for a reader: %s", exc)
                    self._broadcast(reader, Message("warning", {
                        "code": "redis_unavailable",
                        "message": "the debug stream store is unavailable; runners buffer recent lines "
                                   "and send them when it returns, some may be lost",
                    }))
                await asyncio.sleep(s.retry_backoff_s)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a reader must not die silently
                log.exception("debug stream reader failed")
                await asyncio.sleep(s.retry_backoff_s)
                continue
            for entry_id, fields in entries:
                reader.cursor = entry_id
                self._broadcast(reader, Message("log", decode(fields), entry_id))

    async def _recovered(self, reader: _Reader) -> None:
        reader.down_since = None
        self._broadcast(reader, Message("info", {"code": "redis_recovered"}))
        with contextlib.suppress(SourceUnavailable):
            info = await self.source.info(reader.key)
            if info is not None and lost_after(info, reader.cursor):
                self._broadcast(reader, Message("gap", {
                    "reason": "trimmed", "requested_after": reader.cursor, "oldest_available": info.first_id,
                }))

    async def close(self) -> None:
        async with self._lock:
            readers = list(self._readers.values())
            self._readers.clear()
        for reader in readers:
            if reader.task is not None:
                reader.task.cancel()
        for reader in readers:
            if reader.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader.task
        await self.source.close()
