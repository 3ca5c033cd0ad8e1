"""Bounded per-request capture of guest stdout/stderr, split into lines.

wasmtime calls the `stdout_custom`/`stderr_custom` callbacks on its own (tokio) threads,
not on the thread running the guest, so each store gets its own `OutputCapture` bound by
closure (a ContextVar would not be visible there) and the buffer is lock-protected.
"""

from __future__ import annotations

import threading


def truncate_utf8(data: bytes, limit: int) -> tuple[str, bool]:
    """Decode at most `limit` bytes, cutting on a character boundary."""
    if len(data) <= limit:
        return data.decode("utf-8", "replace"), False
    cut = data[:limit]
    return cut.decode("utf-8", "ignore"), True


class OutputCapture:
    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buf = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            room = self._max - len(self._buf)
            if room > 0:
                self._buf += data[:room]
            self._dropped += max(0, len(data) - max(room, 0))

    @property
    def dropped(self) -> int:
        return self._dropped

    def lines(self, max_line: int) -> list[tuple[str, bool]]:
        with self._lock:
            raw = bytes(self._buf)
        out: list[tuple[str, bool]] = []
        for line in raw.splitlines():
            line = line.rstrip(b"\r")
            if line:
                out.append(truncate_utf8(line, max_line))
        return out
