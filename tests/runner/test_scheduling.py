"""Fair scheduling (issue 17, item 1): no tenant slows another.

The scheduler on its own (per-tenant queues served in turn, per-tenant and per-install caps,
admission deadline, queue bounds), then the runner with real guests: a tenant whose guests
loop until their deadline holds at most its share of the threads, its excess is refused fast
with `runner_busy`, and the guest's budget starts when it starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runner.contract.envelope import Keyring
from runner.scheduler import FairScheduler, Refusal, SchedulerLimits, Ticket
from runner.settings import RunnerSettings
from tests.runner.conftest import make_request, make_runner

BUSY = "not started"


def limits(threads: int = 1, tenant_cap: int = 1, install_cap: int = 1, tenant_queue: int = 8,
           total_queue: int = 64) -> SchedulerLimits:
    return SchedulerLimits(threads=threads, tenant_cap=tenant_cap, install_cap=install_cap,
                           tenant_queue=tenant_queue, total_queue=total_queue)


@pytest.fixture
def make_scheduler() -> Iterator[Callable[..., FairScheduler[str]]]:
    made: list[FairScheduler[str]] = []

    def make(**kw: int) -> FairScheduler[str]:
        s: FairScheduler[str] = FairScheduler(limits(**kw), not_started=lambda: BUSY)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close(timeout_s=5)


class Gate:
    """Work that blocks until released, recording the order calls started in."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[str] = []
        self._lock = threading.Lock()

    def work(self, name: str) -> Callable[[float], str]:
        def run(started_at: float) -> str:
            with self._lock:
                self.started.append(name)
            assert self.release.wait(10)
            return name
        return run


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def submit(s: FairScheduler[str], tenant: str, work: Callable[[float], str], install: str = "i",
           admit_in_s: float = 30.0) -> Ticket[str]:
    ticket = s.submit(tenant, install, work, time.monotonic() + admit_in_s)
    assert isinstance(ticket, Ticket), ticket
    return ticket


def test_tenants_are_served_in_turn_not_in_arrival_order(make_scheduler) -> None:
    s = make_scheduler(threads=1, tenant_cap=1, install_cap=1)
    gate = Gate()
    first = submit(s, "a", gate.work("a0"))
    wait_until(lambda: gate.started == ["a0"])
    # tenant a queues a backlog first, then b and c arrive
    tickets = [submit(s, "a", gate.work(f"a{i}")) for i in range(1, 4)]
    tickets += [submit(s, "b", gate.work("b1")), submit(s, "c", gate.work("c1"))]
    assert s.queue_depths() == {"a": 3, "b": 1, "c": 1}
    gate.release.set()
    for t in [first, *tickets]:
        t.future.result(5)
    # a was served last, so b and c come before a's backlog; then a's calls in order
    assert gate.started == ["a0", "b1", "c1", "a1", "a2", "a3"]


def test_a_tenant_at_its_cap_leaves_the_other_threads_to_other_tenants(make_scheduler) -> None:
    s = make_scheduler(threads=3, tenant_cap=2, install_cap=2)
    gate = Gate()
    for i in range(5):
        submit(s, "a", gate.work(f"a{i}"))
    wait_until(lambda: len(gate.started) == 2)
    time.sleep(0.05)
    assert s.running() == {"a": 2} and s.queue_depths() == {"a": 3}  # the third thread stays free for others
    b = submit(s, "b", lambda started: "b")
    assert b.future.result(2) == "b"
    gate.release.set()


def test_install_cap_applies_within_a_tenant(make_scheduler) -> None:
    s = make_scheduler(threads=3, tenant_cap=3, install_cap=1)
    gate = Gate()
    submit(s, "a", gate.work("x1"), install="x")
    submit(s, "a", gate.work("x2"), install="x")
    submit(s, "a", gate.work("y1"), install="y")
    wait_until(lambda: len(gate.started) == 2)
    time.sleep(0.05)
    assert sorted(gate.started) == ["x1", "y1"]  # x2 waits for x1, y1 passes it
    gate.release.set()


def test_a_call_that_cannot_start_in_time_is_answered_at_its_admission_deadline(make_scheduler) -> None:
    s = make_scheduler(threads=1, tenant_cap=1, install_cap=1)
    gate = Gate()
    submit(s, "a", gate.work("a0"))
    wait_until(lambda: gate.started == ["a0"])
    started = time.monotonic()
    late = submit(s, "b", gate.work("b1"), admit_in_s=0.2)
    # Every worker is busy: the waiting caller withdraws it at its deadline ...
    with pytest.raises(TimeoutError):
        late.future.result(0.2)
    assert s.withdraw(late) is True
    assert late.future.result(0) == BUSY and time.monotonic() - started < 1.0
    assert s.queue_depths() == {}
    # ... and an expired call found by a worker is answered, never started late.
    expired = submit(s, "c", gate.work("c1"), admit_in_s=0.05)
    time.sleep(0.1)
    gate.release.set()
    assert expired.future.result(5) == BUSY
    assert "c1" not in gate.started and "b1" not in gate.started
    assert s.withdraw(expired) is False


def test_queue_bounds_refuse_at_once(make_scheduler) -> None:
    s = make_scheduler(threads=1, tenant_cap=1, install_cap=1, tenant_queue=2, total_queue=3)
    gate = Gate()
    submit(s, "a", gate.work("a0"))
    wait_until(lambda: gate.started == ["a0"])
    submit(s, "a", gate.work("a1"))
    submit(s, "a", gate.work("a2"))
    assert s.submit("a", "i", gate.work("a3"), time.monotonic() + 30) is Refusal.TENANT_QUEUE_FULL
    submit(s, "b", gate.work("b1"))  # another tenant still queues
    assert s.submit("c", "i", gate.work("c1"), time.monotonic() + 30) is Refusal.QUEUE_FULL
    gate.release.set()


def test_close_answers_waiting_calls(make_scheduler) -> None:
    s = make_scheduler(threads=1)
    gate = Gate()
    submit(s, "a", gate.work("a0"))
    wait_until(lambda: gate.started == ["a0"])
    waiting = submit(s, "b", gate.work("b1"))
    gate.release.set()
    s.close(timeout_s=5)
    assert waiting.future.result(1) in (BUSY, "b1")
    assert s.submit("a", "i", gate.work("x"), time.monotonic() + 1) is Refusal.CLOSED


def test_default_pool_is_sized_from_the_cores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    s = RunnerSettings(data_dir=tmp_path)
    assert s.effective_threads == 8
    assert s.effective_tenant_max_concurrency == 4 and s.effective_install_max_concurrency == 4
    assert RunnerSettings(data_dir=tmp_path, runner_processes=4).effective_threads == 2
    one = RunnerSettings(data_dir=tmp_path, runner_threads=1)
    assert one.effective_tenant_max_concurrency == 1
    capped = RunnerSettings(data_dir=tmp_path, runner_threads=4, runner_tenant_max_concurrency=9,
                            runner_install_max_concurrency=1)
    assert capped.effective_tenant_max_concurrency == 4 and capped.effective_install_max_concurrency == 1


# --- the runner, with real guests -------------------------------------------------------


def test_a_looping_tenant_does_not_stall_another(tmp_path: Path, keyring: Keyring, compiled_dir: Path,
                                                 wat_guests) -> None:
    """Issue 17 (1): two looping calls by one tenant took both threads, and another tenant's
    call waited out its whole deadline in the queue (a 504 after 30.5 s through the gateway)."""
    runner = make_runner(tmp_path, compiled_dir, keyring, runner_threads=2, runner_admission_timeout_ms=300)
    faults = wat_guests["faults"]
    try:
        with ThreadPoolExecutor(4) as pool:
            loops = [pool.submit(runner.execute, make_request(faults, "/loop", tenant="acme",
                                                              limits={"timeout_ms": 2_000})) for _ in range(2)]
            time.sleep(0.1)
            started = time.monotonic()
            other = runner.execute(make_request(faults, "/echo", method="POST", body=b"hi", tenant="globex",
                                                limits={"timeout_ms": 1_000}))
            other_s = time.monotonic() - started
            answers = sorted(f.result(10).error or "ok" for f in loops)
        assert other.error is None and other.status == 200 and other_s < 1.0
        # acme holds one thread (half the pool); its second loop is refused fast, not queued for 2 s
        assert answers == ["runner_busy", "timeout"]
    finally:
        runner.close()


def test_runner_busy_is_fast_and_the_guest_budget_starts_when_it_runs(tmp_path: Path, keyring: Keyring,
                                                                     compiled_dir: Path, wat_guests) -> None:
    runner = make_runner(tmp_path, compiled_dir, keyring, runner_threads=1, runner_admission_timeout_ms=2_000)
    faults = wat_guests["faults"]
    try:
        with ThreadPoolExecutor(2) as pool:
            loop = pool.submit(runner.execute, make_request(faults, "/loop", tenant="acme",
                                                            limits={"timeout_ms": 600}))
            time.sleep(0.1)
            # Waits ~0.5 s for the thread, longer than its own 300 ms budget: it still runs,
            # because the budget counts from its start (the old runner answered `timeout`).
            queued = runner.execute(make_request(faults, "/echo", method="POST", body=b"late", tenant="globex",
                                                 limits={"timeout_ms": 300}))
            assert loop.result(10).error == "timeout"
        assert queued.error is None and queued.status == 200

        # A request may ask for a shorter admission wait than the runner's.
        with ThreadPoolExecutor(2) as pool:
            loop = pool.submit(runner.execute, make_request(faults, "/loop", tenant="acme",
                                                            limits={"timeout_ms": 1_500}))
            time.sleep(0.1)
            started = time.monotonic()
            busy = runner.execute(make_request(faults, "/echo", method="POST", body=b"x", tenant="globex",
                                               limits={"timeout_ms": 300, "admission_timeout_ms": 200}))
            waited = time.monotonic() - started
            loop.result(10)
        assert busy.error == "runner_busy" and busy.status == 503 and waited < 1.0
    finally:
        runner.close()
