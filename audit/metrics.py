"""Prometheus metrics of the audit log's writer (`extgate_audit_*`). No labels at all: the
writer is one per process, and its records' contents never reach a metric.

Counters and the batch/commit histograms are updated by the writer thread, once per batch.
The queue depth, the writer's health and the age of the newest checkpoint are read when
Prometheus scrapes, from the log that started last in this process (`watch_audit_log`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from audit.sql import SqlAuditLog

APPENDED = Counter("extgate_audit_records_appended", "Audit records committed.")
FAILED_BATCHES = Counter("extgate_audit_batch_failures", "Audit batches whose commit failed (callers got an error).")
BATCH_SIZE = Histogram(
    "extgate_audit_batch_size", "Records per audit commit (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
COMMIT_SECONDS = Histogram(
    "extgate_audit_commit_duration_seconds", "Time of one audit batch's transaction.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


def record_commit(records: int, seconds: float) -> None:
    APPENDED.inc(records)
    BATCH_SIZE.observe(records)
    COMMIT_SECONDS.observe(seconds)


class _AuditStateCollector(Collector):
    def __init__(self) -> None:
        self.log: weakref.ReferenceType[SqlAuditLog] | None = None

    def collect(self) -> Iterator[Any]:
        log = self.log() if self.log is not None else None
        if log is None:
            return
        depth = GaugeMetricFamily("extgate_audit_queue_depth", "Audit records queued for the writer thread.")
        depth.add_metric([], log.queue_depth())
        yield depth
        healthy = GaugeMetricFamily("extgate_audit_writer_healthy",
                                    "1 while the writer runs and its last batch committed.")
        healthy.add_metric([], 1.0 if log.writer_healthy() else 0.0)
        yield healthy
        checkpoint_at = log.stats.last_checkpoint_us
        if checkpoint_at:
            age = GaugeMetricFamily("extgate_audit_checkpoint_age_seconds",
                                    "Seconds since the newest signed checkpoint was made.")
            age.add_metric([], max(0.0, time.time() - checkpoint_at / 1_000_000))
            yield age


_STATE = _AuditStateCollector()
REGISTRY.register(_STATE)


def watch_audit_log(log: SqlAuditLog) -> None:
    _STATE.log = weakref.ref(log)
