"""The runner's debug publisher: never blocks the guest, drops and counts instead.

`publish` (called on guest worker threads) does a token-bucket check per install and an
append to a bounded deque; that is all. One background thread drains the deque, encodes
entries (sequence number, dropped-lines counter) and writes them in pipelined batches to
a `StreamWriter`. When the writer fails, a circuit breaker opens (1 s doubling to 30 s)
and lines go to a bounded ring buffer per stream; they are written, marked `backfill`,
once the backend answers again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass

from runner import metrics
from runner.debug import DebugEvent
from runner.debug.config import DebugPublisherSettings
from runner.debug.streams import Entry, StreamWriter
from runner.debug.wire import SCHEMA_VERSION, iso_ts, source_of, stream_key

log = logging.getLogger("extgate.debug")

_IDLE_WAIT_S = 0.25


class CircuitBreaker:
    """Closed until a failure; then open for `min_s`, doubling per failed probe up to `max_s`."""

    def __init__(self, min_s: float, max_s: float) -> None:
        self._min, self._max = min_s, max_s
        self._delay = 0.0
        self._retry_at = 0.0
        self.down_since: float | None = None

    @property
    def is_open(self) -> bool:
        return self.down_since is not None

    def allow(self, now: float) -> bool:
        return now >= self._retry_at

    def failure(self, now: float) -> None:
        self._delay = min(self._max, max(self._min, self._delay * 2))
        self._retry_at = now + self._delay
        if self.down_since is None:
            self.down_since = time.time()

    def success(self) -> None:
        self._delay = 0.0
        self._retry_at = 0.0
        self.down_since = None


class TokenBucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.stamp = now

    def take(self, rate: float, burst: float, now: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class PublisherStats:
    accepted: int = 0
    written: int = 0
    backfilled: int = 0
    dropped_rate: int = 0
    dropped_queue: int = 0
    dropped_ring: int = 0
    write_failures: int = 0


_MAX_BUCKETS = 10_000


class DebugPublisher:
    """A `DebugSink` writing to Redis or the in-process hub through a background thread."""

    def __init__(self, writer: StreamWriter, settings: DebugPublisherSettings | None = None) -> None:
        self.settings = s = settings or DebugPublisherSettings()
        self.writer = writer
        self.runner_id = uuid.uuid4().hex[:12]  # boot id: seq restarts with it
        self.stats = PublisherStats()
        self.breaker = CircuitBreaker(s.breaker_min_s, s.breaker_max_s)
        # (event, lines dropped for its stream just before it)
        self._queue: deque[tuple[DebugEvent, int]] = deque()
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self._dropped: dict[tuple[str, str, str], int] = {}  # reported by the stream's next entry
        self._seq: dict[str, int] = {}
        self._ring: dict[str, deque[tuple[dict[str, str], int]]] = {}
        self._ring_bytes: dict[str, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain_loop, name="extgate-debug-publisher", daemon=True)
        metrics.watch_debug_publisher(self)  # lines published/dropped and the Redis state, read when scraped
        self._thread.start()

    # --- guest side: O(1), no I/O ----------------------------------------------------

    def publish(self, event: DebugEvent) -> None:
        s = self.settings
        key = (event.tenant_id, event.extension_id, event.install_id or "")
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _MAX_BUCKETS:
                    self._buckets.clear()  # bounded memory; forgetting buckets only refills them
                bucket = self._buckets[key] = TokenBucket(s.rate_burst, now)
            if not bucket.take(s.rate_per_s, s.rate_burst, now):
                self.stats.dropped_rate += 1
                self._dropped[key] = self._dropped.get(key, 0) + 1
                return
            if len(self._queue) >= s.queue_size:
                self.stats.dropped_queue += 1
                self._dropped[key] = self._dropped.get(key, 0) + 1
                return
            self._queue.append((event, self._dropped.pop(key, 0)))
            self.stats.accepted += 1
        if not self._wake.is_set():
            self._wake.set()

    def _key(self, event: DebugEvent) -> str:
        return stream_key(self.settings.key_prefix, event.tenant_id, event.extension_id, event.install_id)

    # --- background thread -----------------------------------------------------------

    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_IDLE_WAIT_S)
            self._wake.clear()
            try:
                self._drain_once()
            except Exception:  # noqa: BLE001 - the publisher thread must survive anything
                log.exception("debug publisher loop failed")

    def _drain_once(self) -> None:
        s = self.settings
        while True:
            with self._lock:
                n = min(len(self._queue), s.batch_size)
                events = [self._queue.popleft() for _ in range(n)]
                batch = [self._encode_locked(e, dropped) for e, dropped in events]
            now = time.monotonic()
            recovering = self.breaker.is_open and self._ring and self.breaker.allow(now)
            if recovering and not self._flush_ring():
                self._to_ring(batch)
                return
            if not batch:
                return
            if self.breaker.is_open and not self.breaker.allow(now):
                self._to_ring(batch)
                continue
            if not self._write(batch):
                self._to_ring(batch)
                continue
            if self._ring:  # recovered by this write: the ring still holds older lines
                self._flush_ring()

    def _encode_locked(self, e: DebugEvent, dropped: int) -> Entry:
        key = self._key(e)
        seq = self._seq.get(key, 0) + 1
        self._seq[key] = seq
        fields = {
            "v": SCHEMA_VERSION,
            "ts": iso_ts(e.ts),
            "level": e.level,
            "source": source_of(e.stream),
            "message": e.message,
            "truncated": "1" if e.truncated else "0",
            "tenant": e.tenant_id,
            "extension": e.extension_id,
            "install": e.install_id or "",
            "version": e.version_id or "",
            "request_id": e.request_id,
            "runner": self.runner_id,
            "seq": str(seq),
            "dropped": str(dropped),
            "redacted": str(e.redacted),
            "backfill": "0",
        }
        return key, fields

    def _write(self, batch: list[Entry]) -> bool:
        try:
            self.writer.write_batch(batch)
        except Exception as exc:  # noqa: BLE001 - StreamUnavailable, or a backend bug: keep the lines
            self.stats.write_failures += 1
            if not self.breaker.is_open:
                log.warning("debug stream backend unavailable (%s); buffering lines", type(exc).__name__)
            self.breaker.failure(time.monotonic())
            return False
        if self.breaker.is_open:
            log.info("debug stream backend recovered")
        self.breaker.success()
        self.stats.written += len(batch)
        return True

    def _to_ring(self, batch: list[Entry]) -> None:
        s = self.settings
        with self._lock:
            for key, fields in batch:
                ring = self._ring.get(key)
                if ring is None:
                    if len(self._ring) >= s.ring_max_streams:
                        self.stats.dropped_ring += 1
                        continue
                    ring = self._ring[key] = deque()
                    self._ring_bytes[key] = 0
                size = len(fields["message"]) + 256
                ring.append((fields, size))
                self._ring_bytes[key] += size
                while ring and (len(ring) > s.ring_lines or self._ring_bytes[key] > s.ring_bytes):
                    old, old_size = ring.popleft()
                    self._ring_bytes[key] -= old_size
                    self.stats.dropped_ring += 1
                    # The loss shows on the oldest line that survives.
                    if ring:
                        head = ring[0][0]
                        head["dropped"] = str(int(head["dropped"]) + 1 + int(old["dropped"]))
                if not ring:
                    del self._ring[key]
                    del self._ring_bytes[key]

    def _flush_ring(self) -> bool:
        """Write the ring buffers oldest first, marked backfill; False if the backend is still down."""
        with self._lock:
            pending = [(k, f) for k, ring in self._ring.items() for f, _ in ring]
            self._ring.clear()
            self._ring_bytes.clear()
        for _, fields in pending:
            fields["backfill"] = "1"
        for i in range(0, len(pending), self.settings.batch_size):
            chunk = pending[i:i + self.settings.batch_size]
            if not self._write(chunk):
                self._to_ring(pending[i:])
                return False
            self.stats.backfilled += len(chunk)
        return True

    # --- lifecycle -----------------------------------------------------------------

    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + sum(len(r) for r in self._ring.values())

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until the queue is written (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queue:
                    return True
            self._wake.set()
            time.sleep(0.005)
        return False

    def close(self) -> None:
        self.flush(2.0)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.writer.close()
