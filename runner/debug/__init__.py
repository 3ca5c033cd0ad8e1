"""Debug events: guest stdout/stderr lines and logging calls, with their full context.

The runner hands every event to a `DebugSink`. `publish` must never block the guest's
worker (the publisher only appends to a bounded queue); events never contain secret
values — the runner masks the install's secret values before publishing.

Beside the interface: `publisher.DebugPublisher` (queue, rate limit, circuit breaker, ring
buffer) over the backends in `streams` (Redis, or the in-process hub), the wire format in
`wire`, masking in `masking`; `create_debug_sink(settings)` in `factory` picks one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

Stream = Literal["stdout", "stderr", "log", "runner"]
Level = Literal["debug", "info", "warn", "error"]


@dataclass(frozen=True)
class DebugEvent:
    tenant_id: str
    extension_id: str
    install_id: str | None
    version_id: str | None
    request_id: str
    stream: Stream
    level: Level
    message: str
    truncated: bool = False
    redacted: int = 0  # secret occurrences masked in `message`
    ts: float = field(default_factory=time.time)


class DebugSink(Protocol):
    def publish(self, event: DebugEvent) -> None: ...


class NullDebugSink:
    def publish(self, event: DebugEvent) -> None:
        return None

    def close(self) -> None:
        return None


class InMemoryDebugSink:
    """Bounded ring buffer per (tenant, extension, install); for tests and embedded use."""

    def __init__(self, max_events_per_stream: int = 1000) -> None:
        self._max = max_events_per_stream
        self._streams: dict[tuple[str, str, str], deque[DebugEvent]] = {}
        self._lock = threading.Lock()

    def publish(self, event: DebugEvent) -> None:
        key = (event.tenant_id, event.extension_id, event.install_id or "")
        with self._lock:
            buf = self._streams.get(key)
            if buf is None:
                buf = self._streams[key] = deque(maxlen=self._max)
            buf.append(event)

    def events(
        self, tenant_id: str | None = None, request_id: str | None = None
    ) -> list[DebugEvent]:
        with self._lock:
            out = [e for buf in self._streams.values() for e in buf]
        return sorted(
            (e for e in out if (tenant_id is None or e.tenant_id == tenant_id)
             and (request_id is None or e.request_id == request_id)),
            key=lambda e: e.ts,
        )

    def clear(self) -> None:
        with self._lock:
            self._streams.clear()

    def close(self) -> None:
        return None
