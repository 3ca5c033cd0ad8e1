"""Async clients (httpx, redis.asyncio) are bound to the event loop that created their
connections. A server has one loop, but tests and embedded callers may drive the app from
several; `PerLoop` keeps one client per running loop and closes them all on shutdown."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    def __init__(self, factory: Callable[[], T], closer: Callable[[T], Awaitable[None]]) -> None:
        self._factory = factory
        self._closer = closer
        self._items: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        item = self._items.get(loop)
        if item is None:
            with self._lock:
                item = self._items.get(loop)
                if item is None:
                    item = self._factory()
                    self._items[loop] = item
        return item

    async def aclose_current(self) -> None:
        """Close the client of the running loop (the others die with their loops)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            item = self._items.pop(loop, None)
        if item is not None:
            await self._closer(item)
