"""alga:extension/invoicing — manual invoices, through a provider."""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance, Record

from runner.contract.capabilities import INVOICE_MANUAL_CREATE
from runner.host._provider_call import result_error
from runner.host.state import current
from runner.host.values import field, from_record, rec, to_record
from runner.providers import CreateManualInvoiceInput, ManualInvoiceItemInput

INTERFACE = "alga:extension/invoicing"


def _fail(message: str) -> Record:
    return rec(success=False, invoice_id=None, invoice_number=None, status=None, subtotal=None,
               tax=None, total=None, error=message, field_errors=None)


def create_manual_invoice(_store: Any, input: Record) -> Record:
    state = current()
    if not state.has(INVOICE_MANUAL_CREATE):
        return _fail("Permission denied: cap:invoice.manual.create not granted")
    if not state.context.install_id:
        return _fail("Permission denied: install_id missing")
    provider = state.providers.invoicing
    if provider is None:
        return _fail("Permission denied: invoicing is not available on this host")
    data = CreateManualInvoiceInput(
        client_id=field(input, "client_id"),
        items=[from_record(i, ManualInvoiceItemInput) for i in field(input, "items")],
        invoice_date=field(input, "invoice_date"),
        due_date=field(input, "due_date"),
        po_number=field(input, "po_number"),
    )
    return to_record(result_error(lambda: provider.create_manual_invoice(state.provider_context(), data), _fail))


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("create-manual-invoice", create_manual_invoice)
