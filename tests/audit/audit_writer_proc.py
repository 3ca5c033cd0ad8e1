"""Subprocess used by the multi-process tests: append records, print their seqs, maybe crash.

    python audit_writer_proc.py URL WRITER_ID COUNT THREADS [--crash]

`--crash` kills the process with SIGKILL right after the appends return (no close, no final
checkpoint), like a replica dying between append and checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from audit.records import Actor, AuditEvent
from audit.sql import SqlAuditLog
from service.db.backends import engine_for_url


def main() -> None:
    url, writer, count, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    engine = engine_for_url(url)
    log = SqlAuditLog(engine)

    def one(i: int) -> int:
        return log.append(
            AuditEvent(
                action="gateway.decision",
                outcome="allow",
                tenant_id=f"tenant-{writer}",
                actor=Actor(f"user-{i}"),
                request_id=f"{writer}-{i}",
                details={"writer": writer, "i": i},
            )
        )

    with ThreadPoolExecutor(threads) as pool:
        seqs = list(pool.map(one, range(count)))
    sys.stdout.write(json.dumps(seqs) + "\n")
    sys.stdout.flush()
    if "--crash" in sys.argv:
        os.kill(os.getpid(), signal.SIGKILL)
    log.close()
    engine.dispose()


if __name__ == "__main__":
    main()
