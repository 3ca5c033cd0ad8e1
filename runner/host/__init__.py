"""Host implementations of the guest's imports, one module per interface."""

from __future__ import annotations

from wasmtime import Engine
from wasmtime.component import Linker

from runner.host import (
    bulk_http,
    bulk_storage,
    clients,
    config,
    context,
    http,
    invoicing,
    logging,
    scheduler,
    secrets,
    services,
    storage,
    ui_proxy,
    user,
)

_MODULES = (context, secrets, config, http, storage, logging, user, ui_proxy, scheduler, invoicing,
            clients, services, bulk_storage, bulk_http)

# Every interface name the host serves (the publish-time import allowlist uses this).
ALGA_INTERFACES = frozenset(
    {"alga:extension/types", *(m.INTERFACE for m in _MODULES if m.INTERFACE.startswith("alga:")),
     user.INTERFACE_V2}
)
EXTGATE_INTERFACES = frozenset(m.INTERFACE for m in _MODULES if m.INTERFACE.startswith("extgate:"))


def build_linker(engine: Engine) -> Linker:
    """WASI p2 (no preopens/env/network are configured per store) + every host interface.

    Built once per engine. `wasi:http` is deliberately *not* linked: it would give guests
    unchecked network access.
    """
    linker = Linker(engine)
    linker.add_wasip2()
    with linker.root() as root:
        for module in _MODULES:
            module.register(root)
    return linker
