"""Per-request state for host functions.

Host functions run on the thread that called the guest, so a ContextVar carries the
request's state into them without any global lookup by tenant. The state is created for
one request and dropped with its Store; nothing in it outlives the request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.contract.execute import ExecuteContext, UserInfo
from runner.providers import ProviderContext, Providers

if TYPE_CHECKING:
    import httpx

    from runner.settings import RunnerSettings
    from runner.storage.base import KVStore

EmitFn = Callable[[str, str, str], None]  # (stream, level, message)


@dataclass
class SecretsView:
    """Opened secret values for this request, or why there are none."""

    values: dict[str, str] = field(default_factory=dict)
    expired: bool = False


@dataclass
class CallState:
    context: ExecuteContext
    request_id: str
    capabilities: frozenset[str]
    secrets: SecretsView
    config_items: list[tuple[str, str]]
    user: UserInfo | None
    egress_hosts: tuple[str, ...]
    deadline: float
    settings: RunnerSettings
    kv: KVStore | None
    providers: Providers
    http_client: httpx.Client
    emit: EmitFn

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def provider_context(self) -> ProviderContext:
        return ProviderContext(
            tenant_id=self.context.tenant_id,
            extension_id=self.context.extension_id,
            install_id=self.context.install_id,
            version_id=self.context.version_id,
            request_id=self.request_id,
            user_id=self.user.user_id if self.user else None,
            user_type=self.user.user_type if self.user else None,
            deadline=self.deadline,
        )


CURRENT: ContextVar[CallState] = ContextVar("extgate_call_state")


def current() -> CallState:
    """The running request's state. A missing state means a host call outside a request:
    raising traps the guest, which is the only safe answer."""
    return CURRENT.get()
