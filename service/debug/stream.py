"""The SSE event sequence of one debug session.

    retry + info(session_started) → [gap] → backlog logs → live logs, with gap (slow viewer or
    trimmed), warning (redis_unavailable), info (redis_recovered) → end(reason)

`id:` is the stream entry id, so a reconnecting EventSource sends it back as
`Last-Event-ID` and resumes exactly after it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from sse_starlette import ServerSentEvent

from service.debug.hub import Message, StreamHub, Viewer
from service.debug.sessions import LEVELS, DebugSessions, SessionStats
from service.debug.source import SourceUnavailable, id_after, lost_after
from service.debug.tickets import SessionGrant

log = logging.getLogger("extgate.debug")

_MAX_BURST = 200


def entry_filter(grant: SessionGrant) -> Callable[[dict[str, Any]], bool]:
    floor = LEVELS.index(grant.min_level) if grant.min_level in LEVELS else 0
    rid = grant.request_id_filter

    def accept(data: dict[str, Any]) -> bool:
        level = data.get("level")
        if floor and (LEVELS.index(level) if level in LEVELS else 0) < floor:
            return False
        return rid is None or data.get("request_id") == rid

    return accept


def sse(kind: str, data: dict[str, Any], entry_id: str | None = None, retry: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(json.dumps(data, separators=(",", ":")), event=kind, id=entry_id, retry=retry)


async def session_events(
    sessions: DebugSessions, hub: StreamHub, grant: SessionGrant, last_event_id: str | None,
) -> AsyncIterator[ServerSentEvent | bytes]:
    s = sessions.settings
    stats = SessionStats(started=time.monotonic())
    deadline = stats.started + grant.max_duration_s
    accept = entry_filter(grant)
    viewer = Viewer(s.viewer_queue, accept)
    reason = "client_closed"
    key = grant.stream_key
    try:
        cursor = await hub.attach(key, viewer)
        yield sse("info", {
            "code": "session_started", "session_id": grant.session_id, "tenant": grant.tenant_id,
            "extension": grant.extension_id, "install": grant.install_id,
            "max_duration_s": grant.max_duration_s, "request_id": grant.request_id_filter,
            "min_level": grant.min_level,
        }, retry=s.retry_ms)
        sent = last_event_id or "0-0"
        async for event in _backlog(hub, key, last_event_id, cursor, s.backlog_lines, accept, stats):
            if event.id:
                sent = event.id
            yield event
        next_check = time.monotonic() + s.revalidate_s
        while True:
            now = time.monotonic()
            if now >= deadline:
                reason = "max_duration"
                break
            if now >= next_check:
                next_check = now + s.revalidate_s
                if not await anyio.to_thread.run_sync(sessions.still_allowed, grant):
                    reason = "revoked"
                    break
                await anyio.to_thread.run_sync(sessions.renew, grant)
            if viewer.queue.empty():
                try:
                    first: Message = await asyncio.wait_for(viewer.queue.get(), min(deadline, next_check) - now)
                except TimeoutError:
                    continue
            else:
                first = viewer.queue.get_nowait()
            # Whatever else is queued goes out in the same write: one send per burst, not per line.
            batch = [first]
            while len(batch) < _MAX_BURST and not viewer.queue.empty():
                batch.append(viewer.queue.get_nowait())
            chunks: list[bytes] = []
            if viewer.lost:
                stats.dropped += viewer.lost
                chunks.append(sse("gap", {"reason": "slow_viewer", "dropped": viewer.lost}).encode())
                viewer.lost = 0
            for msg in batch:
                if msg.kind == "log":
                    if msg.id is None or not id_after(msg.id, sent):
                        continue
                    sent = msg.id
                    stats.delivered += 1
                chunks.append(msg.wire)
            if chunks:
                yield b"".join(chunks)
        yield sse("end", {"reason": reason})
    except Exception:
        reason = "error"
        log.exception("debug session %s failed", grant.session_id)
        yield sse("end", {"reason": reason})
    finally:
        # Runs on client disconnect too (the task is cancelled): shield the clean-up.
        with anyio.CancelScope(shield=True):
            await hub.detach(key, viewer)
            await anyio.to_thread.run_sync(sessions.release, grant)
            await anyio.to_thread.run_sync(sessions.audit_end, grant, reason, stats)


async def _backlog(
    hub: StreamHub, key: str, last_event_id: str | None, cursor: str, backlog_lines: int,
    accept: Callable[[dict[str, Any]], bool], stats: SessionStats,
) -> AsyncIterator[ServerSentEvent]:
    """What came before the live cursor: after `Last-Event-ID` (with a `gap` if that point was
    trimmed), or the last few lines on a fresh connect."""
    from runner.debug.wire import decode

    source = hub.source
    try:
        if last_event_id:
            info = await source.info(key)
            if info is not None and lost_after(info, last_event_id):
                yield sse("gap", {"reason": "trimmed", "requested_after": last_event_id,
                                  "oldest_available": info.first_id})
            after = last_event_id
            while True:
                rows = await source.range_after(key, after, cursor, 500)
                for entry_id, fields in rows:
                    after = entry_id
                    data = decode(fields)
                    if accept(data):
                        stats.delivered += 1
                        yield sse("log", data, entry_id)
                if len(rows) < 500:
                    break
        else:
            for entry_id, fields in await source.tail(key, cursor, backlog_lines):
                data = decode(fields)
                if accept(data):
                    stats.delivered += 1
                    yield sse("log", data, entry_id)
    except SourceUnavailable:
        yield sse("warning", {"code": "redis_unavailable",
                              "message": "the debug stream store is unavailable; no backlog"})
