"""The debug stream's per-process objects: sessions (sync, any thread) and the hub
(async, bound to the serving event loop, created on first use)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from service.debug.config import DebugSessionSettings
from service.debug.hub import StreamHub
from service.debug.sessions import DebugSessions
from service.debug.source import InProcessStreamSource, RedisStreamSource, StreamSource
from service.debug.tickets import MemorySessionStore, RedisSessionStore, SessionStore
from service.denials import DenialRecorder


class DebugRuntime:
    def __init__(self, settings: DebugSessionSettings, sessions: DebugSessions,
                 source_factory: Callable[[], StreamSource]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._source_factory = source_factory
        self._hub: StreamHub | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def hub(self) -> StreamHub:
        loop = asyncio.get_running_loop()
        # A hub's tasks and locks belong to one loop; a new loop (tests) gets a new hub.
        if self._hub is None or self._loop is not loop:
            self._hub = StreamHub(self._source_factory(), self.settings)
            self._loop = loop
        return self._hub

    async def stop(self) -> None:
        if self._hub is not None and self._loop is asyncio.get_running_loop():
            await self._hub.close()
        self._hub = None

    def close(self) -> None:
        self.sessions.store.close()


def build_debug_runtime(
    settings: DebugSessionSettings, *, db: object, policy: object, audit: object, denials: DenialRecorder | None = None
) -> DebugRuntime:
    store: SessionStore
    source_factory: Callable[[], StreamSource]
    if settings.redis_url:
        url = settings.redis_url
        store = RedisSessionStore(url, prefix=settings.key_prefix, connect_timeout_s=settings.connect_timeout_s,
                                  socket_timeout_s=settings.connect_timeout_s)

        def source_factory() -> StreamSource:
            return RedisStreamSource(url, settings)
    else:
        from runner.debug.factory import in_process_hub

        store = MemorySessionStore()

        def source_factory() -> StreamSource:
            return InProcessStreamSource(in_process_hub())

    sessions = DebugSessions(settings, store, db=db, policy=policy, audit=audit, denials=denials)
    return DebugRuntime(settings, sessions, source_factory)
