"""Policy decision latency: the service's decision vs raw cedarpy vs pycasbin, one run.

  * service: `PolicyService.decide_invoke` (slice lookup, cached schema-validated
    entities, one native Cedar call, Decision with reasons and revision), with the engine's
    decision memo off so every call evaluates; the remembered (memo hit) cost is printed
    beside it;
  * raw cedarpy: `cedarpy.is_authorized` with reused PolicySet/Entities/Schema handles on
    the same request, over the same slice and over the whole policy set;
  * pycasbin: an equivalent RBAC-with-domains model (role per tenant, read/write per role),
    with as many policy lines as the Cedar set has policies.
Reported for the shipped policies and for 200 policies. Numbers are p50/p99 in µs;
ratios are computed in this run. No assertions: run `make bench`.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cedarpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.auth.principal import Principal  # noqa: E402
from service.policy.engine import time_context  # noqa: E402
from service.policy.entities import request_entities  # noqa: E402
from service.policy.model import EndpointMatch, InstallFacts  # noqa: E402
from service.policy.service import PolicyService  # noqa: E402
from service.policy.source import BundleSource  # noqa: E402

ITERATIONS = 4000
VIEWER = Principal("bench-viewer", "acme", frozenset({"viewer"}))
INSTALL = InstallFacts("acme", "inst-0", "ext-0", "pub.ext", frozenset({"cap:debug.logs"}))
ENDPOINT = EndpointMatch(True, "/items/:id")


def measure(fns: dict[str, Callable[[], object]], n: int = ITERATIONS) -> dict[str, tuple[float, float]]:
    """p50/p99 in µs per function, interleaved call by call (rotating the order) so machine
    noise and cache effects hit all alike."""
    for _ in range(200):
        for fn in fns.values():
            fn()
    samples: dict[str, list[int]] = {name: [] for name in fns}
    gc.disable()
    try:
        items = list(fns.items())
        for i in range(n):
            for name, fn in items[i % len(items) :] + items[: i % len(items)]:
                t0 = time.perf_counter_ns()
                fn()
                samples[name].append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    out = {}
    for name, values in samples.items():
        values.sort()
        out[name] = (statistics.median(values) / 1000, values[int(len(values) * 0.99)] / 1000)
    return out


def extra_policies(count: int) -> str:
    """Policies of the shapes a gateway accumulates: resource-scoped, per-user, admin, unscoped."""
    out = []
    for i in range(count):
        kind = i % 5
        head = f'@id("bench.{i}")\n@reason("generated")\n'
        if kind == 0:
            out.append(head + f'forbid (principal, action, resource == ExtGate::Install::"inst-{i + 1}");')
        elif kind == 1:
            out.append(
                head + f'permit (principal == ExtGate::User::"user-{i}", '
                'action == ExtGate::Action::"read", resource is ExtGate::Install)\n'
                "when { principal.tenant == resource.tenant };"
            )
        elif kind == 2:
            out.append(
                head + 'permit (principal, action == ExtGate::Action::"audit.read", resource is ExtGate::Tenant)\n'
                # Role is an enumeration: a distinct condition per policy, on a declared role.
                'when { principal.tenant == resource && principal in ExtGate::Role::"admin" && '
                f'principal.userType == "auditor-{i}" }};'
            )
        elif kind == 3:
            out.append(
                head + 'forbid (principal, action == ExtGate::Action::"debug.view", resource)\n'
                f'when {{ context.justification == "blocked-{i}" }};'
            )
        else:
            out.append(
                head + "forbid (principal, action, resource is ExtGate::Install)\n"
                f'when {{ resource.slug == "blocked.ext-{i}" }};'
            )
    return "\n\n".join(out) + "\n"


def build_service(extra: int) -> PolicyService:
    tmp = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    source = BundleSource.from_dir(ROOT / "policies")
    for name, text in source.files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    if extra:
        (tmp / "zz-bench.cedar").write_text(extra_policies(extra))
    svc = PolicyService(tmp, require_tests=True, min_coverage=0.0)  # the extra policies have no tests
    svc.start()
    assert svc.bundle is not None, svc.status().last_error
    return svc


def casbin_enforcer(lines: int) -> tuple[object, Callable[[], bool]]:
    import casbin

    model = casbin.Model()
    model.load_model_from_text(
        """
[request_definition]
r = sub, dom, obj, act
[policy_definition]
p = sub, dom, obj, act
[role_definition]
g = _, _, _
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && keyMatch(r.obj, p.obj) && r.act == p.act
"""
    )
    enforcer = casbin.Enforcer(model)
    tenants = [f"tenant-{i}" for i in range(max(1, lines // 5))] + ["acme"]
    n = 0
    for t in tenants:
        for role, act in (
            ("viewer", "read"),
            ("editor", "read"),
            ("editor", "write"),
            ("admin", "read"),
            ("admin", "write"),
        ):
            if n >= lines:
                break
            enforcer.add_policy(role, t, "/installs/*", act)
            n += 1
    enforcer.add_policy("viewer", "acme", "/installs/*", "read")
    enforcer.add_grouping_policy("bench-viewer", "viewer", "acme")
    return enforcer, lambda: enforcer.enforce("bench-viewer", "acme", "/installs/inst-0", "read")


def run(extra: int) -> dict[str, float]:
    svc = build_service(extra)
    bundle = svc.bundle
    assert bundle is not None
    n_policies = len(bundle.policies)

    def service_call() -> object:
        return svc.decide_invoke(VIEWER, INSTALL, "GET", ENDPOINT, path="/items/1")

    decision = svc.decide_invoke(VIEWER, INSTALL, "GET", ENDPOINT, path="/items/1")
    assert decision.allowed, decision
    # The engine remembers invoke decisions by their complete input. "service" measures the
    # evaluation itself (memo off); "service, remembered" a repeated identical request.
    memo = svc._engine._invoke_memo  # type: ignore[attr-defined]
    remembered = measure({"memo": service_call})["memo"]
    memo.capacity = 0
    memo._data.clear()

    entities = cedarpy.Entities.from_json_str(json.dumps(request_entities(VIEWER, install=INSTALL)), bundle.schema)
    request = {
        "principal": {"type": "ExtGate::User", "id": VIEWER.subject},
        "action": {"type": "ExtGate::Action", "id": "read"},
        "resource": {"type": "ExtGate::Install", "id": INSTALL.install_id},
        "context": {"method": "GET", "path": "/items/1", "endpointDeclared": True, "endpointTemplate": "/items/:id",
                    "time": time_context()},
    }
    who = ("ExtGate::User", VIEWER.subject)
    # The slice the service evaluates for this request (action, install, principal, slug).
    sliced = bundle.slice_for("read", "ExtGate::Install", INSTALL.install_id, who, INSTALL.slug)
    full = bundle.policy_set()
    slice_size = len(bundle.slice_ids("read", "ExtGate::Install", INSTALL.install_id, who, INSTALL.slug))
    unslugged = len(bundle.slice_ids("read", "ExtGate::Install", INSTALL.install_id, who))
    assert cedarpy.is_authorized(request, full, entities, bundle.schema).allowed
    _enforcer, enforce = casbin_enforcer(n_policies)
    assert enforce()
    results = measure(
        {
            "service": service_call,
            "raw_slice": lambda: cedarpy.is_authorized(request, sliced, entities, bundle.schema),
            "raw_full": lambda: cedarpy.is_authorized(request, full, entities, bundle.schema),
        }
    )
    results.update(measure({"casbin": enforce}, ITERATIONS // 4))  # alone: it would evict the others' caches
    (svc_p50, svc_p99), (raw_slice_p50, raw_slice_p99) = results["service"], results["raw_slice"]
    (raw_full_p50, raw_full_p99), (cas_p50, cas_p99) = results["raw_full"], results["casbin"]
    print(f"\n== {n_policies} policies (read slice: {slice_size} policies; {unslugged} without slug slicing)")
    print(f"  service decide_invoke          p50 {svc_p50:8.1f} µs   p99 {svc_p99:8.1f} µs")
    print(f"  service, remembered decision   p50 {remembered[0]:8.1f} µs   p99 {remembered[1]:8.1f} µs")
    print(f"  raw cedarpy, same slice        p50 {raw_slice_p50:8.1f} µs   p99 {raw_slice_p99:8.1f} µs")
    print(f"  raw cedarpy, all policies      p50 {raw_full_p50:8.1f} µs   p99 {raw_full_p99:8.1f} µs")
    print(f"  pycasbin RBAC ({n_policies} lines)     p50 {cas_p50:8.1f} µs   p99 {cas_p99:8.1f} µs")
    print(f"  ratio service / raw (same slice)   {svc_p50 / raw_slice_p50:5.2f}x   (target <= 1.3x)")
    print(f"  ratio service / raw (all policies) {svc_p50 / raw_full_p50:5.2f}x")
    print(f"  ratio service / pycasbin           {svc_p50 / cas_p50:5.2f}x")
    return {
        "policies": n_policies,
        "service_p50": svc_p50,
        "raw_slice_p50": raw_slice_p50,
        "raw_full_p50": raw_full_p50,
        "casbin_p50": cas_p50,
    }


def main() -> None:
    print(f"cedarpy {getattr(cedarpy, '__version__', '4.12.x')}, {ITERATIONS} iterations, p50/p99 wall time")
    small = run(0)
    big = run(200 - small["policies"])
    print(
        f"\nsummary: service p50 {small['service_p50']:.1f} µs ({small['policies']} policies), "
        f"{big['service_p50']:.1f} µs ({big['policies']} policies; target <= 60 µs)"
    )


if __name__ == "__main__":
    main()
