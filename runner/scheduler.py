"""Fair scheduling of guest calls across tenants (DESIGN.md §10, "tenants are isolated under load").

One pool of worker threads runs every tenant's guests (wasm releases the GIL, so the pool is
sized from the cores). A plain FIFO in front of it lets one tenant's burst of slow calls hold
every thread while other tenants' calls wait out their deadlines. Here:

- each tenant has its own queue, and workers take from the tenants in turn: the waiting
  tenant served least recently goes first (round-robin that remembers a tenant which is
  still running calls), so a tenant's backlog never sits in front of another tenant's call;
- a tenant runs at most `tenant_cap` calls at once and an install at most `install_cap`, so
  threads stay free for the other tenants even when one tenant's calls never return early;
- a call that has not started by its admission deadline is withdrawn and answered at once
  (the caller gets a fast, retryable refusal instead of a timeout after the full budget);
- a tenant may keep at most `tenant_queue` calls waiting, and the process `total_queue`.

The scheduler knows nothing about guests: a call is a function that is told when it started,
so the guest's time budget can start then.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

T = TypeVar("T")


class Refusal(Enum):
    """Why `submit` did not queue a call."""

    TENANT_QUEUE_FULL = "tenant_queue_full"  # this tenant already has `tenant_queue` calls waiting
    QUEUE_FULL = "queue_full"  # the process has `total_queue` calls waiting
    CLOSED = "closed"


class _State(Enum):
    QUEUED = 1
    RUNNING = 2
    FINISHED = 3  # ran, or was answered without running (withdrawn, expired, closed)


@dataclass(eq=False)
class Ticket(Generic[T]):
    """One call: queued, then running, then finished. `future` carries the answer."""

    tenant: str
    install: str
    work: Callable[[float], T]  # called with the monotonic start time
    admit_by: float  # monotonic: not started by then → answered with the scheduler's `not_started`
    future: Future[T] = field(default_factory=Future)
    state: _State = _State.QUEUED


@dataclass(frozen=True, slots=True)
class SchedulerLimits:
    threads: int
    tenant_cap: int
    install_cap: int
    tenant_queue: int
    total_queue: int

    def __post_init__(self) -> None:
        for name in ("threads", "tenant_cap", "install_cap", "tenant_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.total_queue < 0:
            raise ValueError("total_queue must not be negative")


class FairScheduler(Generic[T]):
    def __init__(self, limits: SchedulerLimits, not_started: Callable[[], T], *,
                 thread_name_prefix: str = "extgate-guest") -> None:
        """`not_started()` answers a call that is withdrawn, expires in the queue, or is still
        queued at `close`."""
        self.limits = limits
        self._not_started = not_started
        self._cond = threading.Condition()
        # tenant → its waiting calls
        self._queues: dict[str, deque[Ticket[T]]] = {}
        # tenant → when it was last served (a counter); kept while it has calls queued or running
        self._served: dict[str, int] = {}
        self._serial = 0
        self._queued = 0
        self._running_tenant: dict[str, int] = {}
        self._running_install: dict[tuple[str, str], int] = {}
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{thread_name_prefix}-{i}", daemon=True)
            for i in range(limits.threads)
        ]
        for t in self._threads:
            t.start()

    # --- callers ----------------------------------------------------------------------

    def submit(self, tenant: str, install: str, work: Callable[[float], T], admit_by: float) -> Ticket[T] | Refusal:
        ticket: Ticket[T] = Ticket(tenant, install, work, admit_by)
        with self._cond:
            if self._closed:
                return Refusal.CLOSED
            queue = self._queues.get(tenant)
            waiting = len(queue) if queue is not None else 0
            if waiting >= self.limits.tenant_queue and not self._can_start_now(ticket):
                return Refusal.TENANT_QUEUE_FULL
            if self._queued >= self.limits.total_queue and not self._can_start_now(ticket):
                return Refusal.QUEUE_FULL
            if queue is None:
                queue = self._queues[tenant] = deque()
            queue.append(ticket)
            self._queued += 1
            self._cond.notify()
        return ticket

    def withdraw(self, ticket: Ticket[T]) -> bool:
        """Take a call that has not started out of its queue and answer it with `not_started`.
        False if it already started (or finished): the caller keeps waiting for its answer."""
        with self._cond:
            if ticket.state is not _State.QUEUED:
                return False
            self._remove_locked(ticket)
        ticket.future.set_result(self._not_started())
        return True

    def queue_depths(self) -> dict[str, int]:
        """Calls waiting per tenant (tenants with none are absent)."""
        with self._cond:
            return {tenant: len(q) for tenant, q in self._queues.items() if q}

    def running(self) -> dict[str, int]:
        """Calls running per tenant (tenants with none are absent)."""
        with self._cond:
            return {tenant: n for tenant, n in self._running_tenant.items() if n}

    def close(self, timeout_s: float | None = None) -> None:
        """Answer every waiting call with `not_started`, let running ones finish, stop the threads."""
        with self._cond:
            self._closed = True
            waiting = [t for q in self._queues.values() for t in q]
            for t in waiting:
                t.state = _State.FINISHED
            self._queues.clear()
            self._queued = 0
            self._cond.notify_all()
        for t in waiting:
            t.future.set_result(self._not_started())
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout_s)

    # --- workers ----------------------------------------------------------------------

    def _can_start_now(self, ticket: Ticket[T]) -> bool:
        """An idle worker exists and the call is within its caps: it does not really wait."""
        busy = sum(self._running_tenant.values())
        return (busy + self._queued < self.limits.threads
                and self._running_tenant.get(ticket.tenant, 0) < self.limits.tenant_cap
                and self._running_install.get((ticket.tenant, ticket.install), 0) < self.limits.install_cap)

    def _remove_locked(self, ticket: Ticket[T]) -> None:
        queue = self._queues.get(ticket.tenant)
        if queue is not None:
            queue.remove(ticket)
            if not queue:
                del self._queues[ticket.tenant]
        self._queued -= 1
        ticket.state = _State.FINISHED

    def _next_locked(self, now: float, expired: list[Ticket[T]]) -> Ticket[T] | None:
        """The next call to start: the first tenant in round-robin order that is under its cap
        and has a call whose install is under its cap. Expired calls met on the way are
        removed into `expired` (answered by the caller, outside the lock)."""
        limits = self.limits
        for tenant in sorted(self._queues, key=lambda t: self._served.get(t, 0)):
            queue = self._queues[tenant]
            for ticket in [t for t in queue if t.admit_by <= now]:
                self._remove_locked(ticket)
                expired.append(ticket)
            if tenant not in self._queues:
                continue
            if self._running_tenant.get(tenant, 0) >= limits.tenant_cap:
                continue
            for ticket in queue:
                if self._running_install.get((tenant, ticket.install), 0) < limits.install_cap:
                    queue.remove(ticket)
                    self._queued -= 1
                    if not queue:
                        del self._queues[tenant]
                    self._serial += 1
                    self._served[tenant] = self._serial  # served: to the back of the round
                    return ticket
        return None

    def _work(self) -> None:
        while True:
            expired: list[Ticket[T]] = []
            with self._cond:
                ticket = self._next_locked(time.monotonic(), expired)
                while ticket is None and not self._closed and not expired:
                    self._cond.wait(timeout=self._wait_s(time.monotonic()))
                    ticket = self._next_locked(time.monotonic(), expired)
                if ticket is not None:
                    ticket.state = _State.RUNNING
                    self._running_tenant[ticket.tenant] = self._running_tenant.get(ticket.tenant, 0) + 1
                    key = (ticket.tenant, ticket.install)
                    self._running_install[key] = self._running_install.get(key, 0) + 1
                closed = self._closed
            for late in expired:
                late.future.set_result(self._not_started())
            if ticket is None:
                if closed:
                    return
                continue
            try:
                ticket.future.set_result(ticket.work(time.monotonic()))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                ticket.future.set_exception(exc)
            finally:
                self._finished(ticket)

    def _wait_s(self, now: float) -> float | None:
        """Sleep until the earliest queued admission deadline (to answer it promptly even
        when no worker frees up), or until notified."""
        deadlines = [t.admit_by for q in self._queues.values() for t in q]
        return max(0.0, min(deadlines) - now) + 0.001 if deadlines else None

    def _finished(self, ticket: Ticket[T]) -> None:
        with self._cond:
            ticket.state = _State.FINISHED
            key = (ticket.tenant, ticket.install)
            self._running_tenant[ticket.tenant] -= 1
            if not self._running_tenant[ticket.tenant]:
                del self._running_tenant[ticket.tenant]
                if ticket.tenant not in self._queues:
                    self._served.pop(ticket.tenant, None)  # idle again: forget it
            self._running_install[key] -= 1
            if not self._running_install[key]:
                del self._running_install[key]
            # Caps changed: a call another idle worker skipped may be startable now.
            self._cond.notify()
