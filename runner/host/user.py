"""alga:extension/user and user-v2 — the calling user, from the execute request."""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance, Record

from runner.contract.capabilities import USER_READ
from runner.host.state import current
from runner.host.values import rec

INTERFACE = "alga:extension/user"
INTERFACE_V2 = "alga:extension/user-v2"


def get_user(_store: Any) -> Record | str:
    state = current()
    if not state.has(USER_READ):
        return "not-allowed"
    u = state.user
    if u is None:
        return "not-available"
    return rec(tenant_id=state.context.tenant_id, client_name=u.client_name, user_id=u.user_id,
               user_email=u.user_email, user_name=u.user_name, user_type=u.user_type)


def get_user_v2(_store: Any) -> Record | str:
    state = current()
    if not state.has(USER_READ):
        return "not-allowed"
    u = state.user
    if u is None:
        return "not-available"
    return rec(tenant_id=state.context.tenant_id, client_name=u.client_name, user_id=u.user_id,
               user_email=u.user_email, user_name=u.user_name, user_type=u.user_type,
               client_id=u.client_id, additional_fields=sorted(u.additional_fields.items()))


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("get-user", get_user)
    with root.add_instance(INTERFACE_V2) as inst:
        inst.add_func("get-user", get_user_v2)
