"""alga:extension/context — the execute context (always granted)."""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance, Record

from runner.contract.capabilities import CONTEXT_READ
from runner.host.state import current
from runner.host.values import rec

INTERFACE = "alga:extension/context"


def get_context(_store: Any) -> Record:
    state = current()
    ctx = state.context
    if not state.has(CONTEXT_READ):
        # The WIT has no error case; answer an empty context rather than trap. (Unreachable
        # through the runner, which always grants cap:context.read.)
        return rec(request_id=None, tenant_id="", extension_id="", install_id=None, version_id=None)
    return rec(
        request_id=state.request_id,
        tenant_id=ctx.tenant_id,
        extension_id=ctx.extension_id,
        install_id=ctx.install_id,
        version_id=ctx.version_id,
    )


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("get-context", get_context)
