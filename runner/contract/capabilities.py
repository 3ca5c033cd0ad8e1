"""Capability names and the effective-grant rule.

extgate closes an upstream gap: the runner receives the *intersection* of what the
installed version declares and what the install granted (plus the always-granted set),
never their union, so a manifest cannot widen its own permissions.
"""

from __future__ import annotations

from collections.abc import Iterable

CONTEXT_READ = "cap:context.read"
SECRETS_GET = "cap:secrets.get"
HTTP_FETCH = "cap:http.fetch"
STORAGE_KV = "cap:storage.kv"
LOG_EMIT = "cap:log.emit"
UI_PROXY = "cap:ui.proxy"
USER_READ = "cap:user.read"
SCHEDULER_MANAGE = "cap:scheduler.manage"
INVOICE_MANUAL_CREATE = "cap:invoice.manual.create"
CLIENT_READ = "cap:client.read"
SERVICE_READ = "cap:service.read"
DEBUG_LOGS = "cap:debug.logs"

KNOWN_CAPABILITIES: frozenset[str] = frozenset(
    {
        CONTEXT_READ,
        SECRETS_GET,
        HTTP_FETCH,
        STORAGE_KV,
        LOG_EMIT,
        UI_PROXY,
        USER_READ,
        SCHEDULER_MANAGE,
        INVOICE_MANUAL_CREATE,
        CLIENT_READ,
        SERVICE_READ,
        DEBUG_LOGS,
    }
)

ALWAYS_GRANTED: frozenset[str] = frozenset({CONTEXT_READ, LOG_EMIT, USER_READ})


class UnknownCapabilityError(ValueError):
    def __init__(self, unknown: Iterable[str]) -> None:
        self.unknown = sorted(set(unknown))
        super().__init__("unknown capabilities: " + ", ".join(self.unknown))


def normalize_capabilities(values: Iterable[str]) -> list[str]:
    """Trim and lowercase, drop duplicates, and reject any name outside the known set."""
    cleaned = {str(v).strip().lower() for v in values}
    cleaned.discard("")
    unknown = cleaned - KNOWN_CAPABILITIES
    if unknown:
        raise UnknownCapabilityError(unknown)
    return sorted(cleaned)


def effective_grant(declared: Iterable[str], granted: Iterable[str]) -> list[str]:
    """What the runner may expose: declared ∩ granted, plus the always-granted set."""
    return sorted((set(declared) & set(granted)) | ALWAYS_GRANTED)
