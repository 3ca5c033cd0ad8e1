"""alga:extension/scheduler — install schedules, through a provider."""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance, Record

from runner.contract.capabilities import SCHEDULER_MANAGE
from runner.host._provider_call import call_provider, result_error
from runner.host.state import CallState, current
from runner.host.values import from_record, rec, to_record
from runner.providers import CreateScheduleInput, SchedulerProvider, UpdateScheduleInput

INTERFACE = "alga:extension/scheduler"
CODES = frozenset({"not-found", "validation-failed", "quota-exceeded", "denied", "internal"})
DENIED_MESSAGE = "Permission denied: cap:scheduler.manage not granted"


def _provider(state: CallState) -> SchedulerProvider | None:
    if not state.has(SCHEDULER_MANAGE) or not state.context.install_id:
        return None
    return state.providers.scheduler


def list_schedules(_store: Any) -> list[Record] | str:
    state = current()
    p = _provider(state)
    if p is None:
        return "denied"
    out = call_provider(lambda: p.list_schedules(state.provider_context()), CODES)
    return out if isinstance(out, str) else to_record(list(out))


def get_schedule(_store: Any, schedule_id: str) -> Record | None | str:
    state = current()
    p = _provider(state)
    if p is None:
        return "denied"
    out = call_provider(lambda: p.get_schedule(state.provider_context(), schedule_id), CODES)
    return out if isinstance(out, str) else to_record(out)


def get_endpoints(_store: Any) -> list[Record] | str:
    state = current()
    p = _provider(state)
    if p is None:
        return "denied"
    out = call_provider(lambda: p.get_endpoints(state.provider_context()), CODES)
    return out if isinstance(out, str) else to_record(list(out))


def create_schedule(_store: Any, input: Record) -> Record:
    state = current()
    p = _provider(state)
    fail = lambda msg: rec(success=False, schedule_id=None, error=msg, field_errors=None)  # noqa: E731
    if p is None:
        return fail(DENIED_MESSAGE)
    data = from_record(input, CreateScheduleInput)
    return to_record(result_error(lambda: p.create_schedule(state.provider_context(), data), fail))


def update_schedule(_store: Any, schedule_id: str, input: Record) -> Record:
    state = current()
    p = _provider(state)
    fail = lambda msg: rec(success=False, error=msg, field_errors=None)  # noqa: E731
    if p is None:
        return fail(DENIED_MESSAGE)
    data = from_record(input, UpdateScheduleInput)
    return to_record(result_error(lambda: p.update_schedule(state.provider_context(), schedule_id, data), fail))


def delete_schedule(_store: Any, schedule_id: str) -> Record:
    state = current()
    p = _provider(state)
    fail = lambda msg: rec(success=False, error=msg)  # noqa: E731
    if p is None:
        return fail(DENIED_MESSAGE)
    return to_record(result_error(lambda: p.delete_schedule(state.provider_context(), schedule_id), fail))


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("list-schedules", list_schedules)
        inst.add_func("get-schedule", get_schedule)
        inst.add_func("create-schedule", create_schedule)
        inst.add_func("update-schedule", update_schedule)
        inst.add_func("delete-schedule", delete_schedule)
        inst.add_func("get-endpoints", get_endpoints)
