"""Cedar entities for a request, built from the principal and the registry's facts."""

from __future__ import annotations

from typing import Any

from service.auth.principal import KNOWN_ROLES, Principal
from service.policy.model import (
    INSTALL_TYPE,
    PLATFORM_ID,
    PLATFORM_TYPE,
    ROLE_TYPE,
    TENANT_TYPE,
    USER_TYPE,
    InstallFacts,
)

PrincipalKey = tuple[str, str, frozenset[str], str]


def principal_key(principal: Principal) -> PrincipalKey:
    return (principal.subject, principal.tenant, principal.roles, principal.user_type)


def _ref(etype: str, eid: str) -> dict[str, Any]:
    return {"__entity": {"type": etype, "id": eid}}


def tenant_entity(tenant: str) -> dict[str, Any]:
    return {"uid": {"type": TENANT_TYPE, "id": tenant}, "attrs": {}, "parents": []}


def platform_entity() -> dict[str, Any]:
    return {"uid": {"type": PLATFORM_TYPE, "id": PLATFORM_ID}, "attrs": {}, "parents": []}


def principal_entities(principal: Principal) -> list[dict[str, Any]]:
    """The user (its roles as parents), its roles and its tenant.

    Only KNOWN_ROLES become Role entities (the schema declares Role as an enumeration of
    exactly those): any other role is dropped, as token parsing does. Dropping one cannot
    widen access, since no valid policy can name it. A bundle whose enumeration lacks a
    known role makes these entities fail its schema: every decision is then a deny with an
    error (and the reload smoke test rejects such a bundle)."""
    roles = sorted(principal.roles & KNOWN_ROLES)
    user = {
        "uid": {"type": USER_TYPE, "id": principal.subject},
        "attrs": {"tenant": _ref(TENANT_TYPE, principal.tenant), "userType": principal.user_type},
        "parents": [{"type": ROLE_TYPE, "id": r} for r in roles],
    }
    role_entities = [{"uid": {"type": ROLE_TYPE, "id": r}, "attrs": {}, "parents": []} for r in roles]
    return [user, *role_entities, tenant_entity(principal.tenant)]


def install_entity(install: InstallFacts) -> dict[str, Any]:
    return {
        "uid": {"type": INSTALL_TYPE, "id": install.install_id},
        "attrs": {
            "tenant": _ref(TENANT_TYPE, install.tenant),
            "extension": install.extension_id,
            "slug": install.slug,
            "capabilities": sorted(install.capabilities),
            "enabled": install.enabled,
        },
        "parents": [],
    }


def request_entities(
    principal: Principal, *, install: InstallFacts | None = None, tenant: str | None = None
) -> list[dict[str, Any]]:
    """Everything one decision needs; each entity once."""
    entities = principal_entities(principal)
    seen = {principal.tenant}
    if install is not None:
        entities.append(install_entity(install))
        if install.tenant not in seen:
            entities.append(tenant_entity(install.tenant))
            seen.add(install.tenant)
    if tenant is not None and tenant not in seen:
        entities.append(tenant_entity(tenant))
    entities.append(platform_entity())
    return entities
