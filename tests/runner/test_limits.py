"""Each failure is contained, classified, and the next request on the same worker works."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.compiler import compile_component
from runner.contract.envelope import Keyring
from runner.contract.execute import ExecuteResponse
from runner.engine import EngineOptions
from runner.executor import _Admitted
from runner.scheduler import Ticket, _State
from tests.runner.conftest import body_of, hash_of, make_request, make_runner, wat_bytes


def _wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def _echo_ok(runner, content_hash: str) -> None:
    resp = runner.execute(make_request(content_hash, "/echo", method="POST", body=b"still alive"))
    assert resp.error is None and resp.status == 200 and body_of(resp) == b"still alive"


@pytest.mark.parametrize(
    ("path", "limits", "expected"),
    [
        ("/loop", {"timeout_ms": 200}, {"timeout"}),
        ("/trap", {}, {"guest_crash"}),
        ("/stack", {}, {"guest_crash"}),
        # A raw-wasm bomb gets -1 from memory.grow and traps; nothing says "out of memory",
        # so it may be reported as a crash. (The Python guest test asserts memory_limit.)
        ("/oom", {"memory_mb": 32}, {"memory_limit", "guest_crash"}),
        ("/big", {}, {"payload_too_large"}),   # 3,000,000 bytes: over wasmtime's hostcall cap
        ("/huge", {}, {"payload_too_large"}),  # 2,500,000 bytes: over the runner's 2 MiB cap
    ],
)
def test_fault_is_contained(runner, wat_guests, path, limits, expected) -> None:
    resp = runner.execute(make_request(wat_guests["faults"], path, limits=limits))
    assert resp.error in expected
    assert resp.body_b64 is None
    _echo_ok(runner, wat_guests["faults"])


def test_timeout_is_roughly_the_deadline(runner, wat_guests) -> None:
    import time

    started = time.monotonic()
    resp = runner.execute(make_request(wat_guests["faults"], "/loop", limits={"timeout_ms": 100}))
    assert resp.error == "timeout" and resp.status == 504
    assert time.monotonic() - started < 5


def test_fuel_exhaustion(tmp_path: Path, keyring: Keyring) -> None:
    options = EngineOptions(consume_fuel=True)
    data = wat_bytes("faults")
    content_hash = hash_of(data)
    compile_component(data, tmp_path / "compiled", content_hash=content_hash, options=options)
    r = make_runner(tmp_path, tmp_path / "compiled", keyring, runner_fuel=True)
    try:
        resp = r.execute(make_request(content_hash, "/loop", limits={"fuel": 1_000_000, "timeout_ms": 10_000}))
        assert resp.error == "fuel_exhausted"
        ok = r.execute(make_request(content_hash, "/echo", method="POST", body=b"x"))
        assert ok.error is None and body_of(ok) == b"x"
    finally:
        r.close()


def test_artifact_from_another_engine_config_is_not_loaded(tmp_path: Path, keyring: Keyring, wat_guests,
                                                          compiled_dir: Path) -> None:
    # The non-fuel artifact exists in compiled_dir, but a fuel runner looks under another
    # fingerprint: it reports "not ready" (and compiles in the background) instead of loading it.
    r = make_runner(tmp_path, compiled_dir, keyring, runner_fuel=True)
    try:
        resp = r.execute(make_request(wat_guests["echo"], "/"))
        assert resp.error == "bundle_not_found"  # no bundle in this runner's store to compile from
    finally:
        r.close()


def test_request_body_roundtrip_sizes(runner, wat_guests) -> None:
    for size in (0, 1, 4096, 1 << 20):
        data = bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
        resp = runner.execute(make_request(wat_guests["echo"], "/", method="POST", body=data))
        assert resp.error is None and body_of(resp) == data


def test_request_body_over_cap(runner, wat_guests) -> None:
    big = b"x" * (runner.settings.runner_max_request_body_bytes + 1)
    resp = runner.execute(make_request(wat_guests["echo"], "/", method="POST", body=big))
    assert resp.error == "payload_too_large"


def _stuck(run_s: float) -> _Admitted:
    """An admitted call a worker holds and never finishes (a host call ignoring its deadline)."""
    ticket: Ticket[ExecuteResponse] = Ticket("t1", "i1", lambda started: ExecuteResponse(status=200), admit_by=0.0)
    ticket.state = _State.RUNNING  # started: the admission deadline no longer applies
    return _Admitted(ticket, None, 0.01, run_s)


def test_async_execute_answers_and_its_outer_bound_times_out(runner, wat_guests, monkeypatch) -> None:
    import asyncio

    resp = asyncio.run(runner.execute_async(make_request(wat_guests["faults"], "/echo", method="POST", body=b"hi")))
    assert resp.error is None and body_of(resp) == b"hi"

    # A host call that ignores its own deadline: the caller still gets `timeout` at the bound.
    monkeypatch.setattr(runner, "_admit", lambda req, headers: _stuck(0.1))
    resp = asyncio.run(runner.execute_async(make_request(wat_guests["faults"], "/echo")))
    assert resp.error == "timeout"
    # ... and at the caller's own, shorter deadline (the gateway's budget).
    monkeypatch.setattr(runner, "_admit", lambda req, headers: _stuck(30.0))
    resp = asyncio.run(runner.execute_async(make_request(wat_guests["faults"], "/echo"), deadline_s=0.1))
    assert resp.error == "timeout"

    # A caller that goes away is cancelled, not answered with a timeout.
    async def cancelled() -> None:
        task = asyncio.ensure_future(runner.execute_async(make_request(wat_guests["faults"], "/echo")))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())


def test_a_caller_that_stops_waiting_frees_its_place_in_the_queue(tmp_path: Path, keyring: Keyring,
                                                                 compiled_dir: Path, wat_guests) -> None:
    import asyncio
    import threading

    runner = make_runner(tmp_path, compiled_dir, keyring, runner_queue_size=4)
    try:
        # Occupy the only worker, then queue a call whose caller gives up before it starts.
        busy = threading.Thread(target=runner.execute,
                                args=(make_request(wat_guests["faults"], "/loop", limits={"timeout_ms": 300}),))
        busy.start()
        _wait_until(lambda: runner.scheduler.running() == {"t1": 1})
        resp = asyncio.run(runner.execute_async(make_request(wat_guests["faults"], "/echo"), deadline_s=0.02))
        assert resp.error == "timeout"
        assert runner.queue_depths() == {}  # withdrawn, not left to run for nobody
        busy.join()
        _echo_ok(runner, wat_guests["faults"])
    finally:
        runner.close()
