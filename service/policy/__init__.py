"""Cedar policies: bundles, the decision engine, hot reload, tests, explanations, diffs.

Entry points for the rest of the service:
  * `PolicyService` (service.py): load/reload/rollback/status/events, and decisions
    `decide_invoke`, `decide_debug_view`, `decide_admin`;
  * `CedarAuthorizer` (authorizer.py): the `service.authz.Authorizer` for admin APIs;
  * the input dataclasses `InstallFacts`, `EndpointMatch`, `DebugCounts` and the
    `Decision` result (model.py).
"""

from service.policy.authorizer import CedarAuthorizer
from service.policy.model import (
    ENDPOINT_RULE_ID,
    DebugCounts,
    Decision,
    EndpointMatch,
    InstallFacts,
)
from service.policy.service import CandidateRejected, PolicyService, PolicyStatus

__all__ = [
    "ENDPOINT_RULE_ID",
    "CandidateRejected",
    "CedarAuthorizer",
    "DebugCounts",
    "Decision",
    "EndpointMatch",
    "InstallFacts",
    "PolicyService",
    "PolicyStatus",
]
