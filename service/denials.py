"""Recording refused requests without letting anyone flood a log.

Denials are recorded in the log of the **caller's own tenant** (platform admins: the
platform's log, tenant null), never in the tenant a URL names: the record says which tenant
was targeted (`details.target_tenant`). So an acme user probing globex grows acme's log, and
globex's admins see only what their own users did and what platform admins did to them.

Per principal and per window (`window_s`, default 60 s), the first `per_window` denials
(default 10) are recorded one by one, durably before the refusal is answered. Further
denials in that window are counted, not recorded one by one: when the window ends, one
`audit.denials_summarized` record carries their exact count, the first and last time, up to
`SAMPLES` request ids and the counts per action and target. A flood therefore produces
O(windows) records, not O(requests).

Crash window: the counts of a window still open live in this process's memory. A process
that dies loses at most the summary of the current window (never the first `per_window`
records, which are durable). Each process summarises its own denials, so with several
replicas the summaries of one window add up to the exact total.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from audit import actions
from audit.records import Actor, AuditEvent

log = logging.getLogger("extgate.audit")

SUMMARY_ACTION = actions.DENIALS_SUMMARIZED
SAMPLES = 5
MAX_COUNTED_KEYS = 20  # per-action / per-target counts kept per summary ("other" beyond)
DEFAULT_PER_WINDOW = 10
DEFAULT_WINDOW_S = 60.0


def log_tenant(principal_tenant: str, is_platform: bool) -> str | None:
    """The log a principal's denials belong to: its tenant's, or the platform's (None)."""
    return None if is_platform else principal_tenant


@dataclass
class _Window:
    index: int
    actor: Actor
    tenant: str | None
    seen: int = 0
    suppressed: int = 0
    first_us: int = 0
    last_us: int = 0
    samples: list[str] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)


def _bounded(counts: Counter[str]) -> list[dict[str, Any]]:
    """The most frequent values with their counts (as items: values need not be valid keys),
    the rest as one `{"other": true}` item, so the counts always add up."""
    top = counts.most_common(MAX_COUNTED_KEYS)
    out: list[dict[str, Any]] = [{"value": k[:256], "count": v} for k, v in top]
    other = sum(counts.values()) - sum(v for _, v in top)
    if other:
        out.append({"other": True, "count": other})
    return out


class DenialRecorder:
    """One per process; thread-safe. `record` is called by every refusal path."""

    def __init__(
        self,
        audit: Any,
        *,
        per_window: int = DEFAULT_PER_WINDOW,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.time,
        append_timeout_s: float = 10.0,
    ) -> None:
        self.audit = audit
        self.per_window = per_window
        self.window_s = window_s
        self.clock = clock
        self.append_timeout_s = append_timeout_s
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    # -- recording ------------------------------------------------------------------
    def admit(self, principal_key: str, event: AuditEvent, *, target: str | None = None) -> AuditEvent | None:
        """Count one denial; return the event to record individually, or None when it is
        summarised. `event.tenant_id` must already be the principal's log."""
        now = self.clock()
        index = int(now // self.window_s)
        due: list[_Window] = []
        with self._lock:
            win = self._windows.get(principal_key)
            if win is None or win.index != index:
                if win is not None and win.suppressed:
                    due.append(win)
                win = self._windows[principal_key] = _Window(index, event.actor or Actor.system("unknown"),
                                                             event.tenant_id)
            win.seen += 1
            if win.seen <= self.per_window:
                chosen: AuditEvent | None = event
            else:
                ts = int(now * 1_000_000)
                if not win.suppressed:
                    win.first_us = ts
                win.suppressed += 1
                win.last_us = ts
                if event.request_id and len(win.samples) < SAMPLES:
                    win.samples.append(event.request_id)
                win.actions[event.action] += 1
                win.targets[target or "-"] += 1
                chosen = None
        for old in due:
            self._write_summary(old)
        return chosen

    def record(self, principal_key: str, event: AuditEvent, *, target: str | None = None) -> None:
        """Count one denial and, within the first `per_window`, write it durably (blocking)."""
        chosen = self.admit(principal_key, event, target=target)
        if chosen is None or self.audit is None:
            return
        try:
            self.audit.append(chosen, timeout=self.append_timeout_s)
        except Exception as exc:  # noqa: BLE001 - the request is refused either way; say so loudly
            log.error("denial record for request %s not written: %s", event.request_id, type(exc).__name__)

    async def record_async(self, principal_key: str, event: AuditEvent, *, target: str | None = None) -> None:
        chosen = self.admit(principal_key, event, target=target)
        if chosen is None or self.audit is None:
            return
        try:
            await self.audit.append_async(chosen)
        except Exception as exc:  # noqa: BLE001
            log.error("denial record for request %s not written: %s", event.request_id, type(exc).__name__)

    # -- summaries ------------------------------------------------------------------
    def _summary(self, win: _Window) -> AuditEvent:
        start = win.index * self.window_s
        return AuditEvent(
            action=SUMMARY_ACTION,
            outcome="deny",
            tenant_id=win.tenant,
            actor=win.actor,
            resource=None,
            details={
                "count": win.suppressed,
                "recorded_individually": self.per_window,
                "window_start_us": int(start * 1_000_000),
                "window_end_us": int((start + self.window_s) * 1_000_000),
                "first_us": win.first_us,
                "last_us": win.last_us,
                "sample_request_ids": list(win.samples),
                "actions": _bounded(win.actions),
                "targets": _bounded(win.targets),
            },
        )

    def _write_summary(self, win: _Window) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(self._summary(win), timeout=self.append_timeout_s)
        except Exception as exc:  # noqa: BLE001
            log.error("denial summary (%d denials) not written: %s", win.suppressed, type(exc).__name__)

    def flush(self, *, everything: bool = False) -> int:
        """Write the summaries of windows that have ended (all of them with `everything`)."""
        index = int(self.clock() // self.window_s)
        with self._lock:
            done = [k for k, w in self._windows.items() if everything or w.index < index]
            wins = [self._windows.pop(k) for k in done]
        due = [w for w in wins if w.suppressed]
        for win in due:
            self._write_summary(win)
        return len(due)

    def start(self) -> None:
        """Flush ended windows in the background (a quarter window apart)."""
        if self._flusher is not None:
            return

        def loop() -> None:
            while not self._stop.wait(max(0.05, self.window_s / 4)):
                try:
                    self.flush()
                except Exception:  # noqa: BLE001
                    log.exception("denial summary flush failed")

        self._flusher = threading.Thread(target=loop, name="denial-summaries", daemon=True)
        self._flusher.start()

    def close(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
            self._flusher = None
        self.flush(everything=True)


def principal_key(subject: str, tenant: str) -> str:
    return f"{tenant}\x00{subject}"


def retarget(event: AuditEvent, log_tenant_id: str | None, target_tenant: str | None) -> AuditEvent:
    """The event in the caller's log, naming the tenant it targeted."""
    details = dict(event.details)
    if target_tenant is not None and target_tenant != log_tenant_id:
        details["target_tenant"] = target_tenant
    return replace(event, tenant_id=log_tenant_id, details=details)
