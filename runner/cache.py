"""Bounded caches: loaded components (LRU) and small TTL maps (secrets, config, idempotency).

Loaded components are mmapped artifacts (`Component.deserialize_file`, ~1–2 ms); they
hold no per-request state, so one is shared by all requests for that content hash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from wasmtime import Engine
from wasmtime.component import Component

from runner.compiler import artifact_path
from runner.engine import EngineOptions

log = logging.getLogger("extgate.runner")

K = TypeVar("K")
V = TypeVar("V")


class ComponentNotCompiledError(LookupError):
    """No artifact for this (hash, wasmtime version, engine config): compile it first."""


class TTLCache(Generic[K, V]):
    """Thread-safe LRU with a per-entry expiry."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            expires, value = item
            if self._clock() >= expires:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V, ttl_s: float | None = None) -> None:
        ttl = self._ttl if ttl_s is None else min(ttl_s, self._ttl)
        with self._lock:
            self._data[key] = (self._clock() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class ComponentCache:
    """LRU of deserialized components keyed by content hash. Never compiles."""

    def __init__(self, engine: Engine, compiled_dir: Path, options: EngineOptions, max_entries: int = 32) -> None:
        self._engine = engine
        self._dir = Path(compiled_dir)
        self._options = options
        self._max = max_entries
        self._data: OrderedDict[str, Component] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, content_hash: str) -> Component:
        with self._lock:
            component = self._data.get(content_hash)
            if component is not None:
                self._data.move_to_end(content_hash)
                return component
        path = artifact_path(self._dir, content_hash, self._options)
        if not path.is_file():
            raise ComponentNotCompiledError(content_hash)
        component = Component.deserialize_file(self._engine, str(path))
        with contextlib.suppress(OSError):
            os.utime(path)  # recency survives a restart: `warm` loads the newest first
        self._insert(content_hash, component)
        return component

    def _insert(self, content_hash: str, component: Component) -> None:
        with self._lock:
            self._data[content_hash] = component
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def warm(self, limit: int) -> list[str]:
        """Deserialize the most recently used artifacts on disk (at most `limit`, and never
        more than the cache holds), so the first requests after a restart skip that cost.
        Unreadable or stale artifacts are skipped: `get` reports them when asked."""
        directory = artifact_path(self._dir, "sha256:" + "0" * 64, self._options).parent
        try:
            candidates = sorted(directory.glob("*.cwasm"), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return []
        loaded: list[str] = []
        # Oldest of the chosen first, so the most recently used ends up most recent in the LRU.
        for path in reversed(candidates[: max(0, min(limit, self._max))]):
            content_hash = "sha256:" + path.stem
            if content_hash in self:
                continue
            try:
                self._insert(content_hash, Component.deserialize_file(self._engine, str(path)))
            except Exception:  # noqa: BLE001 - a bad artifact must not stop the process starting
                log.warning("could not warm %s", path.name, exc_info=True)
                continue
            loaded.append(content_hash)
        return loaded

    def __contains__(self, content_hash: str) -> bool:
        with self._lock:
            return content_hash in self._data
