"""Server-side verification of the whole audit log (`POST /api/audit/verify`, the console's
"verify log" action). It runs exactly what `extgate audit verify` runs: every leaf and
root recomputed, checkpoint signatures (database and exported files) against the
configured trusted keys, contiguity, truncation, the head.

One verification at a time per process (a full scan is the most expensive thing a user can
ask for); a second request while one runs is answered 429 with `retry-after`.
"""

from __future__ import annotations

import threading
from typing import Any

from audit.anchors import load_checkpoints
from audit.verify import verify_log

_RUNNING = threading.Lock()


class VerificationBusy(Exception):
    """Another verification is running in this process."""


def verify_audit_log(log: Any) -> dict[str, Any]:
    """Verify `log` (a `SqlAuditLog`) against its exported checkpoints; the CLI's JSON result."""
    if not _RUNNING.acquire(blocking=False):
        raise VerificationBusy
    try:
        directory = getattr(log, "checkpoint_dir", None)
        external = load_checkpoints(directory) if directory is not None else []
        result = verify_log(
            log.engine,
            verifiers=log.public_keys(),
            origin=log.origin,
            external=external,
            max_tail_age=getattr(log, "max_tail_age", None),
            workers=1,  # never fork worker processes out of a web server
        )
    finally:
        _RUNNING.release()
    return result.to_json()


def redact_for_tenant(report: dict[str, Any]) -> dict[str, Any]:
    """What a tenant's auditor sees: status, counts and where the log is bad (kind and seq), not
    the findings' wording, which names the server's checkpoint files."""
    out = dict(report)
    out["findings"] = [
        {k: v for k, v in f.items() if k in ("kind", "seq", "seq_end")} for f in report.get("findings", [])
    ]
    out["redacted"] = True
    return out
