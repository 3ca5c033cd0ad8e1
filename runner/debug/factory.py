"""Pick the debug sink for a process from settings."""

from __future__ import annotations

from runner.debug import DebugSink, NullDebugSink
from runner.debug.config import DebugPublisherSettings
from runner.debug.publisher import DebugPublisher
from runner.debug.streams import InProcessStreams, RedisStreamWriter

_hub: InProcessStreams | None = None


def in_process_hub(settings: DebugPublisherSettings | None = None) -> InProcessStreams:
    """The process-wide in-process hub (embedded default): the runner writes to it and the
    service's SSE endpoint in the same process reads it."""
    global _hub
    if _hub is None:
        s = settings or DebugPublisherSettings()
        _hub = InProcessStreams(maxlen=s.stream_maxlen, ttl_s=s.stream_ttl_s)
    return _hub


def create_debug_sink(settings: DebugPublisherSettings | None = None) -> DebugSink:
    """Redis when a URL is configured, else the in-process hub; disabled: a null sink."""
    s = settings or DebugPublisherSettings()
    if not s.enabled:
        return NullDebugSink()
    if s.redis_url:
        writer = RedisStreamWriter(s.redis_url, maxlen=s.stream_maxlen, ttl_s=s.stream_ttl_s,
                                   connect_timeout_s=s.connect_timeout_s, socket_timeout_s=s.socket_timeout_s)
        return DebugPublisher(writer, s)
    return DebugPublisher(in_process_hub(s), s)
