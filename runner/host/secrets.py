"""alga:extension/secrets — the install's sealed secrets, opened by the runner.

`result<string, secret-error>` maps ok and err to `str`, so wasmtime-py needs the tagged
`Variant` form here (every other result in this world is untagged).
"""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance, Variant

from runner.contract.capabilities import SECRETS_GET
from runner.host.state import current
from runner.host.values import err, ok

INTERFACE = "alga:extension/secrets"


def get(_store: Any, key: str) -> Variant:
    state = current()
    if not state.has(SECRETS_GET):
        return err("denied")
    if state.secrets.expired:
        return err("expired")
    value = state.secrets.values.get(key)
    return ok(value) if value is not None else err("missing")


def list_keys(_store: Any) -> list[str]:
    state = current()
    if not state.has(SECRETS_GET) or state.secrets.expired:
        return []
    return sorted(state.secrets.values)


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("get", get)
        inst.add_func("list-keys", list_keys)
