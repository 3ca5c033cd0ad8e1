"""alga:extension/logging — guest log calls become debug events."""

from __future__ import annotations

from wasmtime.component import LinkerInstance

from runner.contract.capabilities import LOG_EMIT
from runner.host.state import current

INTERFACE = "alga:extension/logging"


def _log(level: str, message: str) -> None:
    state = current()
    if state.has(LOG_EMIT):  # without the capability the call is a no-op, as upstream
        state.emit("log", level, message)


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("log-info", lambda _s, m: _log("info", m))
        inst.add_func("log-warn", lambda _s, m: _log("warn", m))
        inst.add_func("log-error", lambda _s, m: _log("error", m))
