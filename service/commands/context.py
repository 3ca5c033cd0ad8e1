"""Who runs a command, and what it runs against."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from audit.records import Actor, AuditEvent
from service.db import Database
from service.errors import ServiceUnavailable

if TYPE_CHECKING:
    from audit.log import AuditLog
    from service.container import ServiceContainer

log = logging.getLogger("extgate.commands")


@dataclass(frozen=True)
class Caller:
    """The actor a command's audit record names: a token's user (with the client's
    address) from the API, `cli:<os account>@<host>` from the command line."""

    actor: Actor
    request_id: str | None = None
    policy_ids: tuple[str, ...] = ()  # the policies that allowed it (API calls)
    policy_revision: str | None = None


@dataclass(frozen=True)
class CommandContext:
    """The stores a command may change, and the audit log its record goes to."""

    container: ServiceContainer

    @property
    def db(self) -> Database:
        return self.container.db

    @property
    def audit(self) -> AuditLog | None:
        audit: AuditLog | None = self.container.audit
        return audit

    def record_in(
        self,
        session: Session,
        caller: Caller,
        action: str,
        *,
        tenant_id: str | None,
        resource: str,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append the change's record inside `session`'s transaction: it commits with the
        change, or both roll back. Raises ServiceUnavailable `audit_unavailable`."""
        audit = self.audit
        if audit is None:
            raise ServiceUnavailable("the audit log is not configured; nothing was changed", code="audit_unavailable")
        event = AuditEvent(
            action=action,
            outcome="success",
            tenant_id=tenant_id,
            actor=caller.actor,
            resource=resource,
            policy_ids=caller.policy_ids,
            policy_revision=caller.policy_revision,
            request_id=caller.request_id,
            details=dict(details or {}),
        )
        session.flush()  # the change's statements first (their errors are theirs); the head lock last
        try:
            return audit.append_in(session.connection(), event)
        except Exception as exc:
            log.error("audit record for %s not written (%s): the change is rolled back", action, type(exc).__name__)
            raise ServiceUnavailable(
                "the audit log is unavailable, so nothing was changed; retry", code="audit_unavailable"
            ) from exc
