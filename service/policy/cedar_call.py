"""The one place that calls cedarpy's authorizer.

cedarpy's public `is_authorized` wraps the native call with a request copy, a
`json.dumps` of the context and an `AuthzResult` object; on the request path we call
the native function with a pre-serialised context and read the JSON answer directly.
Both paths take the same reusable handles and return the same answer (tested).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import cedarpy

try:  # cedarpy is pinned (==4.12.2); fall back to the public API if the native name moves.
    from cedarpy import _internal as _native

    _FAST = callable(getattr(_native, "is_authorized", None))
except ImportError:  # pragma: no cover
    _FAST = False


class RawResult(NamedTuple):
    decision: str  # "Allow" | "Deny" | "NoDecision"
    reasons: list[str]
    errors: list[str]


def authorize(
    request: dict[str, Any],
    policies: cedarpy.PolicySet,
    entities: cedarpy.Entities,
    schema: cedarpy.Schema | None,
) -> RawResult:
    """`request`: principal/action/resource as {"type", "id"} dicts, "context" as JSON text."""
    if _FAST:
        out = json.loads(_native.is_authorized(request, policies, entities._inner, schema, False))
        diag = out.get("diagnostics") or {}
        return RawResult(out["decision"], diag.get("reason") or [], diag.get("errors") or [])
    return authorize_public(request, policies, entities, schema)


def authorize_public(
    request: dict[str, Any],
    policies: cedarpy.PolicySet,
    entities: cedarpy.Entities,
    schema: cedarpy.Schema | None,
) -> RawResult:
    req = dict(request)
    req["context"] = json.loads(request["context"])
    result = cedarpy.is_authorized(req, policies, entities, schema)
    return RawResult(result.decision.value, list(result.diagnostics.reasons), list(result.diagnostics.errors))
