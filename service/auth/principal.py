"""The authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PLATFORM_ADMIN = "platform-admin"
KNOWN_ROLES = frozenset({"viewer", "editor", "admin", "operator", PLATFORM_ADMIN})


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    roles: frozenset[str]
    user_type: str = "internal"
    name: str | None = None
    email: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_platform_admin(self) -> bool:
        return PLATFORM_ADMIN in self.roles

    def has_role(self, role: str) -> bool:
        return role in self.roles
