"""Pluggable providers for the PSA-domain host interfaces.

A host product (a PSA, a CRM…) implements whichever of these protocols it supports and
passes them to `Runner(providers=Providers(...))`. Without a provider, the corresponding
host interface answers `denied` / `not-allowed` — never a trap. Providers are called on
the worker thread running the guest, while the guest is blocked: they must return well
within `ctx.remaining_s()` (epoch interruption cannot stop host code).

Records are plain dataclasses mirroring the WIT records (snake_case fields, same order).
Raise `ProviderError(code)` with one of the interface's error names to answer an error;
any other exception is reported to the guest as `internal`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class ProviderError(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


@dataclass(frozen=True)
class ProviderContext:
    tenant_id: str
    extension_id: str
    install_id: str | None
    version_id: str | None
    request_id: str
    user_id: str | None
    user_type: str | None
    deadline: float  # time.monotonic() value

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


# --- scheduler ---------------------------------------------------------------------


@dataclass
class ScheduleInfo:
    id: str
    endpoint_path: str
    endpoint_method: str
    name: str | None
    cron: str
    timezone: str
    enabled: bool
    payload: str | None = None
    last_run_at: str | None = None
    last_run_status: str | None = None
    last_error: str | None = None
    created_at: str | None = None


@dataclass
class EndpointInfo:
    id: str
    method: str
    path: str
    handler: str
    schedulable: bool


@dataclass
class CreateScheduleInput:
    endpoint: str
    cron: str
    timezone: str | None
    enabled: bool | None
    name: str | None
    payload: str | None


@dataclass
class CreateScheduleResult:
    success: bool
    schedule_id: str | None = None
    error: str | None = None
    field_errors: str | None = None


@dataclass
class UpdateScheduleInput:
    endpoint: str | None
    cron: str | None
    timezone: str | None
    enabled: bool | None
    name: str | None
    payload: str | None


@dataclass
class UpdateScheduleResult:
    success: bool
    error: str | None = None
    field_errors: str | None = None


@dataclass
class DeleteScheduleResult:
    success: bool
    error: str | None = None


class SchedulerProvider(Protocol):
    def list_schedules(self, ctx: ProviderContext) -> list[ScheduleInfo]: ...
    def get_schedule(self, ctx: ProviderContext, schedule_id: str) -> ScheduleInfo | None: ...
    def create_schedule(self, ctx: ProviderContext, input: CreateScheduleInput) -> CreateScheduleResult: ...
    def update_schedule(
        self, ctx: ProviderContext, schedule_id: str, input: UpdateScheduleInput
    ) -> UpdateScheduleResult: ...
    def delete_schedule(self, ctx: ProviderContext, schedule_id: str) -> DeleteScheduleResult: ...
    def get_endpoints(self, ctx: ProviderContext) -> list[EndpointInfo]: ...


# --- invoicing ---------------------------------------------------------------------


@dataclass
class ManualInvoiceItemInput:
    service_id: str
    quantity: float
    description: str
    rate: float
    is_discount: bool | None = None
    discount_type: str | None = None  # "percentage" | "fixed"
    applies_to_item_id: str | None = None
    applies_to_service_id: str | None = None


@dataclass
class CreateManualInvoiceInput:
    client_id: str
    items: list[ManualInvoiceItemInput]
    invoice_date: str | None = None
    due_date: str | None = None
    po_number: str | None = None


@dataclass
class CreateManualInvoiceResult:
    success: bool
    invoice_id: str | None = None
    invoice_number: str | None = None
    status: str | None = None
    subtotal: float | None = None
    tax: float | None = None
    total: float | None = None
    error: str | None = None
    field_errors: str | None = None


class InvoicingProvider(Protocol):
    def create_manual_invoice(
        self, ctx: ProviderContext, input: CreateManualInvoiceInput
    ) -> CreateManualInvoiceResult: ...


# --- clients -----------------------------------------------------------------------


@dataclass
class ClientSummary:
    client_id: str
    client_name: str
    client_type: str | None = None
    is_inactive: bool = False
    default_currency_code: str | None = None
    account_manager_id: str | None = None
    account_manager_name: str | None = None
    billing_email: str | None = None


@dataclass
class ClientsListInput:
    search: str | None
    include_inactive: bool | None
    page: int | None
    page_size: int | None


@dataclass
class ClientsListResult:
    items: list[ClientSummary]
    total_count: int
    page: int
    page_size: int


class ClientsProvider(Protocol):
    def list_clients(self, ctx: ProviderContext, input: ClientsListInput) -> ClientsListResult: ...
    def get_client(self, ctx: ProviderContext, client_id: str) -> ClientSummary | None: ...


# --- services ----------------------------------------------------------------------


@dataclass
class ServiceSummary:
    service_id: str
    service_name: str
    item_kind: str  # "service" | "product"
    billing_method: str  # "fixed" | "hourly" | "usage"
    service_type_id: str | None = None
    service_type_name: str | None = None
    default_rate: float = 0.0
    unit_of_measure: str = ""
    is_active: bool = True
    sku: str | None = None


@dataclass
class ServicesListInput:
    search: str | None
    item_kind: str | None
    is_active: bool | None
    billing_method: str | None
    page: int | None
    page_size: int | None


@dataclass
class ServicesListResult:
    items: list[ServiceSummary]
    total_count: int
    page: int
    page_size: int


class ServicesProvider(Protocol):
    def list_services(self, ctx: ProviderContext, input: ServicesListInput) -> ServicesListResult: ...
    def get_service(self, ctx: ProviderContext, service_id: str) -> ServiceSummary | None: ...


# --- ui proxy ----------------------------------------------------------------------


class UiProxyProvider(Protocol):
    def call_route(self, ctx: ProviderContext, route: str, payload: bytes | None) -> bytes:
        """Raise ProviderError("route-not-found" | "denied" | "bad-request" | "internal")."""
        ...


@dataclass
class Providers:
    ui_proxy: UiProxyProvider | None = None
    scheduler: SchedulerProvider | None = None
    invoicing: InvoicingProvider | None = None
    clients: ClientsProvider | None = None
    services: ServicesProvider | None = None
    extra: dict[str, object] = field(default_factory=dict)
