"""alga:extension/services — read-only service catalogue, through a provider."""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance, Record

from runner.contract.capabilities import SERVICE_READ
from runner.host._provider_call import call_provider
from runner.host.state import current
from runner.host.values import from_record, to_record
from runner.providers import ServicesListInput

INTERFACE = "alga:extension/services"
CODES = frozenset({"not-allowed", "invalid-input", "internal"})
MAX_PAGE_SIZE = 100
ITEM_KINDS = frozenset({"service", "product"})
BILLING_METHODS = frozenset({"fixed", "hourly", "usage"})


def list_services(_store: Any, input: Record) -> Record | str:
    state = current()
    provider = state.providers.services
    if not state.has(SERVICE_READ) or not state.context.install_id or provider is None:
        return "not-allowed"
    data = from_record(input, ServicesListInput)
    data.page = 1 if data.page is None else data.page
    data.page_size = 25 if data.page_size is None else data.page_size
    if data.page < 1 or not 1 <= data.page_size <= MAX_PAGE_SIZE:
        return "invalid-input"
    out = call_provider(lambda: provider.list_services(state.provider_context(), data), CODES)
    if isinstance(out, str):
        return out
    # An unknown enum value from the provider cannot be lowered; answer internal instead.
    if any(i.item_kind not in ITEM_KINDS or i.billing_method not in BILLING_METHODS for i in out.items):
        return "internal"
    return to_record(out)


def get_service(_store: Any, service_id: str) -> Record | None | str:
    state = current()
    provider = state.providers.services
    if not state.has(SERVICE_READ) or not state.context.install_id or provider is None:
        return "not-allowed"
    if not service_id:
        return "invalid-input"
    out = call_provider(lambda: provider.get_service(state.provider_context(), service_id), CODES)
    if isinstance(out, str) or out is None:
        return out
    if out.item_kind not in ITEM_KINDS or out.billing_method not in BILLING_METHODS:
        return "internal"
    return to_record(out)


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("list-services", list_services)
        inst.add_func("get-service", get_service)
