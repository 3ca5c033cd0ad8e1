"""extgate:extension/config — the install's config map (optional extgate interface).

Upstream ships `context.config` to the runner but exposes it through no WIT function.
This separate interface gives guests read access without changing the upstream world:
components that do not import it are unaffected. Always granted, like the context.
"""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance

from runner.host.state import current

INTERFACE = "extgate:extension/config"


def get(_store: Any, key: str) -> str | None:
    for k, v in current().config_items:
        if k == key:
            return v
    return None


def list_all(_store: Any) -> list[tuple[str, str]]:
    return list(current().config_items)


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("get", get)
        inst.add_func("list-all", list_all)
