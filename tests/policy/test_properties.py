"""Property tests over generated tenants, users, roles and installs.

* no request ever reaches another tenant's install API, and tenant-changing admin
  actions never cross tenants; the only cross-tenant allows are the ones the policies
  name (platform administrators: oversight reads, and debug viewing with a justification);
* a user without editor/admin never writes, never changes installs, config or secrets.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.auth.principal import KNOWN_ROLES, Principal
from service.authz import AdminAction
from service.policy.bundle import compile_bundle
from service.policy.engine import PolicyEngine
from service.policy.model import DebugCounts, EndpointMatch, InstallFacts
from service.policy.source import BundleSource
from tests.policy.conftest import POLICY_DIR

ENGINE = PolicyEngine(compile_bundle(BundleSource.from_dir(POLICY_DIR)))

tenants = st.sampled_from(["acme", "globex", "initech", "platform", "t-1"])
roles = st.frozensets(st.sampled_from(sorted(KNOWN_ROLES | {"auditor", "guest"})), max_size=4)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get"])
caps = st.frozensets(st.sampled_from(["cap:debug.logs", "cap:http.fetch", "cap:secrets.get"]))
counts = st.builds(DebugCounts, st.integers(0, 10), st.integers(0, 10), st.integers(0, 10), st.integers(0, 10))
principals = st.builds(
    Principal,
    subject=st.text(min_size=1, max_size=12),
    tenant=tenants,
    roles=roles,
    user_type=st.sampled_from(["internal", "client"]),
)
installs = st.builds(
    InstallFacts,
    tenant=tenants,
    install_id=st.text(min_size=1, max_size=12),
    extension_id=st.just("ext"),
    slug=st.just("pub.ext"),
    capabilities=caps,
    enabled=st.booleans(),
)
endpoints = st.builds(EndpointMatch, st.booleans(), st.sampled_from([None, "/items", "/items/:id"]))
justifications = st.one_of(st.none(), st.text(max_size=40))
TENANT_WRITES = [AdminAction.INSTALL_MANAGE, AdminAction.CONFIG_WRITE, AdminAction.SECRETS_WRITE]
TENANT_SCOPED = [*TENANT_WRITES, AdminAction.INSTALL_READ, AdminAction.AUDIT_READ, AdminAction.AUDIT_EXPORT]


@settings(max_examples=300, deadline=None)
@given(principals, installs, methods, endpoints)
def test_no_cross_tenant_invoke(principal: Principal, install: InstallFacts, method: str, ep: EndpointMatch) -> None:
    decision = ENGINE.decide_invoke(principal, install, method, ep)
    if principal.tenant != install.tenant:
        assert not decision.allowed
        assert "tenancy.install-same-tenant" in decision.policy_ids
    if decision.allowed:
        assert ep.declared and install.enabled and principal.tenant == install.tenant


@settings(max_examples=300, deadline=None)
@given(principals, installs, counts, justifications)
def test_cross_tenant_debug_only_for_justified_platform_admins(
    principal: Principal, install: InstallFacts, c: DebugCounts, why: str | None
) -> None:
    decision = ENGINE.decide_debug_view(principal, install, c, why)
    if decision.allowed:
        assert "cap:debug.logs" in install.capabilities
        assert c.tenant_sessions < c.tenant_limit and c.stream_sessions < c.stream_limit
        if principal.tenant != install.tenant:
            assert "platform-admin" in principal.roles and len((why or "").strip()) >= 10
        else:
            assert {"operator", "platform-admin"} & principal.roles


@settings(max_examples=300, deadline=None)
@given(principals, tenants, st.sampled_from(TENANT_SCOPED))
def test_admin_never_changes_another_tenant(principal: Principal, tenant: str, action: AdminAction) -> None:
    decision = ENGINE.decide_admin(principal, action.value, tenant_id=tenant)
    if decision.allowed and principal.tenant != tenant:
        assert action not in TENANT_WRITES
        assert "platform-admin" in principal.roles


@settings(max_examples=300, deadline=None)
@given(principals, installs, methods, endpoints, st.sampled_from(TENANT_WRITES))
def test_viewers_never_write(
    principal: Principal, install: InstallFacts, method: str, ep: EndpointMatch, admin_write: AdminAction
) -> None:
    viewer = Principal(principal.subject, install.tenant, principal.roles - {"editor", "admin"})
    if method.upper() not in ("GET", "HEAD"):
        assert not ENGINE.decide_invoke(viewer, install, method, ep).allowed
    assert not ENGINE.decide_admin(viewer, admin_write.value, tenant_id=install.tenant).allowed
