"""The debug stream's wire format: stream keys, entry fields, entry ids.

Shared by the runner (writes) and the service hub (reads), for Redis and the in-process
hub alike. Entries are flat string fields (cheaper in Redis than one JSON blob: field
names are shared with the stream's master entry).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

SCHEMA_VERSION = "1"
SOURCES = ("stdout", "stderr", "log", "system")
LEVELS = ("debug", "info", "warn", "error")


def key_part(value: str) -> str:
    # Percent-encode everything but a safe set: braces would break the cluster hash tag and
    # colons would make keys ambiguous.
    return quote(value, safe="-_.@")


def stream_key(prefix: str, tenant: str, extension: str, install: str | None) -> str:
    """`<prefix>:{<tenant>}:<extension>:<install>`; the `{tenant}` hash tag keeps one tenant's
    streams on one Redis Cluster slot."""
    return f"{prefix}:{{{key_part(tenant)}}}:{key_part(extension)}:{key_part(install or '-')}"


def iso_ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def source_of(stream: str) -> str:
    return "system" if stream == "runner" else stream if stream in SOURCES else "system"


def decode(fields: dict[Any, Any]) -> dict[str, Any]:
    """An entry's fields (bytes or str) as the JSON object viewers receive."""
    f = {(k.decode() if isinstance(k, bytes) else k): (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
         for k, v in fields.items()}

    def num(name: str) -> int:
        try:
            return int(f.get(name, "0"))
        except ValueError:
            return 0

    return {
        "v": num("v"),
        "ts": f.get("ts", ""),
        "level": f.get("level", "info"),
        "source": f.get("source", "system"),
        "message": f.get("message", ""),
        "truncated": f.get("truncated") == "1",
        "tenant": f.get("tenant", ""),
        "extension": f.get("extension", ""),
        "install": f.get("install") or None,
        "version": f.get("version") or None,
        "request_id": f.get("request_id") or None,
        "runner": f.get("runner", ""),
        "seq": num("seq"),
        "dropped": num("dropped"),
        "redacted": num("redacted"),
        "backfill": f.get("backfill") == "1",
    }


def parse_id(value: str) -> tuple[int, int] | None:
    """`<ms>-<seq>` (or `<ms>`) → tuple for ordering; None when malformed."""
    ms, _, seq = value.strip().partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()) or len(value) > 41:
        return None
    return int(ms), int(seq or 0)


def format_id(parts: tuple[int, int]) -> str:
    return f"{parts[0]}-{parts[1]}"
