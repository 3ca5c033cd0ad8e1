"""alga:extension/ui-proxy — calls into the host product, through a provider."""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance

from runner.contract.capabilities import UI_PROXY
from runner.host._provider_call import call_provider
from runner.host.state import current

INTERFACE = "alga:extension/ui-proxy"
CODES = frozenset({"route-not-found", "denied", "bad-request", "internal"})


def call_route(_store: Any, route: str, payload: bytes | None) -> bytes | str:
    state = current()
    provider = state.providers.ui_proxy
    if not state.has(UI_PROXY) or provider is None:
        return "denied"
    segments = route.split("?", 1)[0].split("/")
    if not route.strip() or any(s in (".", "..") for s in segments):
        return "bad-request"
    ctx = state.provider_context()
    result = call_provider(lambda: provider.call_route(ctx, route, payload), CODES)
    if isinstance(result, str):
        return result
    return bytes(result)


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("call-route", call_route)
