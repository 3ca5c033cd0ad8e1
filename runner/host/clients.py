"""alga:extension/clients — read-only client directory, through a provider."""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance, Record

from runner.contract.capabilities import CLIENT_READ
from runner.host._provider_call import call_provider
from runner.host.state import current
from runner.host.values import from_record, to_record
from runner.providers import ClientsListInput

INTERFACE = "alga:extension/clients"
CODES = frozenset({"not-allowed", "invalid-input", "internal"})
MAX_PAGE_SIZE = 100


def list_clients(_store: Any, input: Record) -> Record | str:
    state = current()
    provider = state.providers.clients
    if not state.has(CLIENT_READ) or not state.context.install_id or provider is None:
        return "not-allowed"
    data = from_record(input, ClientsListInput)
    data.page = 1 if data.page is None else data.page
    data.page_size = 25 if data.page_size is None else data.page_size
    if data.page < 1 or not 1 <= data.page_size <= MAX_PAGE_SIZE:
        return "invalid-input"
    out = call_provider(lambda: provider.list_clients(state.provider_context(), data), CODES)
    return out if isinstance(out, str) else to_record(out)


def get_client(_store: Any, client_id: str) -> Record | None | str:
    state = current()
    provider = state.providers.clients
    if not state.has(CLIENT_READ) or not state.context.install_id or provider is None:
        return "not-allowed"
    if not client_id:
        return "invalid-input"
    out = call_provider(lambda: provider.get_client(state.provider_context(), client_id), CODES)
    return out if isinstance(out, str) else to_record(out)


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("list-clients", list_clients)
        inst.add_func("get-client", get_client)
