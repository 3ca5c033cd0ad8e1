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

from runner.compiler import artifact_path, earlier_artifact_paths, outdated_artifacts, read_report
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
    """LRU of deserialized components keyed by content hash. Never compiles.

    Each entry remembers its bulk-body export (from the report beside the artifact). When
    only an artifact of an earlier transform version exists, it is loaded (it serves through
    the plain `handler`) and the hash is listed in `outdated` until that artifact is rebuilt.
    """

    def __init__(self, engine: Engine, compiled_dir: Path, options: EngineOptions, max_entries: int = 32) -> None:
        self._engine = engine
        self._dir = Path(compiled_dir)
        self._options = options
        self._max = max_entries
        self._data: OrderedDict[str, tuple[Component, str | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.outdated: set[str] = set()  # loaded from an earlier transform version's artifact

    def get(self, content_hash: str) -> Component:
        return self.get_with_export(content_hash)[0]

    def get_with_export(self, content_hash: str) -> tuple[Component, str | None]:
        """(component, its bulk-body export or None)."""
        with self._lock:
            entry = self._data.get(content_hash)
            if entry is not None:
                self._data.move_to_end(content_hash)
                return entry
        path = artifact_path(self._dir, content_hash, self._options)
        outdated = False
        if not path.is_file():
            earlier = earlier_artifact_paths(self._dir, content_hash, self._options)
            if not earlier:
                raise ComponentNotCompiledError(content_hash)
            path, outdated = earlier[0], True
        component = Component.deserialize_file(self._engine, str(path))
        with contextlib.suppress(OSError):
            os.utime(path)  # recency survives a restart: `warm` loads the newest first
        entry = (component, None if outdated else _bulk_export(path))
        self._insert(content_hash, entry)
        if outdated:
            with self._lock:
                self.outdated.add(content_hash)
        return entry

    def evict(self, content_hash: str) -> None:
        """Forget a loaded component (its artifact was rebuilt: the next `get` loads that)."""
        with self._lock:
            self._data.pop(content_hash, None)
            self.outdated.discard(content_hash)

    def outdated_on_disk(self) -> list[str]:
        """Hashes with an artifact from an earlier transform version and none from this one."""
        return outdated_artifacts(self._dir, self._options)

    def _insert(self, content_hash: str, entry: tuple[Component, str | None]) -> None:
        with self._lock:
            self._data[content_hash] = entry
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
                self._insert(content_hash, (Component.deserialize_file(self._engine, str(path)), _bulk_export(path)))
            except Exception:  # noqa: BLE001 - a bad artifact must not stop the process starting
                log.warning("could not warm %s", path.name, exc_info=True)
                continue
            loaded.append(content_hash)
        return loaded

    def __contains__(self, content_hash: str) -> bool:
        with self._lock:
            return content_hash in self._data


def _bulk_export(artifact: Path) -> str | None:
    """The bulk-body export named by the report beside an artifact (None when absent or
    unreadable: the plain `handler` always works, so doubt means the plain path)."""
    try:
        return read_report(artifact.with_suffix(".json")).bulk_export
    except (OSError, ValueError, TypeError):
        return None
