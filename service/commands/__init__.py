"""Use cases that change state: one function per change, shared by the HTTP API and the CLI.

Each command owns its validation, its transaction, its audit action (a name from
`audit.actions`) and the record's details. The change and its audit record commit in one
database transaction (`AuditLog.append_in`), so either both exist or neither does: an
audit log that cannot take the record answers 503 `audit_unavailable` and the state is
exactly as before. Routers and CLI verbs authenticate, authorize and translate; they never
write state or records themselves.

Policy activation (`service.policy.service`) follows the same rule with the policy store:
its record is durable before the switch, or nothing is switched. Debug sessions
(`service.debug.sessions`) record their start before the stream opens.
"""

from service.commands.context import Caller, CommandContext

__all__ = ["Caller", "CommandContext"]
