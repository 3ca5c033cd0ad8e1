"""The runner-side publisher: masking, truncation, rate limit and drop counters, a guest
that is never blocked, and the in-process hub's Redis-like semantics."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest

from runner.contract import capabilities as caps
from runner.contract.envelope import Keyring, seal
from runner.debug import DebugEvent
from runner.debug.config import DebugPublisherSettings
from runner.debug.masking import SecretMasker
from runner.debug.publisher import DebugPublisher
from runner.debug.streams import InProcessStreams, RedisStreamWriter
from runner.debug.wire import decode, stream_key
from runner.executor import Runner
from runner.settings import RunnerSettings
from runner.storage.sql import SqlKVStore


def ev(i: int = 0, install: str = "i1", msg: str | None = None) -> DebugEvent:
    return DebugEvent("t1", "ext", install, "v1", f"r{i}", "stdout", "info", msg or f"line {i}")


def entries(streams: InProcessStreams, install: str = "i1", ext: str = "ext") -> list[dict[str, object]]:
    key = stream_key("dbg:v1", "t1", ext, install)
    return [decode(f) for _, f in streams.read_after(key, (0, 0), 100_000)]


def test_stream_key_has_tenant_hash_tag_and_escapes() -> None:
    assert stream_key("dbg:v1", "acme", "e1", "i1") == "dbg:v1:{acme}:e1:i1"
    key = stream_key("dbg:v1", "a}b{c:d", "e:1", None)
    assert key.count("{") == 1 and key.count("}") == 1 and key.endswith(":-")


def test_masker_covers_value_base64_and_urlencoding() -> None:
    secret = "p@ss/word+42"
    m = SecretMasker([secret, "ab"])  # too short to mask: "ab"
    raw = secret.encode()
    text = " ".join([secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="),
                     "p%40ss%2Fword%2B42", "ab"])
    masked, count = m.mask(text)
    assert secret not in masked and base64.b64encode(raw).decode() not in masked and "p%40ss" not in masked
    assert count == 4 and masked.endswith(" ab")


def test_publisher_fields_seq_and_rate_limit_drops() -> None:
    streams = InProcessStreams()
    pub = DebugPublisher(streams, DebugPublisherSettings(rate_per_s=0.001, rate_burst=5))
    try:
        for i in range(8):
            pub.publish(ev(i))
        assert pub.flush(5)
        time.sleep(0.1)
        got = entries(streams)
        assert [e["seq"] for e in got] == [1, 2, 3, 4, 5] and pub.stats.dropped_rate == 3
        pub.settings.rate_per_s = 1e6  # refill: the next entry reports the 3 dropped lines
        time.sleep(0.01)
        pub.publish(ev(9))
        assert pub.flush(5)
        time.sleep(0.1)
        last = entries(streams)[-1]
        assert last["dropped"] == 3 and last["seq"] == 6 and last["source"] == "stdout"
        assert last["tenant"] == "t1" and last["install"] == "i1" and last["version"] == "v1"
    finally:
        pub.close()


def test_queue_overflow_is_counted_not_blocking() -> None:
    gate = threading.Event()

    class SlowWriter:
        def write_batch(self, batch: object) -> None:
            gate.wait(10)

        def close(self) -> None:
            return None

    pub = DebugPublisher(SlowWriter(), DebugPublisherSettings(queue_size=100, rate_per_s=1e9, rate_burst=10**9))  # type: ignore[arg-type]
    try:
        start = time.monotonic()
        for i in range(5000):
            pub.publish(ev(i))
        elapsed = time.monotonic() - start
        assert pub.stats.dropped_queue >= 4000
        assert elapsed < 5  # a blocking publisher would wait on the stalled writer
    finally:
        gate.set()
        pub.close()


@pytest.mark.redis
def test_guest_rate_of_10k_lines_per_second_never_blocks(private_redis) -> None:  # type: ignore[no-untyped-def]
    """10,000 lines/s for one second, Redis up and then down: every publish returns at once."""
    url = private_redis.url
    s = DebugPublisherSettings(redis_url=url, breaker_min_s=0.2, breaker_max_s=0.5)
    pub = DebugPublisher(RedisStreamWriter(url, maxlen=1000, ttl_s=60, connect_timeout_s=0.5, socket_timeout_s=1.0), s)
    try:
        for phase in ("up", "down"):
            if phase == "down":
                private_redis.stop()
            worst = 0.0
            start = time.monotonic()
            for i in range(10_000):
                t = time.perf_counter()
                pub.publish(ev(i))
                worst = max(worst, time.perf_counter() - t)
                if i % 100 == 99:  # pace to ~10k/s
                    time.sleep(max(0.0, start + (i + 1) / 10_000 - time.monotonic()))
            assert worst < 0.5, f"{phase}: a publish call took {worst:.3f}s"
        assert pub.stats.dropped_rate > 0  # 200 lines/s per install: the excess is counted
        assert pub.stats.accepted + pub.stats.dropped_rate + pub.stats.dropped_queue == 20_000
    finally:
        pub.close()


def test_real_guest_stderr_is_masked_and_truncated(tmp_path: Path, compiled_dir: Path, demo_hash: str,
                                                  keyring: Keyring) -> None:
    """The demo guest's /crash traceback goes to stderr; make its text the install's secret."""
    from tests.runner.conftest import make_request

    streams = InProcessStreams()
    pub = DebugPublisher(streams, DebugPublisherSettings(rate_per_s=1e6, rate_burst=10**6))
    settings = RunnerSettings(data_dir=tmp_path, runner_compiled_dir=compiled_dir, runner_threads=1,
                              runner_output_max_line_bytes=64)
    runner = Runner(settings, keyring=keyring, kv_store=SqlKVStore(f"sqlite:///{tmp_path / 'kv.db'}",
                                                                    create_tables=True), debug_sink=pub)
    try:
        env = seal({"api_key": "deliberate crash"}, keyring=keyring, tenant_id="t1", install_id="i1", version="v1")
        resp = runner.execute(make_request(demo_hash, "/crash", providers=[caps.SECRETS_GET, caps.DEBUG_LOGS],
                                           secret_envelope=env.model_dump(mode="json")))
        assert resp.error == "guest_crash"
        assert pub.flush(5)
        time.sleep(0.1)
        all_lines = entries(streams, ext="acme.demo")
        got = [e for e in all_lines if e["source"] == "stderr"]
        assert got, "stderr lines arrive"
        text = "\n".join(str(e["message"]) for e in got)
        assert "deliberate crash" not in text and "RuntimeError: ***" in text
        assert sum(int(e["redacted"]) for e in got) >= 1  # type: ignore[call-overload]
        assert any(e["truncated"] for e in got) and all(len(str(e["message"]).encode()) <= 64 for e in got)
        assert any(e["source"] == "system" and e["level"] == "error" for e in all_lines)
    finally:
        runner.close()
        pub.close()


def test_in_process_streams_trim_and_ids() -> None:
    s = InProcessStreams(maxlen=3)
    s.write_batch([("k", {"n": str(i)}) for i in range(5)])
    info = s.info("k")
    assert info is not None and info.length == 3 and info.max_deleted_id != "0-0"
    rows = s.read_after("k", (0, 0), 10)
    assert [f["n"] for _, f in rows] == ["2", "3", "4"]
    ids = [i for i, _ in rows]
    assert ids == sorted(ids, key=lambda x: tuple(map(int, x.split("-"))))
