"""Which policies differ between two bundles: added, removed and changed `@id`s.

A policy is "changed" when its meaning (the Cedar EST: effect, scopes, conditions) or its
`@reason` differs; moving it to another file or line is not a change. Used by activation
(the audit record names the changed ids), `policy status` (a folder that differs from the
active revision) and `policy diff` (policy-level changes beside the permission matrix).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.policy.model import PolicyInfo


def _meaning(info: PolicyInfo) -> dict[str, Any]:
    est = {k: v for k, v in info.est.items() if k != "annotations"}
    return {"est": est, "annotations": dict(info.annotations)}


@dataclass(frozen=True)
class PolicyChanges:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    schema_changed: bool = False

    @property
    def count(self) -> int:
        """How many policies differ (schema changes not counted)."""
        return len(self.added) + len(self.removed) + len(self.changed)

    @property
    def any(self) -> bool:
        return bool(self.count or self.schema_changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "schema_changed": self.schema_changed,
        }

    def summary(self) -> str:
        parts = [f"{len(ids)} {label}" for label, ids in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed)) if ids]
        if self.schema_changed:
            parts.append("schema changed")
        return ", ".join(parts) or "no policy changed"


def compare_policies(
    old: Mapping[str, PolicyInfo] | None,
    new: Mapping[str, PolicyInfo],
    *,
    old_schema: str | None = None,
    new_schema: str | None = None,
) -> PolicyChanges:
    """Policy-level differences going from `old` (None: nothing was active) to `new`."""
    before = dict(old or {})
    added = tuple(sorted(i for i in new if i not in before))
    removed = tuple(sorted(i for i in before if i not in new))
    changed = tuple(sorted(i for i in new if i in before and _meaning(new[i]) != _meaning(before[i])))
    schema_changed = old is not None and old_schema is not None and new_schema is not None and old_schema != new_schema
    return PolicyChanges(added, removed, changed, schema_changed)


def schema_text(files: Mapping[str, str]) -> str:
    """The bundle's schema files, concatenated in name order (what `compare_policies` compares)."""
    return "\n".join(files[n] for n in sorted(files) if "/" not in n and n.endswith(".cedarschema"))
