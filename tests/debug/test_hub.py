"""The hub: one reader per stream, bounded viewer queues, slow viewers lose oldest lines
(counted) without slowing others."""

from __future__ import annotations

import asyncio

from runner.debug.streams import InProcessStreams
from service.debug.config import DebugSessionSettings
from service.debug.hub import StreamHub, Viewer
from service.debug.source import InProcessStreamSource


def test_slow_viewer_loses_oldest_and_fast_viewer_gets_all() -> None:
    async def scenario() -> None:
        streams = InProcessStreams(maxlen=10_000)
        hub = StreamHub(InProcessStreamSource(streams), DebugSessionSettings(read_block_ms=200, viewer_queue=10))
        slow = Viewer(10, lambda _d: True)
        fast = Viewer(10_000, lambda _d: True)
        await hub.attach("k", slow)
        await hub.attach("k", fast)
        assert hub.reader_count == 1
        await asyncio.to_thread(streams.write_batch, [("k", {"message": str(i)}) for i in range(100)])
        for _ in range(100):
            if fast.queue.qsize() == 100:
                break
            await asyncio.sleep(0.02)
        assert fast.queue.qsize() == 100 and fast.lost == 0
        assert slow.queue.qsize() == 10 and slow.lost == 90
        assert slow.queue.get_nowait().data["message"] == "90"  # the newest survive
        await hub.detach("k", slow)
        await hub.detach("k", fast)
        assert hub.reader_count == 0
        await hub.close()

    asyncio.run(scenario())
